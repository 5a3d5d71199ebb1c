"""A training run killed with SIGKILL at a random moment and started again with --resume
ends with the same step count, parameters (CPU, fixed seed; tolerance below) and metric
history as a run never interrupted. Both runs are subprocesses, so they share conditions."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from simtune.experiment import Experiment
from simtune.stages.common import complete_checkpoints

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-5  # float reductions may differ in the last bits across processes; nothing more


def cmd(stage, model, train, out, extra):
    return [sys.executable, "-m", "simtune", "train", stage, "--model_name_or_path", str(model), "--train_file",
            str(train), "--output_dir", str(out), "--report_to", "none", "--max_length", "64", "--seed", "0",
            "--logging_steps", "1", "--save_steps", "2", *extra]


def finished(out: Path) -> bool:
    return (out / "train_result.json").exists() or (out / "final_model").exists()


def logged_step(out: Path) -> int:
    return max((m.get("step", 0) for m in Experiment(out).read_metrics()), default=0)


def run_killed(args, out: Path, rng: random.Random, max_steps: int, attempts: int = 4) -> tuple[int, float]:
    """Start the run and SIGKILL it at a random moment after its first complete checkpoint:
    once the metrics show a step drawn from [first checkpoint's step, max_steps - 1], after a
    random delay of up to 50 ms (so the kill falls in a training step, a checkpoint save or
    between them). A random moment in seconds would depend on the machine's speed: on a quiet
    machine the tiny model's last steps take well under a second.

    If the kill still came after the run's end (the step drawn was the last but one and the
    machine was fast), the folder is removed and the run tried again; the seed decides every
    draw. The run must end up really cut short."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(attempts):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        deadline = time.time() + 300
        ckpts = []
        while not ckpts:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(f"run ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
            time.sleep(0.01)
            ckpts = complete_checkpoints(Experiment(out))
        first = ckpts[0][0]
        target, delay = rng.randint(first, max_steps - 1), rng.uniform(0.0, 0.05)
        while logged_step(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        if not finished(out):
            return target, delay
        shutil.rmtree(out)
    raise AssertionError(f"the run finished before the kill in {attempts} attempts; lengthen it")


def run_to_end(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]


def history(out: Path, key: str):
    return [(m["step"], round(m[key], 5)) for m in Experiment(out).read_metrics() if key in m]


def assert_same(a: Path, b: Path, key: str):
    ta = json.loads((a / "train_result.json").read_text())
    tb = json.loads((b / "train_result.json").read_text())
    assert ta["global_step"] == tb["global_step"]
    wa, wb = load_file(a / "final_model" / "model.safetensors"), load_file(b / "final_model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=ATOL)
    assert history(a, key) == history(b, key)


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_sigkill_then_resume_matches_uninterrupted(stage, tiny_model_dir, tmp_path, pr_file):
    seed = int(os.environ.get("SIMTUNE_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill seed {seed} (SIMTUNE_KILL_SEED to replay)")
    rng = random.Random(seed)
    if stage == "sft":
        train, extra, key = pr_file, ["--max_steps", "8", "--per_device_train_batch_size", "2",
                                      "--learning_rate", "2e-3"], "loss"
    else:
        train = tmp_path / "p.jsonl"
        train.write_text("".join(json.dumps({"prompt": f"say {w}"}) + "\n" for w in "abcdefgh"))
        extra = ["--max_steps", "6", "--per_device_train_batch_size", "4", "--num_generations", "4",
                 "--max_completion_length", "6", "--reward_funcs", "simtune.rewards.testing:length_reward",
                 "--learning_rate", "1e-3"]
        key = "reward"
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_to_end(cmd(stage, tiny_model_dir, train, full, extra))
    max_steps = int(extra[extra.index("--max_steps") + 1])
    step, delay = run_killed(cmd(stage, tiny_model_dir, train, killed, extra), killed, rng, max_steps)
    print(f"killed after step {step} + {delay * 1000:.0f} ms")
    assert not finished(killed)  # really cut short
    run_to_end(cmd(stage, tiny_model_dir, train, killed, extra + ["--resume"]))
    assert_same(full, killed, key)
