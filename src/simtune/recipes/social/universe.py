"""Who reacts out of everyone: the questions a real cascade asks, the users a question is
asked about (every user of the build active before the post), and the scorer's calibration
for pools of that size.

**Why a second calibration.** The scorer is trained and its pool rules are tuned on pools
in which about half the candidates react (the real ones plus 0-3x as many noise users). A
simulated post has no such pool: it is asked about every known user, of whom 1-2% react.
The scores still rank (the real reactors are near the top), but their sum over a 300-user
universe is ~70 where 3 reacted. So after training, the roots of the calibration pools
(held out, the newest of the train split) are asked again the way simulation asks them:
each real node's question with the universe as its pool. Per depth, a logistic fit
``p' = sigmoid(a * logit(p) + b)`` (Platt scaling) on every real reactor and a weighted
sample of the others makes ``p'`` a probability out of the universe; its sum is the
expected number of reactions, and ``decision.expected_size_pick`` names that many.
With ``candidates`` (``candidates.py``), each question is asked about the proposer's best
users only, as simulation will ask it, and the real reactors it leaves out are counted.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import NamedTuple, Sequence

from simtune.io import DataError
from simtune.recipes.social.model.decision import logit, sigmoid


class Question(NamedTuple):
    """One node of a real cascade asked "who reacts to this?"."""
    post: dict           # {text, user, time}
    chain: list          # the thread below the post down to the node: [{user, action, text}]
    node_user: str       # who wrote the node (not a candidate for reacting to it)
    depth: int           # 0: the post itself
    truth: frozenset     # the users who did react to it


def post_of(rec: dict) -> dict:
    root = next((n for n in rec["nodes"] if n.get("parent") is None), rec["nodes"][0])
    return {"text": root.get("text", ""), "user": str(root.get("user", "")), "time": root.get("time")}


def questions(rec: dict, max_depth: int) -> list[Question]:
    """The questions of one trees.jsonl record, down to nodes at ``max_depth`` (breadth first)."""
    post = post_of(rec)
    kids: dict = {}
    for n in rec["nodes"]:
        kids.setdefault(n.get("parent"), []).append(n)
    root = next(n for n in rec["nodes"] if n.get("parent") is None)
    out, level = [], [(root, [])]
    for depth in range(max_depth + 1):
        nxt = []
        for node, chain in level:
            children = kids.get(node["id"], [])
            out.append(Question(post, chain, str(node["user"]), depth, frozenset(str(c["user"]) for c in children)))
            nxt += [(c, chain + [{"user": str(c["user"]), "action": c["action"], "text": c.get("text", "")}])
                    for c in children]
        level = nxt
    return out


def read_trees(build_dir: str | Path, keep, line_may_keep=None) -> list[dict]:
    """The records of ``build_dir/trees.jsonl`` for which ``keep(record)`` is true, in file order.
    ``line_may_keep(raw_line)``, when given, skips a line without parsing it when false (a few
    roots out of a large build)."""
    path = Path(build_dir) / "trees.jsonl"
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                if line_may_keep is not None and not line_may_keep(line):
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, no, None, f"not JSON: {e}") from None
                if keep(rec):
                    out.append(rec)
    except OSError as e:
        raise DataError(path, None, None, f"cannot read the trees: {e}") from None
    return out


def ask(q: Question, lines, users: Sequence[str], order: str = "pool") -> tuple[str, list[str]]:
    """(prompt, candidates) of a question with ``users`` as its pool (the node's own user left out),
    the candidate lines as simulation writes them (``simulate.Lines``)."""
    from simtune.recipes.social.simulate import node_prompt
    cands = [u for u in users if u != q.node_user]
    present = [q.post["user"], *(c["user"] for c in q.chain)]
    return node_prompt(q.post, q.chain, lines(cands, q.post.get("time"), present), order), cands


def fit_platt(x: Sequence[float], y: Sequence[float], w: Sequence[float]) -> tuple[float, float]:
    """(a, b) minimising the weighted log loss of ``sigmoid(a * x + b)``, with the prior's
    small fixed ridge toward a = 1, b = 0 (``prior.fit_logistic``)."""
    from simtune.recipes.social.model.prior import fit_logistic
    a, b = fit_logistic([[v] for v in x], y, w, centre=[1.0, 0.0])
    return a, b


def calibrate_universe(model, tok, dec, build_dir: str | Path, root_ids: Sequence[str], max_depth: int,
                       negatives: int = 64, seed: int = 0, order: str = "pool", candidates: int = 0) -> dict:
    """Fit ``dec.universe`` (depth -> [a, b]) on the real questions of ``root_ids`` asked out of
    their universes: every real reactor active before the post, and per depth ``negatives`` x
    roots others sampled (spread over the depth's questions, weighted up to the universe's
    size). ``candidates`` > 0: the universe is first cut to the proposer's best
    (``candidates.propose``), and the reactors it leaves out are counted into
    ``dec.outside`` (per depth, per user left out). Returns the report saved with it (its
    ``universe`` counts the users asked: the proposal when ``candidates`` > 0)."""
    from simtune.recipes.social.candidates import propose
    from simtune.recipes.social.simulate import Lines
    from simtune.recipes.social.model.who import encode_pool, pool_probs

    want = set(root_ids)
    recs = read_trees(build_dir, lambda r: str(r.get("root_id")) in want)
    lines = Lines(None, str(build_dir))
    rng = random.Random(seed)
    asked = [(q, lines.universe(q.post.get("time"))) for rec in recs for q in questions(rec, max_depth)]
    per_depth = {d: sum(1 for q, _ in asked if q.depth == d) for d in {q.depth for q, _ in asked}}
    pools, meta = [], []  # meta: (depth, labels, weights)
    report: dict = {}
    for q, universe in asked:
        # every depth gets len(recs) x negatives non-reactors in all, spread over its questions
        n_neg = max(4, math.ceil(len(recs) * negatives / per_depth[q.depth]))
        others = [u for u in universe if u != q.node_user]
        present = [q.post["user"], *(c["user"] for c in q.chain)]
        prop = propose(lines.users, others, q.post.get("time"), present, candidates)
        rest = [u for u in prop.users if u not in q.truth]
        pos = [u for u in prop.users if u in q.truth]
        neg = rng.sample(rest, min(n_neg, len(rest)))
        r = report.setdefault(str(q.depth), {"questions": 0, "reactors": 0, "not_in_universe": 0, "universe": 0,
                                             "negatives": 0, "not_proposed": 0, "outside": 0})
        r["questions"] += 1
        r["reactors"] += len(pos)
        r["not_in_universe"] += len(q.truth - set(universe))
        r["not_proposed"] += len(q.truth & set(others)) - len(pos)
        r["outside"] += prop.outside
        r["universe"] += len(rest) + len(pos)
        r["negatives"] += len(neg)
        if not pos and not neg:
            continue
        prompt, cands = ask(q, lines, pos + neg, order)
        pools.append(encode_pool(tok, prompt, cands))
        meta.append((q.depth, [1.0] * len(pos) + [0.0] * len(neg),
                     [1.0] * len(pos) + [len(rest) / max(len(neg), 1)] * len(neg)))
    probs = pool_probs(model, tok, pools, dec)
    dec.universe, dec.candidates = {}, candidates
    dec.outside = {d: r["not_proposed"] / r["outside"] for d, r in report.items() if r["outside"]}
    for d in sorted(report, key=int):
        x, y, w = [], [], []
        for pr, (depth, labels, weights) in zip(probs, meta):
            if depth == int(d):
                x += [logit(v) for v in pr]
                y += labels
                w += weights
        r = report[d]
        r["mean_reactors"] = r["reactors"] / r["questions"]
        r["mean_universe"] = r["universe"] / r["questions"]
        if not r["reactors"] or not r["negatives"]:
            r["fitted"] = False  # nothing to fit: the depth above's fit is used (decision.at_depth)
            continue
        a, b = fit_platt(x, y, w)
        dec.universe[d] = [a, b]
        r.update(fitted=True, a=a, b=b,
                 expected_before=sum(wi * sigmoid(xi) for xi, wi in zip(x, w)) / r["questions"],
                 expected_after=sum(wi * sigmoid(a * xi + b) for xi, wi in zip(x, w)) / r["questions"])
    return {"roots": len(recs), "negatives_per_root_and_depth": negatives, "candidates": candidates,
            "per_depth": report}
