"""`simtune train math` on the tiny model: raw GSM8K is prepared, every metric the issue
names is logged each step, checkpoints (periodic and best) are kept, and --resume continues
with an unbroken metric history."""
import json
from pathlib import Path

from simtune.cli import main
from simtune.recipes.math.data import SAMPLE_PATH
from simtune.report import write_report

REPO_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "math" / "grpo_default.yaml")
ISSUE_METRICS = {"loss", "reward", "reward_std", "rewards/math_correctness/mean", "rewards/math_correctness/std",
                 "rewards/math_format/mean", "rewards/math_format/std", "completions/mean_length",
                 "completions/min_length", "completions/max_length", "kl", "clip_ratio/region_mean", "learning_rate"}


def train_args(tiny_model_dir, out, steps, *extra):
    return ["train", "math", "--config", REPO_CONFIG, "--model_name_or_path", str(tiny_model_dir),
            "--output_dir", str(out), "--train_file", str(SAMPLE_PATH), "--output_root", str(out.parent), "--max_samples", "8",
            "--num_generations", "2", "--per_device_train_batch_size", "4", "--max_completion_length", "8",
            "--beta", "0.04", "--learning_rate", "1e-3", "--max_steps", str(steps), "--save_steps", "2",
            "--log_completions_every", "2", "--save_total_limit", "5", *extra]


def train_lines(out):
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]


def test_train_logs_checkpoints_and_resume_keeps_history(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, out, 2)) == 0
    first = train_lines(out)
    assert [r["step"] for r in first] == [1, 2]
    missing = ISSUE_METRICS - set(first[0])
    assert not missing, missing
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert json.loads((out / "checkpoints" / "best" / "best.json").read_text())["metric"] == "reward"
    assert (out / "samples" / "completions_step000002.jsonl").is_file()
    assert json.loads((out / "reward_funcs.json").read_text()) == ["math_correctness", "math_format"]
    # the raw slice was prepared into the outputs, with the system prompt
    prepared = tmp_path / "math" / "data" / "gsm8k_sample_prepared.jsonl"
    rec = json.loads(prepared.read_text().splitlines()[0])
    assert rec["answer"] == "72" and rec["prompt"][0]["role"] == "system"

    assert main(train_args(tiny_model_dir, out, 4, "--resume")) == 0
    lines = train_lines(out)
    steps = [r["step"] for r in lines]
    assert steps == [1, 2, 3, 4]  # no duplicate, no gap
    assert lines[:2] == first  # the history before the resume is intact
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and (out / "final_model" / "config.json").is_file()
    s = write_report(out)
    assert s["steps"]["gaps"] == [] and s["read"]["duplicate_steps"] == 0
    assert "reward.png" in s["plots"] and s["metrics"]["rewards/math_format/mean"]["n"] == 4
