"""Shared test fixtures.

- ``shared_data``: the real third-party data in ../shared/data. Tests that need it skip
  when it is absent on a developer machine, but under CI (CI=true) its absence fails.
- Tests run on CPU, offline, with one torch thread so parallel runs do not thrash.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SIMTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


def build_tiny_model(out_dir: Path, hidden: int = 64, layers: int = 2, seed: int = 0,
                     init_range: float = 0.02) -> Path:
    """A tiny random Llama with the default model's real tokenizer (ChatML template).

    The tokenizer comes from the cached conversion of the embedded GGUF (converted once
    per machine, ~20 s; then instant), so tests exercise a real byte-level BPE that
    handles Chinese, with real special tokens.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from simtune.models import local_path

    tok = AutoTokenizer.from_pretrained(local_path("default"))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, initializer_range=init_range)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Path of a tiny random causal LM folder (session-wide; copy it before changing it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
    yield
