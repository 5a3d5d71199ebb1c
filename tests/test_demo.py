"""The README's main job, shrunk: `simtune demo` on the embedded default model."""
import json

import pytest

from simtune.cli import main


@pytest.mark.e2e
def test_demo_end_to_end_on_default_model(tmp_path):
    rc = main(["demo", "--out", str(tmp_path), "--users", "60", "--posts", "80", "--train_samples", "8",
               "--eval_samples", "4", "--max_new_tokens", "48"])
    assert rc == 0
    exp = next(p for p in (tmp_path / "social").iterdir() if p.name.startswith("demo_2"))
    report = json.loads((exp / "eval" / "eval_social.json").read_text())
    assert set(report["results"]) == {"model", "baseline: random", "baseline: all", "baseline: history", "baseline: profile"}
    assert report["results"]["model"]["all"]["n"] == 4
    assert report["results"]["model"]["all"]["valid"] == 1.0  # constrained decoding: every answer parses
    text = (exp / "report.md").read_text()
    assert "who-F1" in text and "| baseline: random |" in text and (exp / "report.png").stat().st_size > 1000
    best = max((k for k in report["results"] if k.startswith("baseline: ")),
               key=lambda k: report["results"][k]["0"]["f1"] or 0.0)[len("baseline: "):]
    assert f"strongest, {best}," in text or f"strongest baseline, {best} (" in text
    sim = json.loads((exp / "simulated.json").read_text())
    assert "real_stats" in sim and sim["real_stats"]["size"] > 0
    assert (exp / "final_model" / "model.safetensors").is_file()
