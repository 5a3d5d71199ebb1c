import json
from types import SimpleNamespace

import pytest

from simtune.io import DataError
from simtune.recipes.social.baselines import baseline_predictions, train_statistics
from simtune.recipes.social.evaluate import (GenerativeAnswers, SocialEvalConfig, aggregate, evaluate, load_split,
                                             merge_shards, predict_shard)
from simtune.recipes.social.prompt import build_prompt


def rows_fixture():
    return [
        {"sample_id": "a", "depth": 0, "time": 10, "candidates": ["u1", "u2", "u3", "u4"], "true_users": ["u1", "u2"],
         "true_actions": ["comment", "repost"], "true_texts": ["好", ""]},
        {"sample_id": "b", "depth": 1, "time": 20, "candidates": ["u5", "u6"], "true_users": ["u6"],
         "true_actions": ["comment"], "true_texts": ["ok"]},
    ]


def test_paired_differences_compare_the_model_with_each_depths_strongest_baseline():
    from simtune.recipes.social.evaluate import paired_differences
    rows = [dict(r, sample_id=f"{r['sample_id']}{k}") for k in range(20) for r in rows_fixture()]
    say = lambda *us: [{"user": u, "action": "comment", "text": ""} for u in us]  # noqa: E731
    answers = {"model": {r["sample_id"]: say(*r["true_users"]) for r in rows},  # every answer right
               "baseline: one": {r["sample_id"]: say(r["candidates"][0]) for r in rows},  # half right at depth 0
               "baseline: last": {r["sample_id"]: say(r["candidates"][-1]) for r in rows}}  # right at depth 1
    results = {k: aggregate(rows, v) for k, v in answers.items()}
    got = paired_differences(rows, results, answers)
    assert set(got) == {"depth 0: model - baseline: one", "depth 1: model - baseline: last",
                        "all depths: model - baseline: last"}
    d0 = got["depth 0: model - baseline: one"]
    assert d0["diff"] == pytest.approx(100 * (1 - 2 / 3)) and d0["lo"] == d0["hi"] == pytest.approx(d0["diff"])
    assert got["depth 1: model - baseline: last"]["diff"] == pytest.approx(0.0) and d0["n"] == 20
    assert got["all depths: model - baseline: last"]["diff"] == pytest.approx(50.0)
    one_depth = [r for r in rows if r["depth"] == 0]
    only = paired_differences(one_depth, {k: aggregate(one_depth, v) for k, v in answers.items()}, answers)
    assert set(only) == {"depth 0: model - baseline: one"}  # "all depths" would repeat it


def test_aggregate_hand_computed():
    rows = rows_fixture()
    preds = {"a": [{"user": "u1", "action": "comment", "text": "好"}, {"user": "u3", "action": "comment", "text": ""}],
             "b": None}
    res = aggregate(rows, preds)
    assert res["0"]["f1"] == pytest.approx(0.5) and res["0"]["action_acc"] == 1.0 and res["0"]["text_sim"] == 1.0
    assert res["1"]["f1"] == 0.0 and res["1"]["valid"] == 0.0 and res["1"]["action_acc"] is None
    assert res["all"]["f1"] == pytest.approx(0.25) and res["all"]["valid"] == 0.5
    # micro: tp = 1, predicted = 2, true = 3 -> 2/5
    assert res["all"]["micro_f1"] == pytest.approx(0.4)


def test_baselines_follow_train_statistics():
    rows = rows_fixture()
    stats = train_statistics(rows)  # depth 0: rate 2/4, 2 reactors, majority action tie -> first seen
    assert stats[0]["rate"] == 0.5 and stats[1]["mean_true"] == 1.0 and stats[1]["action"] == "comment"
    class Activity:  # a build's activity without cascades: history only
        users = SimpleNamespace(cascade=None)

        def counts(self, cands, t):
            return [float({"u1": 5, "u2": 0, "u3": 9, "u4": 1, "u5": 0, "u6": 3}[c]) for c in cands]

    b = baseline_predictions(rows, stats, Activity(), seed=0)
    assert "author" not in b and "co-react" not in b
    assert [e["user"] for e in b["all"]["a"].answer] == ["u1", "u2", "u3", "u4"]
    assert [e["user"] for e in b["history"]["a"].answer] == ["u1", "u3"]  # the 2 most active before t, pool order
    assert b["history"]["a"].scores == [5, 0, 9, 1]
    assert [e["user"] for e in b["history"]["b"].answer] == ["u6"]
    res = aggregate(rows, {k: g.answer for k, g in b["history"].items()},
                    {k: g.scores for k, g in b["history"].items()})
    assert res["1"]["f1"] == 1.0 and res["1"]["auc"] == 1.0
    assert res["0"]["auc"] == pytest.approx(0.25)  # true u1 (5), u2 (0) vs u3 (9), u4 (1): only u1 > u4


def profile_predictions(rows, stats):
    b = baseline_predictions(rows, stats)
    return {k: g.answer for k, g in b["profile"].items()} if "profile" in b else None


