import json

import pytest

from simtune.config import ConfigError
from simtune.stage_configs import GRPOConfig
from simtune.rewards import register_reward
from simtune.stages import run_stage

from stage_utils import tiny_args, write_jsonl


@register_reward("test_len_reward")
def short_is_good(prompts, completions, **kw):
    assert "target" in kw and len(kw["target"]) == len(completions)  # dataset columns arrive as kwargs
    return [-float(len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def grpo_args(tiny_model_dir, tmp_path, f, *extra):
    return tiny_args(tiny_model_dir, tmp_path, f, "--num_generations", "4", "--max_completion_length", "8",
                     "--reward_funcs", "test_len_reward", "--learning_rate", "1e-3", *extra)


@pytest.fixture
def prompts_file(tmp_path):
    return write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"say {w}", "target": w} for w in ["a", "b", "c", "d"]])


def test_grpo_runs_logs_rewards_samples_and_best(tiny_model_dir, tmp_path, prompts_file):
    cfg = GRPOConfig.load(None, grpo_args(tiny_model_dir, tmp_path, prompts_file, "--max_steps", "4",
                                          "--log_completions_every", "2", "--metric_for_best_model", "reward",
                                          "--greater_is_better", "true", "--save_steps", "2"))
    res = run_stage("grpo", cfg)
    assert res.global_step == 4
    m = [r for r in res.experiment.read_metrics() if "reward" in r]
    assert len(m) == 4
    assert {"rewards/short_is_good/mean", "rewards/short_is_good/std", "completions/mean_length", "loss",
            "learning_rate"} <= set(m[0])
    samples = sorted(p.name for p in res.experiment.samples_dir.iterdir())
    assert samples == ["completions_step000002.jsonl", "completions_step000004.jsonl"]
    row = json.loads((res.experiment.samples_dir / samples[0]).read_text().splitlines()[0])
    assert set(row) >= {"prompt", "completion", "rewards", "step"}
    best = json.loads((res.experiment.checkpoints_dir / "best" / "best.json").read_text())
    assert best["value"] == max(r["reward"] for r in m)


def test_grpo_config_errors(tiny_model_dir, tmp_path, prompts_file):
    cfg = GRPOConfig.load(None, grpo_args(tiny_model_dir, tmp_path, prompts_file, "--per_device_train_batch_size", "3"))
    with pytest.raises(ConfigError, match="must be a multiple of num_generations"):
        run_stage("grpo", cfg)
    cfg = GRPOConfig.load(None, grpo_args(tiny_model_dir, tmp_path, prompts_file, "--reward_funcs", "no_such_reward"))
    with pytest.raises(ConfigError, match="unknown reward 'no_such_reward'"):
        run_stage("grpo", cfg)
    cfg = GRPOConfig.load(None, grpo_args(tiny_model_dir, tmp_path, prompts_file, "--use_vllm"))
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="use_vllm needs a CUDA GPU"):
            run_stage("grpo", cfg)
