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


def test_demo_reads_its_options_like_every_command(tmp_path, capsys):
    """The demo's options go through the config reader: a YAML file, typed --help, lists from
    commas, and an unknown or out-of-range key is an error before anything runs."""
    from simtune.config import ConfigError
    from simtune.demo import DemoConfig
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("users: 40\ndiffusion: [a.txt, b.txt]\nverbose: true\n")
    a = DemoConfig.from_argv(["--config", str(cfg), "--posts", "7", "--inputs", "x.jsonl,y.jsonl"])
    assert (a.users, a.posts, a.diffusion, a.inputs, a.verbose) == (40, 7, ["a.txt", "b.txt"], ["x.jsonl", "y.jsonl"], True)
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--diffusion list of str = []" in out and "--window_days float, optional = None" in out
    with pytest.raises(ConfigError, match="unknown key 'users_count'"):
        DemoConfig.from_argv(["--users_count", "3"])
    assert main(["demo", "--sim_posts", "-1"]) == 2 and "'sim_posts' must be >= 0" in capsys.readouterr().err


def test_library_chatter_goes_to_the_log_file_and_back(tmp_path, capfd):
    import warnings
    from transformers.utils import logging as hf_logging
    from simtune.demo import libraries_to_log
    log = tmp_path / "o" / "demo_libraries.log"
    before = hf_logging.get_verbosity()
    with libraries_to_log(log):
        hf_logging.get_logger("transformers.modeling_utils").info("loading weights")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("gradient_checkpointing is deprecated", FutureWarning)
        assert not hf_logging.is_progress_bar_enabled()
    err = capfd.readouterr().err
    text = log.read_text()
    assert "loading weights" in text and "gradient_checkpointing is deprecated" in text
    assert "loading weights" not in err and "deprecated" not in err
    assert hf_logging.get_verbosity() == before and hf_logging.is_progress_bar_enabled()
    hf_logging.get_logger("transformers.modeling_utils").warning("after the demo")
    assert "after the demo" not in log.read_text()