def test_profile_baseline_names_the_candidates_whose_profile_shares_rare_words():
    """Words shared with the post count by rarity: 'interests' and 'acts' are on every line
    (weight 0); 'football' on two of six lines outweighs 'plain' (one line, not in the
    post); the thread's words count at depth 1; CJK characters are words; ties go in pool
    order; m = the mean number of reactors at the depth in train."""
    c0 = [("u1", "interests: food, pets; 3 earlier acts"), ("u2", "interests: football, tech; 1 earlier acts"),
          ("u3", "interests: music; short and plain; 2 earlier acts"), ("u4", "interests: football; 9 earlier acts")]
    c1 = [("u5", "interests: 美食; 0 earlier acts"), ("u6", "interests: travel; 4 earlier acts")]
    rows = [
        {"sample_id": "a", "depth": 0, "prompt": build_prompt("#football# the coach", "u9", c0),
         "candidates": [u for u, _ in c0], "true_users": ["u2", "u4"], "true_actions": ["comment"] * 2,
         "true_texts": ["x", "y"]},
        {"sample_id": "b", "depth": 1, "prompt": build_prompt("a post", "u9", c1,
                                                               chain=[{"user": "u2", "action": "comment",
                                                                       "text": "去吃美食吧"}]),
         "candidates": ["u5", "u6"], "true_users": ["u5"], "true_actions": ["comment"], "true_texts": ["z"]},
    ]
    stats = train_statistics(rows)
    p = profile_predictions(rows, stats)
    assert [e["user"] for e in p["a"]] == ["u2", "u4"]
    assert [e["user"] for e in p["b"]] == ["u5"]  # 美 and 食 are on the thread line and on u5's line only
    assert aggregate(rows, p)["all"]["f1"] == 1.0
    # no shared word at all: the first m in pool order
    rows[0]["prompt"] = build_prompt("nothing in common", "u9", c0)
    assert [e["user"] for e in profile_predictions(rows, stats)["a"]] == ["u1", "u2"]
    # a prompt of another form: the baseline is left out, not guessed
    rows[1]["prompt"] = "free text"
    assert profile_predictions(rows, stats) is None


def test_eval_shards_merge_once_and_resume(social_data, tiny_model_dir, tmp_path):
    from simtune.models import load_model, load_tokenizer
    model, tok = load_model(str(tiny_model_dir), device="cpu"), load_tokenizer(str(tiny_model_dir))
    rows = load_split(social_data.samples, "val")[:5]
    out = tmp_path / "ev"
    out.mkdir()
    # shard 1 of 2 finishes; shard 0 is "killed" after its first batch, then resumed
    answer = GenerativeAnswers(model, tok, max_new_tokens=4, batch_size=2, constrained=False)
    predict_shard(answer, rows, out, 1, 2, batch_size=2, progress=False)
    with pytest.raises(DataError, match="have not finished"):
        merge_shards(out, rows, 2)
    first = [r for k, r in enumerate(rows) if k % 2 == 0][:2]
    predict_shard(answer, first, out, 0, 1, batch_size=2, progress=False)  # writes shard0-of-1
    (out / "predictions.shard0-of-1.jsonl").rename(out / "predictions.shard0-of-2.jsonl")
    with open(out / "predictions.shard0-of-2.jsonl", "a") as fh:
        fh.write('{"sample_id": "torn')  # killed mid-line
    predict_shard(answer, rows, out, 0, 2, batch_size=2, progress=False)
    lines = (out / "predictions.shard0-of-2.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)  # 2 kept + 1 new, torn line gone
    merged = merge_shards(out, rows, 2)
    assert sorted(merged) == sorted(r["sample_id"] for r in rows)


def test_eval_command_writes_report_with_baselines(social_data, tiny_model_dir, tmp_path):
    cfg = SocialEvalConfig.load(None, ["--model", str(tiny_model_dir), "--samples_dir", str(social_data.samples),
                                       "--out", str(tmp_path / "ev"), "--limit", "4", "--max_new_tokens", "4"])
    report = evaluate(cfg)
    assert set(report["results"]) == {"model", "baseline: random", "baseline: all", "baseline: history",
                                      "baseline: author", "baseline: co-react", "baseline: author+co-react",
                                      "baseline: profile", "oracle (the rule that made the data)"}
    named = {k.split(": ")[-1].split(" (")[0] for k in report["results"] if k != "model"}
    assert named == set(report["notes"]["baselines"])  # each row is said in the notes what it does
    assert report["who"] == "generative" and "auc" not in report["results"]["model"]["all"]
    assert report["results"]["baseline: all"]["all"]["auc"] == pytest.approx(0.5)
    assert report["results"]["baseline: all"]["all"]["recall"] == 1.0  # every true user is in the pool
    md = (tmp_path / "ev" / "eval_social.md").read_text()
    assert "| baseline: history |" in md and "who-F1" in md
