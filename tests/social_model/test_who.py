"""The candidate scorer (recipes/social/model/who.py): pair reading, early exit, chunks, the
decision and its file, reactions, and training that lowers its losses."""
import json

import pytest

from simtune.config import ConfigError
from simtune.io import DataError
from simtune.recipes.social.prompt import build_prompt, parse_answer, split_prompt
from simtune.recipes.social.model.decision import WhoDecision, expected_f1_pick, relative_pick, sample_f1, tune
from simtune.recipes.social.model.who import (NO, YES, encode_pool, exit_after, fingerprint, pool_probs, ranking, reactions,
                                        token_id)

POOL = [("u1", "interests: football, tech; 3 earlier acts"), ("u2", "interests: food; 0 earlier acts"),
        ("u3", "no profile; 2 earlier acts; said: 好吃"), ("u4", "interests: pets; 9 earlier acts")]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from simtune.models import load_model, load_tokenizer
    return load_model(str(tiny_model_dir), device="cpu"), load_tokenizer(str(tiny_model_dir))


def decision(tok, **kw):
    return WhoDecision(layer=kw.pop("layer", 2), yes_id=token_id(tok, YES), no_id=token_id(tok, NO),
                       thresholds={"0": 0.5}, **kw)


def test_split_prompt_cuts_around_the_pool():
    chain = [{"user": "u9", "action": "comment", "text": "去吃美食吧"}]
    for c in ([], chain):
        p = build_prompt("#football# the coach", "u0", POOL, c)
        parts = split_prompt(p, [u for u, _ in POOL])
        assert parts.head + "\n".join(parts.lines) + parts.tail == p
        assert parts.head.endswith(":\n") and parts.lines[2] == "u3: no profile; 2 earlier acts; said: 好吃"
    with pytest.raises(DataError, match="do not list the 4 candidates"):
        split_prompt(p, ["u1", "u3", "u2", "u4"])
    empty = build_prompt("post", "u0", [])
    assert split_prompt(empty, []).lines == []


def test_early_exit_reads_the_hidden_state_of_that_layer(tiny):
    import torch
    model, tok = tiny
    ids = torch.tensor([tok("hello there, who reacts?")["input_ids"]])
    dec = model.get_decoder()
    with torch.no_grad():
        full = dec(input_ids=ids, output_hidden_states=True)
        with exit_after(model, 1):
            early = dec(input_ids=ids).last_hidden_state
        again = dec(input_ids=ids).last_hidden_state
    assert torch.allclose(early, dec.norm(full.hidden_states[1]), atol=1e-5)
    assert not torch.allclose(early, again) and torch.allclose(again, full.last_hidden_state, atol=1e-5)
    with pytest.raises(ConfigError, match="has 2 decoder layers"):
        with exit_after(model, 3):
            pass


def test_a_candidates_score_depends_on_the_post_and_its_line_only(tiny):
    """Pair reading: a candidate scores the same alone, in any pool, at any place, and in
    chunks; another post changes it."""
    model, tok = tiny
    dec = decision(tok)
    post = "#football# big match today"

    def probs(pool, text=post, max_tokens=2048):
        p = encode_pool(tok, build_prompt(text, "u0", pool), [u for u, _ in pool])
        return pool_probs(model, tok, [p], WhoDecision(**{**dec.__dict__, "max_tokens": max_tokens}))[0]

    together = probs(POOL)
    assert len(set(round(x, 6) for x in together)) > 1
    for k, cand in enumerate(POOL):
        assert probs([cand])[0] == pytest.approx(together[k], abs=1e-5)
    assert probs(POOL[::-1]) == pytest.approx(together[::-1], abs=1e-5)
    assert probs(POOL, max_tokens=70) == pytest.approx(together, abs=1e-5)  # over a row: the shared-prefill route
    assert probs(POOL, text="a quiet day with the cat") != pytest.approx(together, abs=1e-4)


