"""Scale-out goes through the existing engines: torchrun / accelerate launch start N
copies of `simtune train`; HF Trainer + accelerate shard the data (gloo on CPU)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sft_disjoint_data_identical_weights(tiny_model_dir, tmp_path):
    rows = [{"prompt": f"question {i} " + "x " * (i % 7), "response": f"answer {i}"} for i in range(16)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "SIMTUNE_AUDIT_DIR": str(tmp_path / "audit"), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "simtune", "train", "sft", "--model_name_or_path", str(tiny_model_dir), "--train_file", str(train),
           "--max_steps", "3", "--per_device_train_batch_size", "2", "--report_to", "none", "--max_length", "64",
           "--output_root", str(tmp_path / "out"), "--learning_rate", "1e-3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / "audit" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert a["world_size"] == b["world_size"] == 2
    # 3 steps x 2 per device (the dataloader may prefetch one batch more)
    assert 6 <= len(a["examples"]) <= 8 and 6 <= len(b["examples"]) <= 8
    assert not set(a["examples"]) & set(b["examples"])  # each rank saw its own shard
    assert a["param_sha256"] == b["param_sha256"]  # and both ended with the same weights
    runs = [p for p in (tmp_path / "out" / "generic").iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "final_model" / "model.safetensors").is_file()  # one folder for the launch


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file
    cfg = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.name == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(name, "DEEPSPEED")
