import json

import pytest

import simtune.generation
from simtune.io import DataError
from simtune.recipes.social.simulate import (Lines, SimulateConfig, generative_answerer, load_pool, node_prompt, run,
                                            simulate, tree_from_record, tree_stats)


def fake_generate(answers):
    """A stand-in model: answers by the last thread line (or the post) in each prompt."""
    calls = []

    def gen(model, tok, prompts, **kw):
        calls.append(list(prompts))
        out = []
        for p in prompts:
            key = [l for l in p.splitlines() if l.startswith("> ")]
            key = key[-1].split()[1] if key else "root"
            allowed = {l.split(":")[0] for l in p.splitlines() if l[:1].isdigit() or l.startswith("u")}
            out.append(json.dumps([a for a in answers.get(key, []) if a["user"] in allowed]))
        return out
    return gen, calls


def test_breadth_first_tree(monkeypatch):
    answers = {"root": [{"user": "u1", "action": "comment", "text": "a"}, {"user": "u2", "action": "repost", "text": ""},
                        {"user": "zz", "action": "comment", "text": "not in pool"}],
               "u1": [{"user": "u3", "action": "comment", "text": "b"}, {"user": "u1", "action": "comment", "text": "self"}],
               "u3": [{"user": "u4", "action": "repost", "text": "c"}]}
    gen, calls = fake_generate(answers)
    monkeypatch.setattr(simtune.generation, "generate", gen)
    pool = {f"u{i}": f"profile {i}" for i in range(1, 6)}
    cfg = SimulateConfig.load(None, [], post="x", pool="y", depth_limit=2, pool_chunk=2)
    tree = simulate(generative_answerer(None, None, cfg), {"text": "hello", "user": "u5"}, list(pool), Lines(pool, None),
                    cfg, chunk=cfg.pool_chunk)
    stats = tree_stats(tree)
    # u4 would be depth 3: cut by depth_limit; "zz" is not in the pool; u1 cannot answer itself
    assert stats == {"size": 3, "depth": 2, "breadth": [2, 1], "actions": {"comment": 2, "repost": 1}}
    assert len(calls) == 2  # one batched generate call per level
    assert len(calls[0]) == 2  # 4 candidates (author excluded) in chunks of 2
    assert all("> u1 commented: a" in p for p in calls[1][:2])  # the thread reaches the next level


def test_compare_against_real_cascade(monkeypatch, tmp_path):
    gen, _ = fake_generate({"root": [{"user": "u1", "action": "comment", "text": "a"}]})
    monkeypatch.setattr(simtune.generation, "generate", gen)
    rec = {"root_id": "r", "nodes": [{"id": "r", "user": "u9", "action": "post", "text": "hi", "parent": None},
                                     {"id": "a", "user": "u1", "action": "comment", "text": "x", "parent": "r"},
                                     {"id": "b", "user": "u2", "action": "repost", "text": "", "parent": "a"},
                                     {"id": "c", "user": "u3", "action": "repost", "text": "", "parent": "r"}]}
    (tmp_path / "post.json").write_text(json.dumps(rec))
    (tmp_path / "pool.json").write_text(json.dumps({"u1": {"interests": ["pets"]}, "u2": "likes cats", "u3": {}}))
    cfg = SimulateConfig.load(None, ["--post", str(tmp_path / "post.json"), "--pool", str(tmp_path / "pool.json"),
                                     "--out", str(tmp_path / "sim.json")])
    res = run(cfg, model=object(), tok=object())
    assert res["real_stats"]["breadth"] == [2, 1] and res["stats"]["breadth"] == [1]
    assert "| breadth at depth 2 | 0 | 1 |" in res["comparison_md"]
    assert json.loads((tmp_path / "sim.json").read_text())["tree"]["children"][0]["user"] == "u1"
    assert tree_stats(tree_from_record(rec))["size"] == 3


def test_pool_errors(tmp_path):
    (tmp_path / "p.json").write_text('[{"profile": "no id"}]')
    with pytest.raises(DataError, match=r"p.json:1: field 'id'"):
        load_pool(tmp_path / "p.json")
    assert load_pool_ok(tmp_path) == {"7": "interests: a, b; quiet"}


def load_pool_ok(tmp_path):
    (tmp_path / "q.json").write_text('[{"id": 7, "profile": {"interests": ["a", "b"], "description": "quiet"}}]')
    return load_pool(tmp_path / "q.json")