def test_tune_picks_the_decision_with_the_best_mean_f1():
    probs = [[0.9, 0.6, 0.2], [0.7, 0.3], [0.2, 0.1]]
    labels = [[1, 1, 0], [1, 0], [1, 0]]
    # 0.5 and 0.6 name {0,1} and {0}; the third pool has no candidate that high, and naming
    # its best one finds the reactor: every F1 is 1 (the middle of the tied thresholds: 0.6)
    th, at_least_one, rules, _, rep = tune(probs, labels, [0, 0, 0])
    assert (th, at_least_one, rep["0"]["f1"]) == ({"0": 0.6}, True, 1.0)
    assert rules == {"0": "threshold"}  # the expected-F1 rule is no better here: the threshold stays
    # nothing to rescue: at_least_one adds nothing, so it stays off
    th, at_least_one, rules, _, rep = tune(probs[:2], labels[:2], [1, 1])
    assert th == {"1": 0.6} and rep["1"]["f1"] == 1.0 and at_least_one is False
    assert sample_f1([], [0, 0]) == 1.0 and sample_f1([0], [0, 1]) == 0.0


def test_expected_f1_rule_adapts_to_the_pool():
    """Hand-computed: the k best maximise 2 x (their sum) / (k + total); k = 0 when nobody is
    likely at all. One threshold cannot do this across pools with few and many reactors."""
    assert expected_f1_pick([0.9, 0.1, 0.8, 0.2]) == [0, 2]     # k=2: 3.4/4.0 = 0.85 beats k=1 (0.6), k=3 (0.76)
    assert expected_f1_pick([0.6, 0.55, 0.5, 0.45]) == [0, 1, 2, 3]  # many reactors: all four (0.69)
    assert expected_f1_pick([0.02, 0.01]) == []                 # nobody: P = 0.97 beats naming one (0.04)
    # a pool with three reactors (the lowest at 0.38) and one with one (a non-reactor at 0.39): a
    # threshold either loses the 0.38 or takes the 0.39 (best mean F1 0.9); the rule takes k = 3
    # (0.703 > 0.688 for k = 2) and k = 1 (0.798 > 0.793) and gets both right
    probs = [[0.7, 0.6, 0.38, 0.1], [0.95, 0.39, 0.02, 0.02]] * 3
    labels = [[1, 1, 1, 0], [1, 0, 0, 0]] * 3
    t = tune(probs, labels, [0] * 6)
    assert t.rules == {"0": "expected_f1"} and t.report["0"]["f1_expected_f1"] == pytest.approx(1.0)
    assert t.report["0"]["f1_threshold"] == pytest.approx(0.9)
    d = WhoDecision(layer=1, yes_id=0, no_id=1, thresholds=t.thresholds, rules=t.rules)
    assert d.choose(probs[0], 0) == expected_f1_pick(probs[0]) and d.choose(probs[0], 3) == expected_f1_pick(probs[0])


def test_relative_rule_removes_the_pools_own_level():
    """Two pools whose reactors score 0.9/0.8 and 0.4/0.35, with a non-reactor at 0.45 in the
    first: no one threshold fits both (best mean F1 0.9), a cut at a share of each pool's best
    (0.5, 0.875] does (1.0); the expected-F1 rule takes the 0.45 too."""
    probs, labels = [[0.9, 0.8, 0.45], [0.4, 0.35, 0.1]], [[1, 1, 0], [1, 1, 0]]
    assert relative_pick(probs[0], 0.6) == [0, 1] and relative_pick(probs[1], 0.6) == [0, 1]
    assert relative_pick([0.2, 0.1], 0.95) == [0] and relative_pick([], 0.5) == []
    t = tune(probs, labels, [1, 1])
    assert t.rules == {"1": "relative"} and 0.5 < t.shares["1"] <= 0.875
    assert t.report["1"]["f1_relative"] == 1.0 and t.report["1"]["f1_threshold"] == pytest.approx(0.9)
    assert t.report["1"]["f1_expected_f1"] < 1.0
    d = WhoDecision(layer=1, yes_id=0, no_id=1, thresholds=t.thresholds, rules=t.rules, shares=t.shares)
    assert d.choose(probs[0], 1) == [0, 1] and d.choose(probs[1], 2) == [0, 1]  # deeper: the deepest depth's rule


