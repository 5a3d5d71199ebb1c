"""The recipe end to end on the tiny random model and the shipped example (fast settings)."""
import json

import pytest

from simtune.cli import main
from simtune.recipes.reviews.commands import evaluate_run, load_config, spread_over_users, train


def tiny_cfg(model_dir, tmp_path, *extra):
    return load_config(["--config", "configs/reviews/reviews_default.yaml", "--model_name_or_path", str(model_dir),
                        "--output_root", str(tmp_path / "out"), "--report_to", "none", "--max_length", "320",
                        "--history_budget", "48", "--per_device_train_batch_size", "2",
                        "--per_device_eval_batch_size", "6", "--max_steps", "2", "--eval_steps", "1",
                        "--save_steps", "1", "--learning_rate", "1e-3", "--eval_max_new_tokens", "6", "--seed", "0",
                        *extra])


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rv_train")
    return train(tiny_cfg(tiny_model_dir, tmp, "--early_stopping_patience", "none"))


def test_train_writes_model_config_test_samples_and_preview(trained):
    root = trained["run_dir"]
    assert (trained["final_model_dir"] / "model.safetensors").is_file()
    assert trained["result"].global_step == 2
    tc = json.loads((root / "training_config.json").read_text())
    assert tc["variant"] == "profile+history" and tc["history_budget_unit"] == "tokens"
    assert tc["data"]["split_sizes"] == {"train": 18, "val": 6, "test": 6}
    tests = json.loads((root / "test_samples.json").read_text())
    assert len(tests) == 6 and {t["split"] for t in tests} == {"test"}
    rows = {s: [json.loads(x) for x in (root / "data" / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "val", "test")}
    train_rows = rows["train"]
    for t in tests:
        earlier = [r for s in rows.values() for r in s
                   if r["user_id"] == t["user_id"] and r["timestamp"] < t["timestamp"]]
        assert t["baseline_recent"] == max(earlier, key=lambda r: r["timestamp"])["response"]
        assert t["baseline_similar"] in [r["response"] for r in earlier]
        assert all(h < t["timestamp"] for h in t["history_timestamps"])
    preview = (root / "training_samples_preview.txt").read_text()
    assert preview.count("<|im_start|>assistant") == 3 and train_rows[0]["response"] in preview
    losses = [m for m in trained["result"].experiment.read_metrics() if "loss" in m]
    assert len(losses) == 2 and any("eval_loss" in m for m in trained["result"].experiment.read_metrics())


def test_eval_reports_model_beside_baselines(trained):
    rep = evaluate_run(trained["run_dir"], max_new_tokens=6, batch_size=6)
    assert set(rep["systems"]) == {"model", "baseline: most recent earlier review",
                                   "baseline: earlier review most like the film's other reviews"}
    assert rep["n"] == 6 and rep["variant"] == "profile+history" and rep["reference"]["n_rated"] == 6
    out = trained["run_dir"] / "eval"
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and all(isinstance(p["generated"], str) for p in preds)
    assert json.loads((out / "eval_report.json").read_text())["systems"]["model"] == rep["systems"]["model"]
    assert "real reviews (ceiling)" in (out / "eval_report.md").read_text()
    few = evaluate_run(trained["run_dir"], max_samples=3, max_new_tokens=4, output_subdir="eval3")
    assert few["n"] == 3


def test_decoding_is_the_runs_and_is_tuned_on_val(trained):
    """Left unset, eval decodes as the run's config says (eval_max_new_tokens 6); --split val
    scores the val samples, with their own baselines from before each of them."""
    root = trained["run_dir"]
    rep = evaluate_run(root, split="val", repetition_penalty=1.3, output_subdir="eval_val")
    assert rep["split"] == "val" and rep["n"] == 6
    assert rep["decoding"] == {"max_new_tokens": 6, "repetition_penalty": 1.3, "no_repeat_ngram_size": 0,
                               "do_sample": False, "temperature": 1.0, "top_p": 1.0}
    vals = json.loads((root / "val_samples.json").read_text())
    assert {v["split"] for v in vals} == {"val"} and len(vals) == 6
    preds = [json.loads(x) for x in (root / "eval_val" / "predictions.jsonl").read_text().splitlines()]
    assert [p["reference"] for p in preds] == [v["response"] for v in vals]
    assert [p["baseline_recent"] for p in preds] == [v["baseline_recent"] for v in vals]
    assert "6 val samples" in (root / "eval_val" / "eval_report.md").read_text()


def test_eval_cli_and_errors(trained, capsys, tmp_path):
    assert main(["eval", "reviews", "--run", str(trained["run_dir"]), "--max_samples", "2",
                 "--max_new_tokens", "3", "--output_subdir", "eval_cli"]) == 0
    out = capsys.readouterr().out
    assert "| model |" in out and "baseline: most recent" in out
    assert main(["eval", "reviews", "--run", str(tmp_path)]) == 2
    assert "test_samples.json" in capsys.readouterr().err


def test_spread_over_users():
    rows = [{"user_id": u, "i": i} for i, u in enumerate("aaabbc")]
    assert [r["i"] for r in spread_over_users(rows, 3)] == [0, 3, 5]
    assert [r["i"] for r in spread_over_users(rows, 4)] == [0, 1, 3, 5]
    assert len(spread_over_users(rows, None)) == 6


def test_early_stopping_stops_a_run_that_does_not_improve(tiny_model_dir, tmp_path):
    # learning rate 0: the eval loss never improves, so patience 1 stops at the second evaluation
    out = train(tiny_cfg(tiny_model_dir, tmp_path, "--learning_rate", "0", "--max_steps", "20",
                         "--early_stopping_patience", "1", "--no_history", "--with_rating"))
    assert out["result"].global_step == 2
    tc = json.loads((out["run_dir"] / "training_config.json").read_text())
    assert tc["variant"] == "profile_only+rating"
    rows = [json.loads(x) for x in (out["run_dir"] / "data" / "train.jsonl").read_text().splitlines()]
    assert all("以往的短评" not in r["prompt"] and f"打了 {r['rating']} 星" in r["prompt"] for r in rows)


def test_build_command_and_inspect(tiny_model_dir, tmp_path, capsys):
    assert main(["data", "reviews", "build", "--config", "configs/reviews/reviews_default.yaml",
                 "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "b"), "--no_profile"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "b" / "data" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("【用户】" not in r["prompt"] and "以往的短评" in r["prompt"] for r in rows)
    capsys.readouterr()
    assert main(["data", "reviews", "inspect", "example", "--train_ratio", "0.5", "--val_ratio", "0.25",
                 "--test_ratio", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "samples: 30  (train 12 / val 9 / test 9)" in out and "test  time range: 2023-" in out
    assert out.count(">>> ") == 3
    assert main(["data", "reviews", "inspect", "example", "--train_ratio", "0.5"]) == 2
    assert "must be 1" in capsys.readouterr().err


def test_eval_baselines_only_needs_no_model(trained):
    rep = evaluate_run(trained["run_dir"], baselines_only=True, output_subdir="eval_none")
    assert list(rep["systems"]) == ["baseline: most recent earlier review",
                                    "baseline: earlier review most like the film's other reviews"]
    tests = json.loads((trained["run_dir"] / "test_samples.json").read_text())
    from simtune.recipes.reviews.evaluate import score_system
    assert rep["systems"]["baseline: most recent earlier review"] == score_system(
        [t["baseline_recent"] for t in tests], [t["response"] for t in tests], [t["rating"] for t in tests])


def test_resume_finds_the_newest_run_of_the_same_variant(tmp_path):
    from simtune.config import ConfigError
    from simtune.recipes.reviews.commands import _run_folder
    base = ["--output_root", str(tmp_path)]
    with pytest.raises(ConfigError, match="resume: no earlier run 'reviews_neither'"):
        _run_folder(load_config(base + ["--no_profile", "--no_history", "--resume"]))
    first = _run_folder(load_config(base + ["--no_profile", "--no_history"]))
    other = _run_folder(load_config(base))  # another variant does not count
    assert first != other and first.name.startswith("reviews_neither_")
    assert _run_folder(load_config(base + ["--no_profile", "--no_history", "--resume"])) == first


def test_a_trained_model_applies_to_unseen_users_of_another_folder(trained, tmp_path, capsys):
    from simtune.recipes.reviews.ingest import EXAMPLE_PATH
    users = json.loads(open(EXAMPLE_PATH, encoding="utf-8").read())
    for k, u in enumerate(users):
        u["user"]["profile"]["name"] = f"新用户{k}"
    other = tmp_path / "others.json"
    other.write_text(json.dumps(users, ensure_ascii=False), encoding="utf-8")
    model = str(trained["final_model_dir"])
    assert main(["eval", "reviews", "--model", model, "--data_path", str(other), "--out", str(tmp_path / "ev"),
                 "--max_new_tokens", "4"]) == 0
    rep = json.loads((tmp_path / "ev" / "eval_report.json").read_text())
    assert rep["n"] == 6 and rep["model"] == model and len(rep["systems"]) == 3
    assert (tmp_path / "ev" / "eval_report.md").is_file()
    trained_ids = {json.loads(x)["user_id"] for x in (trained["run_dir"] / "data" / "train.jsonl").read_text().splitlines()}
    tested = {json.loads(x)["user_id"] for x in (tmp_path / "ev" / "data" / "test.jsonl").read_text().splitlines()}
    assert tested and not tested & trained_ids
    capsys.readouterr()
    # the users it trained on: refused, with the count
    assert main(["eval", "reviews", "--model", model, "--data_path", "example", "--out", str(tmp_path / "ev2")]) == 2
    assert "3 of its 3 users were trained on" in capsys.readouterr().err
    assert main(["eval", "reviews", "--model", model, "--data_path", str(other)]) == 2  # no --out


def test_sampled_decoding_is_seeded(trained):
    """do_sample draws with the given seed: the same seed gives the same reviews, and the
    report records it; an unknown decoding key is an error, not dropped."""
    root = trained["run_dir"]
    def run(seed, sub):
        rep = evaluate_run(root, split="val", do_sample=True, temperature=1.5, seed=seed, output_subdir=sub)
        return rep, [json.loads(x)["generated"] for x in (root / sub / "predictions.jsonl").read_text().splitlines()]
    rep, a = run(3, "s3")
    _, b = run(3, "s3b")
    _, c = run(4, "s4")
    assert rep["decoding"]["do_sample"] is True and rep["decoding"]["seed"] == 3
    assert a == b and a != c
    with pytest.raises(TypeError, match="top_k"):
        evaluate_run(root, split="val", top_k=5)
