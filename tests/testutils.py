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


# -- output folders (tests/test_data_loss.py, tests/test_output_paths.py, tests/test_output_property.py)

def file_tree(root) -> dict:
    """Every file and link below ``root``: relative path -> bytes (a link: ``-> target``)."""
    import os
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def synth_corpus(out, users: int = 5) -> Path:
    """``simtune data social synth`` of a tiny corpus into ``out`` (through the CLI)."""
    from simtune.cli import main
    assert main(["data", "social", "synth", "--out", str(out), "--users", str(users), "--posts", "3"]) == 0
    return Path(out)


def social_build_args(raw: Path, out) -> list[str]:
    return ["data", "social", "build", "--inputs", str(raw / "posts.jsonl"), "--profiles", str(raw / "profiles.json"),
            "--out", str(out), "--progress", "false"]


def experiment_folder(root: Path) -> Path:
    """An experiment folder as training leaves it: final model, a checkpoint, metrics."""
    import json
    (root / "final_model").mkdir(parents=True)
    (root / "final_model" / "model.safetensors").write_bytes(b"weights")
    (root / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (root / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (root / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2)))
    return root


def atomic_siblings(folder: Path) -> list[str]:
    """Names in ``folder`` that look like an atomic write's ``.tmp-*`` / ``.old-*``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith((".tmp-", ".old-")))


def run_bounded(argv: list[str], mem_bytes: int = 2 << 30, timeout: int = 60):
    """``python -m simtune argv`` in a child process with at most ``mem_bytes`` of address space
    and ``timeout`` seconds (a CompletedProcess; TimeoutExpired past the time). For tests whose
    failure on old code was a hang or a blow-up of memory: bounded either way."""
    import os
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "simtune", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout, preexec_fn=limit)
