"""Helpers for tests (import as `from testutils import ...`)."""
from __future__ import annotations

from pathlib import Path


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
