"""Who out of everyone (issue 21): the universe calibration, the level-wise expected-size
pick, and `eval social --cascades` on a tiny model."""
import json
import math
import random
import shutil

import pytest

from simtune.recipes.social.model.decision import WhoDecision, expected_size_pick
from simtune.recipes.social.universe import calibrate_universe, fit_platt, questions


def test_fit_platt_recovers_a_known_logistic_and_stays_finite_when_separable():
    rng = random.Random(0)
    x = [rng.uniform(-4, 4) for _ in range(20000)]
    y = [1.0 if rng.random() < 1 / (1 + math.exp(-(2 * v - 4))) else 0.0 for v in x]
    a, b = fit_platt(x, y, [1.0] * len(x))
    assert a == pytest.approx(2, abs=0.15) and b == pytest.approx(-4, abs=0.3)
    a, b = fit_platt([-1, -1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1])  # separable: no finite optimum without the ridge
    assert math.isfinite(a) and math.isfinite(b) and a > 1


def test_fit_platt_weights_count_as_repeated_rows():
    x, y = [-2.0, -1.0, 0.5, 1.0, 2.0], [0.0, 1.0, 0.0, 1.0, 1.0]
    w = [3.0, 1.0, 2.0, 1.0, 1.0]
    rep = [(xi, yi) for xi, yi, wi in zip(x, y, w) for _ in range(int(wi))]
    assert fit_platt(x, y, w) == pytest.approx(fit_platt([r[0] for r in rep], [r[1] for r in rep], [1.0] * len(rep)),
                                               abs=1e-4)


def test_expected_size_pick_names_the_levels_expected_count_across_its_questions():
    # the level's probabilities add up to 1.55: the 2 best of the level, wherever they are
    assert expected_size_pick([[0.3, 0.05, 0.4], [0.5, 0.1], [0.2]]) == [[2], [0], []]
    # rounded per question, none of these three would get a reaction; over the level, one does
    assert expected_size_pick([[0.3, 0.1], [0.35], [0.25]]) == [[], [0], []]
    assert expected_size_pick([[0.2, 0.1], [0.1]]) == [[], []]


def test_expected_size_pick_can_draw_its_k_in_proportion_to_the_probabilities():
    rng = random.Random(0)
    level = [[0.5, 0.2], [0.1, 0.2]]  # 1.0 expected: one named, drawn
    counts = {}
    for _ in range(4000):
        got = expected_size_pick(level, rng)
        assert sum(map(len, got)) == 1
        key = next((q, i[0]) for q, i in enumerate(got) if i)
        counts[key] = counts.get(key, 0) + 1
    assert {k: round(v / 4000, 1) for k, v in counts.items()} == {(0, 0): 0.5, (0, 1): 0.2, (1, 0): 0.1, (1, 1): 0.2}
    assert expected_size_pick(level, random.Random(3)) == expected_size_pick(level, random.Random(3))


def test_questions_walk_the_real_tree_breadth_first():
    rec = {"root_id": "p", "root_time": 10, "nodes": [
        {"id": "p", "parent": None, "user": "a", "text": "post", "time": 10, "depth": 0},
        {"id": "c1", "parent": "p", "user": "b", "action": "comment", "text": "x", "time": 11, "depth": 1},
        {"id": "c2", "parent": "p", "user": "c", "action": "repost", "text": "", "time": 12, "depth": 1},
        {"id": "c3", "parent": "c1", "user": "d", "action": "comment", "text": "y", "time": 13, "depth": 2}]}
    qs = questions(rec, 1)
    assert [(q.depth, q.node_user, set(q.truth)) for q in qs] == [(0, "a", {"b", "c"}), (1, "b", {"d"}), (1, "c", set())]
    assert qs[1].chain == [{"user": "b", "action": "comment", "text": "x"}]
    assert questions(rec, 0) == qs[:1]


@pytest.fixture(scope="module")
def tiny_scorer(tiny_model_dir, tmp_path_factory):
    """The tiny model as a candidate scorer (untrained: its scores barely rank) in its own folder."""
    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.who import NO, YES, fingerprint, token_id
    folder = tmp_path_factory.mktemp("scorer") / "m"
    shutil.copytree(tiny_model_dir, folder)
    model, tok = load_model(str(folder), device="cpu"), load_tokenizer(str(folder))
    dec = WhoDecision(layer=1, yes_id=token_id(tok, YES), no_id=token_id(tok, NO), thresholds={"0": 0.5},
                      fingerprint=fingerprint(model))
    return folder, model, tok, dec


