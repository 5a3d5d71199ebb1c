import shutil

import pytest
import torch

from simtune.config import ConfigError
from simtune.stage_configs import SFTConfig
from simtune.models import (apply_finetuning, apply_freeze, count_parameters, convert_gguf, load_model,
                            load_model_and_tokenizer, load_tokenizer, pick_dtype, resolve_source)


def test_resolve_sources(tmp_path, tiny_model_dir):
    assert resolve_source(str(tiny_model_dir)).kind == "hf_dir"
    assert resolve_source("Qwen/Qwen2.5-0.5B-Instruct").kind == "hub"
    assert resolve_source("default").kind == "gguf"
    with pytest.raises(ConfigError, match="GGUF file not found"):
        resolve_source(str(tmp_path / "x.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_source(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="no such model"):
        resolve_source("./does/not/exist")


def test_cpu_dtype_is_fp32():
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16


def test_load_local_folder_generates(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), device="cpu")
    assert model.dtype == torch.float32 and tok.padding_side == "left"
    ids = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_trust_remote_code_off_by_default(tiny_model_dir, monkeypatch):
    seen = {}
    import transformers
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(path, **kw):
        seen.update(kw)
        return real(path, **kw)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    load_model(str(tiny_model_dir), device="cpu")
    assert seen["trust_remote_code"] is False


def test_qlora_without_cuda_is_a_clear_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    cfg = SFTConfig.load(None, ["--train_file", "x", "--model_name_or_path", str(tiny_model_dir),
                                "--finetuning_type", "qlora"])
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        load_model_and_tokenizer(cfg)


def test_lora_trains_only_adapters(tiny_model_dir):
    cfg = SFTConfig.load(None, ["--train_file", "x", "--model_name_or_path", str(tiny_model_dir),
                                "--finetuning_type", "lora", "--lora_rank", "4"])
    model, _ = load_model_and_tokenizer(cfg)
    model = apply_finetuning(model, cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert count_parameters(model)["trainable"] < count_parameters(model)["total"] / 10


def test_freeze_first_layers(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    counts = apply_freeze(model, freeze_first_n_layers=1)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grads["model.embed_tokens.weight"]
    assert not any(v for n, v in grads.items() if ".layers.0." in n)
    assert all(v for n, v in grads.items() if ".layers.1." in n)
    assert counts["trainable"] > 0 and counts["frozen"] > 0
    with pytest.raises(ConfigError, match="has 2 layers"):
        apply_freeze(model, freeze_first_n_layers=5)


def test_freeze_by_prefix(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    apply_freeze(model, trainable_prefixes=["model.layers.1.mlp"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("model.layers.1.mlp") for n in trainable)
    with pytest.raises(ConfigError, match="match no parameter"):
        apply_freeze(model, trainable_prefixes=["nothing.here"])


def test_gguf_conversion_is_cached(tmp_path, monkeypatch):
    """The embedded GGUF dequantizes once; the second load reuses the cached folder."""
    monkeypatch.setenv("SIMTUNE_CACHE", str(tmp_path / "cache"))
    src = resolve_source("default")
    gguf = tmp_path / "m.gguf"
    gguf.symlink_to(src.path)
    out1 = convert_gguf(gguf)
    mtime = (out1 / "model.safetensors").stat().st_mtime
    out2 = convert_gguf(gguf)
    assert out1 == out2 and (out2 / "model.safetensors").stat().st_mtime == mtime
    assert not [p for p in out1.parent.iterdir() if p.name.startswith(".tmp")]
    tok = load_tokenizer(str(gguf))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    shutil.rmtree(tmp_path / "cache")
