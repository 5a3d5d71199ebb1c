"""End to end on the real small model (SmolLM2-135M-Instruct) and the Douban data."""
import json

import pytest

from simtune.recipes.reviews.commands import evaluate_run, load_config, train


@pytest.mark.e2e
@pytest.mark.shared_data
def test_douban_lora_step_then_eval_on_default_model(shared_data, tmp_path):
    cfg = load_config(["--config", "configs/reviews/reviews_douban.yaml",
                       "--data_path", str(shared_data / "douban-2022films"), "--output_dir", str(tmp_path / "run"),
                       "--max_steps", "1", "--per_device_train_batch_size", "1", "--max_length", "288",
                       "--history_budget", "32", "--eval_strategy", "no", "--early_stopping_patience", "none",
                       "--save_steps", "1", "--report_to", "none", "--finetuning_type", "lora"])
    out = train(cfg)
    root = out["run_dir"]
    assert (out["final_model_dir"] / "adapter_config.json").is_file()  # LoRA: an adapter
    tc = json.loads((root / "training_config.json").read_text())
    assert tc["data"]["users_kept"] >= 100 and tc["data"]["min_reviews"] == 5 and tc["history_budget_unit"] == "tokens"
    rep = evaluate_run(root, max_samples=2, max_new_tokens=6, batch_size=2)
    preds = [json.loads(x) for x in (root / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert rep["n"] == 2 and len(preds) == 2
    assert sum(len(p["generated"]) > 0 for p in preds) >= 1  # the real model writes something
    assert rep["systems"]["baseline: most recent earlier review"]["mean_len"] > 0
