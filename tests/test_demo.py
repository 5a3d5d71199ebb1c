"""The README's main job, shrunk: `simtune demo` on the embedded default model."""
import json

import pytest

from simtune.cli import main


@pytest.mark.e2e
def test_demo_end_to_end_on_default_model(tmp_path):
    rc = main(["demo", "--out", str(tmp_path), "--users", "60", "--posts", "80", "--train_samples", "10",
               "--eval_samples", "6"])
    assert rc == 0
    exp = next(p for p in (tmp_path / "social").iterdir() if p.name.startswith("demo_2"))
    report = json.loads((exp / "eval" / "eval_social.json").read_text())
    assert set(report["results"]) == {"model", "baseline: random", "baseline: all", "baseline: history",
                                      "baseline: profile", "oracle (the rule that made the data)"}
    model = report["results"]["model"]["all"]
    assert report["who"] == "scorer" and model["n"] == 6 and model["valid"] == 1.0 and model["auc"] is not None
    assert report["speed"]["who_samples_per_s"] > 0
    text = (exp / "report.md").read_text()
    assert "who-F1" in text and "| baseline: random |" in text and (exp / "report.png").stat().st_size > 1000
    assert "strongest" in text and "the rule that made the data scores" in text
    sim = json.loads((exp / "simulated.json").read_text())
    assert sim["who"] == "scorer" and "real_stats" in sim and sim["real_stats"]["size"] > 0
    assert (exp / "final_model" / "model.safetensors").is_file() and (exp / "final_model" / "who.json").is_file()
