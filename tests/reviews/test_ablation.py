"""The full four-variant ablation on the tiny model and the shipped example."""
import json

import pytest

from simtune.cli import main


@pytest.mark.e2e
def test_ablation_four_variants_one_table_one_plot(tiny_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "abl"
    rc = main(["ablate", "reviews", "--config", "configs/reviews/reviews_default.yaml",
               "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out_dir), "--report_to", "none",
               "--max_length", "320", "--history_budget", "48", "--per_device_train_batch_size", "2",
               "--max_steps", "1", "--eval_strategy", "no", "--early_stopping_patience", "none",
               "--save_steps", "1", "--eval_max_new_tokens", "4", "--eval_max_samples", "3"])
    assert rc == 0
    rep = json.loads((out_dir / "ablation.json").read_text())
    variants = ["profile+history", "profile_only", "history_only", "neither"]
    assert list(rep["variants"]) == variants
    assert list(rep["table"]) == variants + ["baseline: most recent earlier review",
                                             "baseline: earlier review most like the film's other reviews"]
    for v in variants:
        run = out_dir / v
        assert (run / "final_model" / "model.safetensors").is_file() and rep["variants"][v]["global_step"] == 1
        assert json.loads((run / "training_config.json").read_text())["variant"] == v
        assert rep["variants"][v]["n"] == 3
    prompts = {v: json.loads((out_dir / v / "test_samples.json").read_text())[0]["prompt"] for v in variants}
    assert "【用户】" in prompts["profile_only"] and "以往的短评" not in prompts["profile_only"]
    assert "【用户】" not in prompts["history_only"] and "以往的短评" in prompts["history_only"]
    md = (out_dir / "ablation.md").read_text()
    assert all(f"| {v} |" in md for v in variants) and "real reviews (ceiling)" in md
    assert (out_dir / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| neither |" in capsys.readouterr().out
    assert list(rep["paired"]) == ["profile+history - profile_only", "history_only - neither",
                                   "profile+history - history_only", "profile_only - neither",
                                   "profile+history - neither"]
    assert all(r["n"] == 3 and r["lo"] <= r["diff"] <= r["hi"] for r in rep["paired"].values())
    assert "| history_only - neither |" in md
