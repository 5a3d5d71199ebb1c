"""Tree semantics with a stub generator on a hand-built index (hand-checkable numbers)."""
import json

import pytest

from simtune.recipes.social.model.rollout import NodeSample, SampleIndex, naive_rollout, tree_rollout
from simtune.recipes.social.prompt import build_prompt

W = {"format": 0.2, "who": 1.0, "action": 0.3, "text": 0.5}
POST, AUTHOR = "hello world", "a"
ROOT_C = [("u1", "p1"), ("u2", "p2"), ("u3", "p3"), ("u4", "p4")]
C1_C = [("u5", "p5"), ("u6", "p6")]
C5_C = [("u7", "p7")]


def ans(*entries):
    return json.dumps([{"user": u, "action": a, "text": t} for u, a, t in entries])


def sample(root, nid, depth, cands, chain, truth, kids):
    return NodeSample((root, nid), depth, build_prompt(POST, AUTHOR, cands, chain),
                      [u for u, _, _ in truth], [a for _, a, _ in truth], [t for _, _, t in truth],
                      [{"id": i, "user": u, "action": a, "text": t} for i, (u, a, t) in zip(kids, truth)])


@pytest.fixture
def index():
    # root R: real reactions u1 comment "nice" (node c1, has a sample) and u2 repost (c2, no sample)
    # c1: real reaction u5 comment "yes" (c5, has a depth-2 sample); c5: u7 repost (c7, no sample)
    # root S: real reaction u1 comment "ok" (no sample)
    real_chain1 = [{"user": "u1", "action": "comment", "text": "nice"}]
    nodes = [
        sample("R", "R", 0, ROOT_C, [], [("u1", "comment", "nice"), ("u2", "repost", "")], ["c1", "c2"]),
        sample("R", "c1", 1, C1_C, real_chain1, [("u5", "comment", "yes")], ["c5"]),
        sample("R", "c5", 2, C5_C, real_chain1 + [{"user": "u5", "action": "comment", "text": "yes"}],
               [("u7", "repost", "")], ["c7"]),
        sample("S", "S", 0, ROOT_C[:2], [], [("u1", "comment", "ok")], ["s1"]),
    ]
    return SampleIndex({n.key: n for n in nodes}, [("R", "R"), ("S", "S")])


# what the model "says": keyed by the exact prompt it must be asked (so the predicted chain is checked)
ROOT_R = build_prompt(POST, AUTHOR, ROOT_C)
ROOT_S = build_prompt(POST, AUTHOR, ROOT_C[:2])
CHAIN1 = [{"user": "u1", "action": "comment", "text": "nice one"}]           # predicted, not the real "nice"
LEVEL1 = build_prompt(POST, AUTHOR, C1_C, CHAIN1)
CHAIN2 = CHAIN1 + [{"user": "u5", "action": "repost", "text": ""}]
LEVEL2 = build_prompt(POST, AUTHOR, C5_C, CHAIN2)
SCRIPT = {
    ROOT_R: [ans(("u1", "comment", "nice one"), ("u3", "comment", "x"), ("u1", "repost", "dup")),  # traj 0
             ans(("u2", "repost", ""))],                                                       # traj 1: matched, no sample
    ROOT_S: ["not json", "[]"],
    LEVEL1: [ans(("u5", "repost", ""))],
    LEVEL2: [ans(("u7", "repost", ""))],
}


class Stub:
    def __init__(self):
        self.calls = []

    def __call__(self, prompts, n):
        from simtune.recipes.social.model.rollout import Completion
        self.calls.append((len(prompts), n))
        return [[Completion(SCRIPT[p][j]) for j in range(n)] for p in prompts]


