"""Reward model and DPO on a small fixed preference set: the loss falls, the pairs get
ranked right; both with LoRA too."""
import json

import pytest
import torch

from simtune.stage_configs import DPOConfig, RewardConfig
from simtune.io import DataError
from simtune.stages import run_stage

from stage_utils import tiny_args, write_jsonl

GOOD = ["thanks, I will share this with my friends", "great post, reposting now", "love it, commenting below"]
BAD = ["spam spam spam buy now", "click here click here", "xx xx xx xx xx"]


@pytest.fixture
def pref_file(tmp_path):
    rows = [{"prompt": f"user {i} sees a post about {t}", "chosen": GOOD[i % 3], "rejected": BAD[i % 3]}
            for i, t in enumerate(["cats", "football", "stocks", "music"] * 2)]
    return write_jsonl(tmp_path / "pref.jsonl", rows)


def metric(exp, key):
    return [m[key] for m in exp.read_metrics() if key in m and "train_runtime" not in m]


def mean(xs):
    return sum(xs) / len(xs)


def reward_margins(model_dir, pref_file):
    """r(chosen) - r(rejected) per training pair, recomputed from the saved model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()
    out = []
    for line in pref_file.read_text().splitlines():
        r = json.loads(line)
        scores = []
        for ans in (r["chosen"], r["rejected"]):
            text = tok.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                            {"role": "assistant", "content": ans}], tokenize=False)
            with torch.no_grad():
                scores.append(model(**tok(text, return_tensors="pt")).logits[0, 0].item())
        out.append(scores[0] - scores[1])
    return out


def test_reward_loss_falls_accuracy_and_margin_rise(tiny_model_dir, tmp_path, pref_file):
    cfg = RewardConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pref_file, "--max_steps", "10",
                                            "--learning_rate", "2e-3", "--save_steps", "100"))
    res = run_stage("reward", cfg)
    loss, acc, margin = (metric(res.experiment, k) for k in ("loss", "accuracy", "margin"))
    assert len(loss) >= 10
    assert mean(loss[-3:]) < 0.5 * mean(loss[:3]), loss
    assert mean(margin[-3:]) > mean(margin[:3]) + 1.0, margin
    assert mean(acc[-3:]) == 1.0 and mean(acc[:3]) < 1.0, acc
    # the saved model ranks every training pair right
    margins = reward_margins(res.final_model_dir, pref_file)
    assert all(m > 0 for m in margins), margins


def test_reward_lora_trains_head_and_adapters(tiny_model_dir, tmp_path, pref_file):
    cfg = RewardConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pref_file, "--max_steps", "6",
                                            "--learning_rate", "5e-3", "--finetuning_type", "lora", "--lora_rank", "4"))
    res = run_stage("reward", cfg)
    adapter = json.loads((res.final_model_dir / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    from safetensors.torch import load_file
    keys = load_file(res.final_model_dir / "adapter_model.safetensors")
    assert any("score" in k for k in keys) and any("lora_A" in k for k in keys)
    loss = metric(res.experiment, "loss")
    assert mean(loss[-2:]) < mean(loss[:2]), loss


def test_dpo_loss_falls_and_chosen_wins(tiny_model_dir, tmp_path, pref_file):
    cfg = DPOConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pref_file, "--max_steps", "5",
                                         "--learning_rate", "3e-3", "--beta", "0.5", "--save_steps", "100",
                                         "--per_device_train_batch_size", "2"))
    res = run_stage("dpo", cfg)
    loss, margins = metric(res.experiment, "loss"), metric(res.experiment, "rewards/margins")
    assert loss[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1: -log sigmoid(0)
    assert mean(loss[-2:]) < 0.5 * loss[0], loss
    assert mean(margins[-2:]) > 1.0, margins
    assert (res.final_model_dir / "model.safetensors").is_file()


def test_dpo_lora_reference_is_base_without_adapters(tiny_model_dir, tmp_path, pref_file):
    cfg = DPOConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pref_file, "--max_steps", "4",
                                         "--learning_rate", "1e-2", "--beta", "0.5", "--finetuning_type", "lora",
                                         "--per_device_train_batch_size", "2",
                                         "--lora_rank", "4", "--loss_type", "ipo"))
    res = run_stage("dpo", cfg)
    assert (res.final_model_dir / "adapter_config.json").is_file()
    assert not (res.final_model_dir / "ref").exists()  # no second adapter saved
    loss = metric(res.experiment, "loss")
    assert mean(loss[-2:]) < mean(loss[:2]), loss


def test_preference_record_errors_name_file_line_field(tiny_model_dir, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}])
    cfg = DPOConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "1"))
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'rejected': missing field"):
        run_stage("dpo", cfg)