def test_universe_calibration_makes_the_expected_size_the_real_one(social_data, tiny_scorer):
    """With an intercept in the fit, the recalibrated probabilities over everyone (negatives
    weighted up to the universe) add up to the real reactors per question."""
    _, model, tok, dec = tiny_scorer
    trees = [json.loads(x) for x in (social_data.build / "trees.jsonl").read_text().splitlines()]
    roots = [str(r["root_id"]) for r in trees[-4:]]
    report = calibrate_universe(model, tok, dec, social_data.build, roots, max_depth=1, negatives=8)
    assert report["roots"] == 4 and "0" in dec.universe
    r0 = report["per_depth"]["0"]
    assert r0["questions"] == 4 and r0["fitted"]
    assert r0["reactors"] + r0["not_in_universe"] == sum(len(questions(t, 0)[0].truth) for t in trees[-4:])
    assert r0["expected_after"] == pytest.approx(r0["mean_reactors"], rel=0.05)
    assert r0["expected_before"] > 3 * r0["expected_after"]  # scores tuned nowhere are far too high out of everyone


def eval_cascades(social_data, folder, out, *extra):
    from simtune.recipes.social.evaluate import SocialEvalConfig, evaluate
    return evaluate(SocialEvalConfig.load(None, ["--cascades", "true", "--model", str(folder), "--samples_dir",
                                                 str(social_data.samples), "--out", str(out), "--reactions", "false",
                                                 "--depth_limit", "1", *extra]))


def test_cascades_are_sized_by_the_calibration_and_flag_truncation(social_data, tiny_scorer, tmp_path):
    from simtune.recipes.social.cascades import Cascade
    folder, model, tok, dec = tiny_scorer
    dec.universe = {"0": [0.0, -30.0]}  # nobody reacts
    dec.save(folder)
    none = eval_cascades(social_data, folder, tmp_path / "none", "--limit", "3")["summary"]
    assert none["cascades"] == 3 and none["model"]["median"] == 0 and none["truncated"] == 0
    real = [json.loads(x) for x in (tmp_path / "none" / "cascades.shard0-of-1.jsonl").read_text().splitlines()]
    assert none["model"]["who_f1"] == pytest.approx(sum(r["real"]["breadth"][:1] == [] for r in real) / 3)
    # everyone reacts: each cascade is stopped at --max_nodes and says so
    dec.universe = {"0": [0.0, 30.0]}
    dec.save(folder)
    full = eval_cascades(social_data, folder, tmp_path / "all", "--limit", "3", "--max_nodes", "4")
    s = full["summary"]
    assert s["truncated"] == 3 and s["model"]["median"] == 3  # the post plus 3 reactions
    got = [Cascade(**{k: json.loads(x)[k] for k in Cascade._fields})
           for x in (tmp_path / "all" / "cascades.shard0-of-1.jsonl").read_text().splitlines()]
    assert all(c.truncated and c.universe > 3 for c in got)
    from simtune.report_svg import flatten  # each line keeps its simulated tree, for the report page
    lines = [json.loads(x) for x in (tmp_path / "all" / "cascades.shard0-of-1.jsonl").read_text().splitlines()]
    assert all(len(flatten(x["sim_tree"]).nodes) - 1 == x["sim"]["size"] for x in lines)
    assert "3 truncated at --max_children / --max_nodes" in (tmp_path / "all" / "eval_cascades.md").read_text()
    capped = eval_cascades(social_data, folder, tmp_path / "cap", "--limit", "3", "--max_children", "2")["summary"]
    assert capped["truncated"] == 3 and capped["model"]["median"] == 2  # the 2 best named, the rest flagged
    # the mean-size baseline predicts the train split's mean size for every post
    trees = [json.loads(x) for x in (social_data.build / "trees.jsonl").read_text().splitlines()]
    cut = json.loads((social_data.samples / "summary.json").read_text())["split_cutoffs"]["train_before"]
    mean = sum(len(t["nodes"]) - 1 for t in trees if t["root_time"] < cut) / sum(t["root_time"] < cut for t in trees)
    assert s["size baselines"]["mean size"]["median"] == pytest.approx(mean)
    train = [len(t["nodes"]) - 1 for t in trees if t["root_time"] < cut]
    assert s["size baselines"]["log-mean size"]["median"] == pytest.approx(
        math.expm1(sum(map(math.log1p, train)) / len(train)))


def test_a_post_with_nobody_active_before_it_gives_an_empty_cascade(social_data, tiny_scorer, tmp_path):
    folder, model, tok, dec = tiny_scorer
    dec.universe = {"0": [1.0, 0.0]}
    dec.save(folder)
    s = eval_cascades(social_data, folder, tmp_path / "first", "--split", "train", "--limit", "1")["summary"]
    assert s["empty_universe"] == 1 and s["model"]["median"] == 0
    assert "1 with nobody active before the post (empty)" in (tmp_path / "first" / "eval_cascades.md").read_text()