def test_decision_chooses_per_depth_and_at_least_one():
    d = WhoDecision(layer=1, yes_id=0, no_id=1, thresholds={"0": 0.5, "1": 0.2}, at_least_one=True)
    assert d.choose([0.6, 0.4, 0.9], 0) == [0, 2]
    assert d.choose([0.1, 0.3], 1) == [1] and d.choose([0.1, 0.3], 5) == [1]  # deeper: the deepest threshold
    assert d.choose([0.05, 0.1], 1) == [1]  # none passes: the best
    assert d.choose([], 0) == []


def test_decision_file_belongs_to_its_model(tiny, tmp_path, tiny_model_dir):
    import torch
    model, tok = tiny
    with pytest.raises(ConfigError, match="no who decision here"):
        WhoDecision.load(tmp_path)
    dec = decision(tok, fingerprint=fingerprint(model))
    dec.save(tmp_path)
    assert WhoDecision.load(tmp_path, model, tok).thresholds == {"0": 0.5}
    assert fingerprint(model.to(torch.bfloat16)) == dec.fingerprint  # the same weights in another dtype
    model.float()
    import copy
    other = copy.deepcopy(model)  # (a fresh init is not other weights when the RNG was just seeded like the tiny model's)
    with torch.no_grad():
        other.lm_head.weight.mul_(1.5)
    with pytest.raises(ConfigError, match="tuned for other weights"):
        WhoDecision.load(tmp_path, other, tok)
    (tmp_path / "who.json").write_text(json.dumps({**json.loads((tmp_path / "who.json").read_text()), "version": 99}))
    with pytest.raises(ConfigError, match="version 99"):
        WhoDecision.load(tmp_path)


def test_reactions_name_exactly_the_chosen_in_pool_order(tiny):
    model, tok = tiny
    users = [u for u, _ in POOL]
    pools = [encode_pool(tok, build_prompt("#food# hotpot night", "u0", POOL), users),
             encode_pool(tok, build_prompt("nobody", "u0", POOL), users)]
    out = reactions(model, tok, pools, [users, users], [[1, 3], []], max_new_tokens=16)
    first = parse_answer(out[0])
    assert [e["user"] for e in first] == ["u2", "u4"] and all(e["action"] in ("comment", "repost") for e in first)
    assert out[1] == "[]"


def test_ranking_auc_and_average_precision():
    assert ranking([0.9, 0.1, 0.5], [1, 0, 0]) == (1.0, 1.0)
    auc, ap = ranking([0.2, 0.8, 0.5], [1, 0, 1])
    assert auc == 0.0 and ap == pytest.approx((1 / 2 + 2 / 3) / 2)  # both reactors below the one who did not
    assert ranking([0.3, 0.3], [1, 0])[0] == 0.5 and ranking([0.3], [0]) == (None, None)


def test_reactions_with_shared_heads_equal_one_prompt_at_a_time(tiny):
    """Greedy reactions with each pool's head run once per batch are the ones each user's
    whole prompt would give on its own (the packed prefill is exact)."""
    from simtune.generation import generate
    from simtune.recipes.social.model.constrained import AnswerConstraint
    from simtune.recipes.social.model.who import reaction_given
    model, tok = tiny
    users = [u for u, _ in POOL]
    pools = [encode_pool(tok, build_prompt(t, "u0", POOL), users) for t in ("#food# hotpot", "长一点的帖子：今天的比赛太精彩了")]
    picks = [[0, 2, 3], [1, 2]]
    shared = reactions(model, tok, pools, [users, users], picks, max_new_tokens=20, batch_size=4)
    want = []
    for p, pick in zip(pools, picks):
        got = []
        for i in pick:
            given = reaction_given(users[i])
            ids = p.head + p.lines[i] + tok(given, add_special_tokens=False)["input_ids"]
            text = generate(model, tok, [ids], max_new_tokens=20, constraint=lambda rows, w, u=users[i], g=given:
                            AnswerConstraint(tok, [[u]], w, ordered=True, max_new_tokens=20, given=[g.lstrip("\n")]))[0]
            got.append(parse_answer(given.lstrip("\n") + text)[0])
        want.append(got)
    assert [parse_answer(x) for x in shared] == want
