"""Load a trained model for use, and export it.

``load_trained(path)`` takes a full model folder, a ``checkpoint-N`` folder, a
``final_model`` folder, or a LoRA adapter folder (``adapter_config.json``; the base model
named there is loaded with simtune's loader and the adapter put on top), and returns
``(model, tokenizer)`` ready to generate.

``simtune export --model DIR --out DIR [--merge-lora]`` writes a standalone model folder
(weights + tokenizer), atomically: for an adapter folder the LoRA weights are merged into
the base (``--merge-lora``); a full model folder is re-saved cleanly (e.g. a checkpoint
without optimizer state).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from simtune.config import ConfigError

log = logging.getLogger(__name__)


def is_adapter_dir(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "adapter_config.json").is_file()


def adapter_info(path) -> dict:
    p = Path(path) / "adapter_config.json"
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the adapter config: {e}") from None
    if not info.get("base_model_name_or_path"):
        raise ConfigError(f"{p}: 'base_model_name_or_path' is missing: cannot tell which base model the adapter is for")
    return info


def _has_tokenizer(path) -> bool:
    return (Path(path) / "tokenizer_config.json").is_file()


def load_trained(path, *, device: str | None = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 chat_template: str | None = None):
    """``(model, tokenizer)`` from a model, checkpoint or LoRA adapter folder (or anything
    :func:`simtune.models.load_model` accepts). The model is in eval mode on ``device``."""
    from simtune.models import load_model, load_tokenizer, pick_device
    path = str(path)
    if is_adapter_dir(path):
        from peft import PeftModel
        info = adapter_info(path)
        base = info["base_model_name_or_path"]
        model_class = None
        if info.get("task_type") == "SEQ_CLS":
            from simtune.stages.reward import RewardHead
            model_class = RewardHead
        base_model = load_model(base, dtype=dtype, device=None, trust_remote_code=trust_remote_code,
                                model_class=model_class)
        model = PeftModel.from_pretrained(base_model, path)
        if _has_tokenizer(path):  # the tokenizer saved with the adapter (no config.json there: load it directly)
            from transformers import AutoTokenizer

            from simtune.templates import ensure_chat_template
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"
            ensure_chat_template(tok, chat_template, getattr(base_model.config, "model_type", None))
        else:
            tok = load_tokenizer(base, chat_template=chat_template, trust_remote_code=trust_remote_code)
    else:
        model = load_model(path, dtype=dtype, device=None, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(path, chat_template=chat_template, trust_remote_code=trust_remote_code)
    if device is not None:
        model.to(pick_device(device))
    model.eval()
    return model, tok


def export_model(model_dir, out_dir, *, merge_lora: bool = False, overwrite: bool = False, dtype: str = "auto"):
    """Write a standalone model folder at ``out_dir``; returns its path.

    ``out_dir`` is replaced as a whole, so it must be new, empty, or an earlier export
    (``overwrite``) holding nothing else (:func:`simtune.io.replace_refusal`); it may not be,
    hold or lie inside the model folder (or an adapter's local base model)."""
    from simtune.io import atomic_path, check_apart, folder_entries, refuse_replace
    src, out = Path(model_dir), Path(out_dir)
    if not src.exists():
        raise ConfigError(f"{src}: no such model folder")
    adapter = is_adapter_dir(src)
    base = adapter_info(src)["base_model_name_or_path"] if adapter else None
    check_apart({"--out": out}, {"--model": src, "base model": base if base and Path(base).exists() else None})
    refuse_replace(out, "export")
    if out.is_dir() and folder_entries(out) and not overwrite:
        raise ConfigError(f"{out}: holds an earlier export (pass --overwrite to replace it)")
    if adapter and not merge_lora:
        raise ConfigError(f"{src}: is a LoRA adapter folder; pass --merge-lora to merge it into its base model "
                          f"({base})")
    model, tok = load_trained(src, device=None, dtype=dtype)
    if adapter:
        model = model.merge_and_unload()
        log.info("merged the LoRA adapter %s into its base", src)
    with atomic_path(out, is_dir=True, command="export") as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    return out


def cli_export(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="simtune export",
                                 description="write a standalone model folder (merging a LoRA adapter with --merge-lora)")
    ap.add_argument("--model", required=True, help="model, checkpoint-N, final_model or LoRA adapter folder")
    ap.add_argument("--out", required=True, help="output folder (written atomically)")
    ap.add_argument("--merge-lora", "--merge_lora", dest="merge_lora", action="store_true",
                    help="merge a LoRA adapter into its base model")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier export (never a folder export did "
                    "not write)")
    a = ap.parse_args(argv)
    out = export_model(a.model, a.out, merge_lora=a.merge_lora, overwrite=a.overwrite, dtype=a.dtype)
    print(f"exported {a.model} -> {out}")
    return 0