def test_tree_semantics_depth_1(index):
    gen = Stub()
    trajs = tree_rollout(index, index.roots, gen, num_traj=2, depth_limit=1, weights=W)
    # level 0: both roots in one call with 2 samples each; level 1: one call
    assert gen.calls == [(2, 2), (1, 1)]
    t0, t1, s0, s1 = trajs
    # traj 0 of R: u1 matched (child prompt with the predicted chain), u3 unmatched, duplicate u1 ignored
    assert [(n.depth, n.key[1], n.parent) for n in t0.nodes] == [(0, "R", None), (1, "c1", 0)]
    assert t0.nodes[1].prompt == LEVEL1 and t0.nodes[1].chain == CHAIN1
    # traj 1: u2 matched but has no sample -> no children
    assert [n.depth for n in t1.nodes] == [0]
    # root: P = R = 1/2 -> F1 .5, action 1, text sim("nice one", "nice"): word LCS 1 -> P .5, R 1
    sim = 2 * 0.5 / 1.5
    r_root0 = 0.2 + 0.5 + 0.3 + 0.5 * sim
    r_l1 = 0.2 + 1.0 + 0.0 + 0.0                 # u5 right, action wrong, text "" vs "yes"
    r_root1 = 0.2 + 2 / 3 + 0.3 + 0.5            # u2 right (P 1, R 1/2), repost right, both texts empty
    assert t0.nodes[0].reward == pytest.approx(r_root0)
    assert t0.nodes[1].reward == pytest.approx(r_l1)
    assert t1.nodes[0].reward == pytest.approx(r_root1)
    assert t0.ret == pytest.approx(r_root0 + r_l1) and t1.ret == pytest.approx(r_root1)
    mean = (t0.ret + t1.ret) / 2
    std = abs(t0.ret - t1.ret) / 2
    assert t0.advantage == pytest.approx((t0.ret - mean) / (std + 1e-4))
    assert t1.advantage == pytest.approx(-t0.advantage)
    assert t0.advantage == pytest.approx(1.0, abs=1e-3)
    # root S: invalid (0) and "[]" (valid, F1 0 with a real reactor -> 0.2); normalized within S only
    assert s0.ret == 0.0 and s1.ret == pytest.approx(0.2)
    assert s0.advantage == pytest.approx(-0.1 / (0.1 + 1e-4)) and s1.advantage == pytest.approx(0.1 / (0.1 + 1e-4))


def test_depth_limit(index):
    gen = Stub()
    t0 = tree_rollout(index, index.roots, gen, num_traj=2, depth_limit=0, weights=W)[0]
    assert gen.calls == [(2, 2)] and len(t0.nodes) == 1
    gen = Stub()
    t0 = tree_rollout(index, index.roots, gen, num_traj=2, depth_limit=2, weights=W)[0]
    assert gen.calls == [(2, 2), (1, 1), (1, 1)]
    assert [(n.depth, n.key[1], n.parent) for n in t0.nodes] == [(0, "R", None), (1, "c1", 0), (2, "c5", 1)]
    assert t0.nodes[2].prompt == LEVEL2 and t0.nodes[2].chain == CHAIN2
    # u7 repost with empty text: everything right; c7 has no sample so the tree stops
    assert t0.nodes[2].reward == pytest.approx(2.0)


def test_naive_builds_the_same_trees_one_prompt_per_call(index):
    class Greedy(Stub):   # the same answer for every sample (as greedy decoding)
        def __call__(self, prompts, n):
            from simtune.recipes.social.model.rollout import Completion
            self.calls.append((len(prompts), n))
            return [[Completion(SCRIPT[p][0]) for _ in range(n)] for p in prompts]

    a, b = Greedy(), Greedy()
    tree = tree_rollout(index, index.roots, a, num_traj=1, depth_limit=2, weights=W)
    naive = naive_rollout(index, index.roots, b, num_traj=1, depth_limit=2, weights=W)
    assert [t.summary() for t in tree] == [t.summary() for t in naive]
    assert all(c == (1, 1) for c in b.calls) and len(b.calls) == 4 and len(a.calls) == 3
