"""The README's main job, shrunk: `simtune demo` on the embedded default model."""
import json

import pytest

from simtune.cli import main


@pytest.mark.e2e
def test_demo_end_to_end_on_default_model(tmp_path, capfd):
    rc = main(["demo", "--out", str(tmp_path), "--users", "60", "--posts", "80", "--train_samples", "10",
               "--eval_samples", "6"])
    assert rc == 0
    # the terminal: one bar per phase, no raw log dicts, no weight loading/saving bars, no deprecation notices
    shown = "".join(capfd.readouterr())
    assert "[2/5] training" in shown and "who_loss=" in shown
    for chatter in ("{'loss'", "Loading weights", "Writing model shards", "FutureWarning"):
        assert chatter not in shown, chatter
    exp = next(p for p in (tmp_path / "social").iterdir() if p.name.startswith("demo_2"))
    report = json.loads((exp / "eval" / "eval_social.json").read_text())
    assert set(report["results"]) == {"model", "baseline: random", "baseline: all", "baseline: history",
                                      "baseline: author", "baseline: co-react", "baseline: author+co-react",
                                      "baseline: profile", "oracle (the rule that made the data)",
                                      "learned, no LM: the lines' numbers alone (prior.py)"}
    # the model paired with each depth's strongest baseline and with the numbers alone
    paired = report["paired"]
    assert all(": model - " in k and v["n"] > 0 for k, v in paired.items())
    assert {k.split(": model - ")[0] for k in paired if k.endswith("(prior.py)")} >= {"depth 0", "depth 1"}
    model = report["results"]["model"]["all"]
    assert report["who"] == "scorer" and model["n"] == 6 and model["valid"] == 1.0 and model["auc"] is not None
    assert report["speed"]["who_samples_per_s"] > 0
    text = (exp / "report.md").read_text()
    assert "who-F1" in text and "| baseline: random |" in text and (exp / "report.png").stat().st_size > 1000
    assert "strongest" in text and "the rule that made the data scores" in text and "numbers alone" in text
    casc = json.loads((exp / "cascades" / "eval_cascades.json").read_text())["summary"]
    assert casc["cascades"] == 3 and casc["real"]["median_size"] > 0 and "mean size" in casc["size baselines"]
    assert "held-out posts simulated out of everyone" in text and "| size: MSLE |" in text
    assert (exp / "final_model" / "model.safetensors").is_file() and (exp / "final_model" / "who.json").is_file()
    # the report page: the simulated cascades drawn beside the real ones, the phases' timings
    page = (exp / "report.html").read_text()
    assert 'id="tree-0-sim"' in page and 'id="tree-0-real"' in page and "demo: train" in page


@pytest.mark.e2e
def test_demo_on_a_who_joins_corpus(tmp_path):
    """`simtune demo --diffusion FILE`: the same chain on a real-form corpus, one level deep,
    behaviour baselines in the table, what was left out in the report."""
    import random

    rng = random.Random(0)
    lines = []
    for c in range(120):
        t = 1_284_967_588 + 3600 * c
        users = [f"f{k}" for k in range(12) if k % 4 == c % 4] + rng.sample([f"o{k}" for k in range(30)], 3)
        rng.shuffle(users)
        lines.append(",".join(f"{u} {t + 60 * (k + 1)}" for k, u in enumerate([f"a{c % 4}", *users])) + ",")
    f = tmp_path / "mini" / "cascades.txt"
    f.parent.mkdir()
    f.write_text("\n".join(lines) + "\n")
    rc = main(["demo", "--out", str(tmp_path / "o"), "--diffusion", str(f), "--train_samples", "10",
               "--eval_samples", "6"])
    assert rc == 0
    exp = next(p for p in (tmp_path / "o" / "social").iterdir() if p.name.startswith("demo_2"))
    report = json.loads((exp / "eval" / "eval_social.json").read_text())
    assert {"baseline: author", "baseline: co-react"} <= set(report["results"])
    assert "oracle (the rule that made the data)" not in report["results"]
    assert report["results"]["model"]["0"]["n"] == 6 and "1" not in report["results"]["model"]
    text = (exp / "report.md").read_text()
    assert "(mini corpus)" in text and "samples skipped because their pool" in text
    import pyarrow.parquet as pq
    prompts = pq.read_table(tmp_path / "o" / "social" / "demo_mini" / "samples" / "val.parquet").column("prompt")
    assert any("this author" in p for p in prompts.to_pylist())