def test_cascade_shards_are_merged_into_the_same_report(social_data, tiny_scorer, tmp_path):
    folder, model, tok, dec = tiny_scorer
    dec.universe = {"0": [1.0, -2.0]}
    dec.save(folder)
    whole = eval_cascades(social_data, folder, tmp_path / "one", "--limit", "4")["summary"]
    assert eval_cascades(social_data, folder, tmp_path / "two", "--limit", "4", "--shard", "1/2") is None
    merged = eval_cascades(social_data, folder, tmp_path / "two", "--limit", "4", "--shard", "0/2")["summary"]
    for key in ("cascades", "model", "size baselines", "who baselines", "real", "who_paired"):
        assert merged[key] == whole[key]
    # the model's who-F1 beside the strongest who baseline's, paired over the same posts
    (name, d), = whole["who_paired"].items()
    best = max((k for k in whole["who baselines"] if k.startswith("baseline: ")), key=whole["who baselines"].get)
    assert name == f"model - {best}" and d["n"] == 4
    assert d["diff"] == pytest.approx(100 * (whole["model"]["who_f1"] - whole["who baselines"][best]))


def test_simulate_without_a_pool_names_as_many_as_the_universe_probabilities_add_up_to(social_data, tiny_scorer,
                                                                                       tmp_path):
    from simtune.config import ConfigError
    from simtune.recipes.social.simulate import Lines, SimulateConfig, run
    folder, model, tok, dec = tiny_scorer
    rec = json.loads((social_data.build / "trees.jsonl").read_text().splitlines()[-1])
    (tmp_path / "post.json").write_text(json.dumps(rec))
    root = next(n for n in rec["nodes"] if n.get("parent") is None)
    n = len([u for u in Lines(None, str(social_data.build)).universe(root["time"]) if u != str(root["user"])])
    args = ["--model", str(folder), "--post", str(tmp_path / "post.json"), "--build_dir", str(social_data.build),
            "--out", str(tmp_path / "sim.json"), "--depth_limit", "1", "--reaction_tokens", "8"]
    dec.universe = {"0": [0.0, math.log(2.4 / (n - 2.4))]}  # everyone at 2.4 / n: 2.4 expected, 2 named
    dec.save(folder)
    res = run(SimulateConfig.load(None, args), model, tok)
    assert res["pool_size"] == n + 1 and res["stats"]["size"] == 2 and not res["truncated"]
    dec.universe = {}
    dec.save(folder)
    with pytest.raises(ConfigError, match="no universe calibration"):
        run(SimulateConfig.load(None, args), model, tok)


def test_calibration_through_the_proposer_counts_the_reactors_it_leaves_out(social_data, tiny_scorer):
    _, model, tok, dec = tiny_scorer
    trees = [json.loads(x) for x in (social_data.build / "trees.jsonl").read_text().splitlines()]
    roots = [str(r["root_id"]) for r in trees[-4:]]
    r0 = calibrate_universe(model, tok, dec, social_data.build, roots, max_depth=0, negatives=8,
                            candidates=5)["per_depth"]["0"]
    assert dec.candidates == 5 and r0["mean_universe"] == 5  # the scorer was asked about 5 users a question
    assert r0["reactors"] + r0["not_proposed"] + r0["not_in_universe"] == sum(len(questions(t, 0)[0].truth)
                                                                              for t in trees[-4:])
    assert r0["not_proposed"] > 0 and dec.outside["0"] == pytest.approx(r0["not_proposed"] / r0["outside"])
    assert dec.outside_rate(3) == dec.outside["0"]
    dec.candidates, dec.outside = 0, {}


def test_simulate_through_the_proposer_names_proposed_users_and_counts_the_rest_in(social_data, tiny_scorer, tmp_path):
    from simtune.recipes.social.candidates import propose
    from simtune.recipes.social.simulate import Lines, SimulateConfig, run
    folder, model, tok, dec = tiny_scorer
    rec = json.loads((social_data.build / "trees.jsonl").read_text().splitlines()[-1])
    (tmp_path / "post.json").write_text(json.dumps(rec))
    root = next(n for n in rec["nodes"] if n.get("parent") is None)
    lines = Lines(None, str(social_data.build))
    others = [u for u in lines.universe(root["time"]) if u != str(root["user"])]
    proposed = propose(lines.users, others, root["time"], [str(root["user"])], 5)
    # each of the 5 proposed at 0.2 (1.0 expected), 1.2 more expected from the rest: 2 named, both proposed
    dec.universe, dec.candidates, dec.outside = {"0": [0.0, math.log(0.2 / 0.8)]}, 5, {"0": 1.2 / proposed.outside}
    dec.save(folder)
    args = ["--model", str(folder), "--post", str(tmp_path / "post.json"), "--build_dir", str(social_data.build),
            "--out", str(tmp_path / "sim.json"), "--depth_limit", "1", "--reaction_tokens", "8"]
    res = run(SimulateConfig.load(None, args), model, tok)
    named = [c["user"] for c in res["tree"]["children"]]
    assert len(named) == 2 and set(named) <= set(proposed.users)
    res = run(SimulateConfig.load(None, args + ["--candidates", "0"]), model, tok)  # everyone asked: 0.2 x all of them
    assert res["stats"]["size"] == min(round(0.2 * len(others) + 1e-9), 20) and res["truncated"] == (0.2 * len(others) > 20)
    dec.universe, dec.candidates, dec.outside = {}, 0, {}
    dec.save(folder)