def test_simulate_tiny_model_runs(tiny_model_dir, tmp_path, monkeypatch):
    """A real (random) model: it is asked about the post and both candidates, and the tree
    holds exactly the users its constrained answer named (a pool user, at most once each)."""
    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.prompt import parse_answer
    seen, real = [], simtune.generation.generate

    def spy(model, tok, prompts, **kw):
        outs = real(model, tok, prompts, **kw)
        seen.append((list(prompts), outs))
        return outs
    monkeypatch.setattr(simtune.generation, "generate", spy)
    (tmp_path / "post.json").write_text('{"text": "新电影上映了", "user": "a"}')
    (tmp_path / "pool.json").write_text('{"b": "likes movies", "c": "likes food"}')
    cfg = SimulateConfig.load(None, ["--post", str(tmp_path / "post.json"), "--pool", str(tmp_path / "pool.json"),
                                     "--out", str(tmp_path / "sim.json"), "--max_new_tokens", "48",
                                     "--depth_limit", "1"])
    res = run(cfg, load_model(str(tiny_model_dir), device="cpu"), load_tokenizer(str(tiny_model_dir)))
    (prompts, outs), = seen
    assert len(prompts) == 1 and all(x in prompts[0] for x in ("新电影上映了", "b: likes movies", "c: likes food"))
    named = [e["user"] for e in parse_answer(outs[0]) or []]
    assert named and set(named) <= {"b", "c"}  # this seeded model names someone: the tree is not empty
    assert res["tree"]["text"] == "新电影上映了" and res["stats"]["size"] == len(set(named))
    assert sorted(c["user"] for c in res["tree"]["children"]) == sorted(set(named))


def test_simulator_asks_what_the_samples_ask(social_data):
    """The simulator's question for a sample's node and pool is that sample's prompt, at
    depth 0 and deeper (the thread, and the candidates' acts before the node's time)."""
    from simtune.recipes.social.evaluate import load_split
    trees = {}
    with open(social_data.build / "trees.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            trees[rec["root_id"]] = rec
    lines = Lines(None, str(social_data.build))
    rows = load_split(social_data.samples, "train")
    checked = set()
    for r in rows:
        if r["depth"] in checked:
            continue
        nodes = {n["id"]: n for n in trees[r["root_id"]]["nodes"]}
        chain, x = [], nodes[r["node_id"]]
        while x["parent"] is not None:
            chain.append({"user": x["user"], "action": x["action"], "text": x["text"]})
            x = nodes[x["parent"]]
        root = nodes[r["root_id"]]
        post = {"text": root["text"], "user": root["user"], "time": root["time"]}
        present = [root["user"], *(c["user"] for c in chain[::-1])]
        assert node_prompt(post, chain[::-1], lines(list(r["candidates"]), r["time"], present)) == r["prompt"]
        checked.add(r["depth"])
    assert checked == {0, 1}


def test_simulate_with_the_scorer_names_whom_the_decision_names(social_data, tiny_model_dir, tmp_path):
    import shutil

    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.decision import WhoDecision
    from simtune.recipes.social.model.who import NO, YES, fingerprint, token_id
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    model, tok = load_model(str(model_dir), device="cpu"), load_tokenizer(str(model_dir))
    rec = (social_data.build / "trees.jsonl").read_text().splitlines()[0]
    (tmp_path / "post.json").write_text(rec)
    (tmp_path / "pool.json").write_text(json.dumps({f"u{i}": {"interests": ["pets"]} for i in range(6)}))
    sizes = {}
    for th, at_least_one in ((0.0, False), (1.01, False), (1.01, True)):
        WhoDecision(layer=1, yes_id=token_id(tok, YES), no_id=token_id(tok, NO), thresholds={"0": th},
                    at_least_one=at_least_one, fingerprint=fingerprint(model)).save(model_dir)
        cfg = SimulateConfig.load(None, ["--model", str(model_dir), "--post", str(tmp_path / "post.json"), "--pool",
                                         str(tmp_path / "pool.json"), "--out", str(tmp_path / "sim.json"),
                                         "--depth_limit", "1", "--max_children", "4", "--reaction_tokens", "12"])
        res = run(cfg, model, tok)
        assert res["who"] == "scorer"
        sizes[(th, at_least_one)] = res["stats"]["size"]
    assert sizes == {(0.0, False): 4, (1.01, False): 0, (1.01, True): 1}  # capped at max_children; none; the best
