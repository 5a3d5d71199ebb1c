"""Answers that need no model, beside which every social model metric is reported.

Each baseline gives, per sample, an answer and a score per candidate (for ranking quality);
``BASELINES`` below says what each one does (evaluation copies it into its report). Baseline
answers use the train split's most common action at that depth and its most common text
for that action, so their action and text scores are defined too.
"""
from __future__ import annotations

import logging
import math
import os
import random
import re
from collections import Counter, defaultdict
from typing import NamedTuple

from simtune.io import DataError

log = logging.getLogger(__name__)

BASELINES = {
    "random": "each candidate chosen independently with the true rate of its depth (reacting users / pool size, "
              "measured on the train split), seeded; scores: the draws",
    "all": "every candidate; scores: all equal",
    "history": "the m candidates most active before the sample's time (from the build's activity index), m = the "
               "mean number of true reactors at that depth in train; scores: the activity counts",
    "author": "(builds with each act's cascade) the m candidates who reacted to the most earlier cascades of this "
              "post's author; ties by activity count",
    "co-react": "(likewise) the m candidates who shared the most earlier cascades with the users present (the "
                "post's author and the thread's users); ties by activity count",
    "author+co-react": "(likewise) the m candidates with the highest sum of the two counts above: the rule that "
                       "proposes candidates out of everyone (candidates.py)",
    "profile": "the m candidates whose candidate line in the prompt shares the most words with the post (and the "
               "thread), each shared word weighted by its inverse document frequency over the evaluated prompts' "
               "candidate lines (words: lower-case runs of 2+ ASCII letters or digits; each CJK character is a "
               "word); ties in pool order; scores: the weighted overlaps. It reads only the prompt: what a "
               "content-based recommender would do with the same input",
    "oracle": "(synthetic corpora only) the rule that made the data, read from the corpus's truth.json: the "
              "candidates whose latent interests include the post's #topic#. The ceiling of what the prompt "
              "allows, not a baseline to beat",
}


class Guess(NamedTuple):
    answer: list[dict]     # [{"user", "action", "text"}] in pool order
    scores: list[float]    # one per candidate, pool order (higher = more likely to react)


def train_statistics(train_rows: list[dict]) -> dict:
    """Per depth: true rate, mean reactors, majority action, most common text per action."""
    by_d: dict[int, dict] = defaultdict(lambda: {"true": 0, "pool": 0, "n": 0, "actions": Counter(),
                                                  "texts": defaultdict(Counter)})
    for r in train_rows:
        s = by_d[r["depth"]]
        s["true"] += len(r["true_users"])
        s["pool"] += len(r["candidates"])
        s["n"] += 1
        for a, t in zip(r["true_actions"], r["true_texts"]):
            s["actions"][a] += 1
            s["texts"][a][t] += 1
    stats = {}
    for d, s in by_d.items():
        action = s["actions"].most_common(1)[0][0] if s["actions"] else "comment"
        text = s["texts"][action].most_common(1)[0][0] if s["texts"][action] else ""
        stats[d] = {"rate": s["true"] / s["pool"] if s["pool"] else 0.0, "mean_true": s["true"] / max(s["n"], 1),
                    "action": action, "text": text}
    return stats


def stat_for(stats: dict, depth: int) -> dict:
    if depth in stats:
        return stats[depth]
    if not stats:
        return {"rate": 0.0, "mean_true": 1.0, "action": "comment", "text": ""}
    return stats[max(d for d in stats if d <= depth) if any(d <= depth for d in stats) else min(stats)]


def _answer(st: dict, users) -> list[dict]:
    """A baseline's answer: ``users`` with the depth's majority action and its most common text."""
    return [{"user": u, "action": st["action"], "text": st["text"]} for u in users]


def _top(cands: list[str], scores: list[float], m: int) -> list[str]:
    top = sorted(range(len(cands)), key=lambda i: (-scores[i], i))[:m]
    return [cands[i] for i in sorted(top)]


def baseline_predictions(rows: list[dict], stats: dict, activity: "BuildActivity | None" = None, seed: int = 0,
                         truth: dict | None = None) -> dict[str, dict[str, Guess]]:
    """``{baseline name: {sample_id: Guess}}``; ``activity`` for history (and author,
    co-react where the build knows each act's cascade); ``profile`` where the rows have
    prompts that :func:`profile_scores` reads; ``oracle`` with a synthetic corpus's ``truth``."""
    rng = random.Random(seed)
    out: dict[str, dict] = {"random": {}, "all": {}}
    if activity is not None:
        out["history"] = {}
        if activity.users.cascade is not None:
            out["author"], out["co-react"], out["author+co-react"] = {}, {}, {}
    for r in rows:
        st = stat_for(stats, r["depth"])
        cands = list(r["candidates"])
        draws = [rng.random() for _ in cands]
        out["random"][r["sample_id"]] = Guess(_answer(st, [u for u, x in zip(cands, draws) if x < st["rate"]]),
                                              [1 - x for x in draws])
        out["all"][r["sample_id"]] = Guess(_answer(st, cands), [1.0] * len(cands))
        if activity is not None:
            m = max(1, round(st["mean_true"]))
            counts = activity.counts(cands, r["time"])
            out["history"][r["sample_id"]] = Guess(_answer(st, _top(cands, counts, m)), counts)
            if "author" in out:
                tie = [c / (max(counts) + 1) for c in counts]  # below 1: breaks ties only
                beh = activity.behaviour(cands, counts, r["time"], r["prompt"], r["sample_id"])
                for name, sc in (("author", [b.author if b else 0 for b in beh]),
                                 ("co-react", [b.shared if b else 0 for b in beh]),
                                 ("author+co-react", [b.author + b.shared if b else 0 for b in beh])):
                    sc = [x + y for x, y in zip(sc, tie)]
                    out[name][r["sample_id"]] = Guess(_answer(st, _top(cands, sc, m)), sc)
    scores = profile_scores(rows) if rows and "prompt" in rows[0] else None
    if scores is not None:
        out["profile"] = {}
        for r in rows:
            st = stat_for(stats, r["depth"])
            sc = scores[r["sample_id"]]
            out["profile"][r["sample_id"]] = Guess(_answer(st, _top(list(r["candidates"]), sc,
                                                                    max(1, round(st["mean_true"])))), sc)
    if truth is not None:
        oracle = oracle_predictions(rows, stats, truth)
        if oracle is not None:
            out["oracle"] = oracle
    return out


_WORD = re.compile(r"[a-z0-9]{2,}|[\u3400-\u9fff\uf900-\ufaff]")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def profile_scores(rows: list[dict]) -> dict[str, list[float]] | None:
    """The ``profile`` baseline's score of every candidate, or None when a prompt is not one
    that ``build_prompt`` writes (the candidates' lines are unknown)."""
    from simtune.recipes.social.prompt import parse_prompt

    parsed = []
    df: Counter = Counter()
    n_lines = 0
    for r in rows:
        try:
            p = parse_prompt(r["prompt"], f"sample {r['sample_id']}")
        except DataError as e:
            log.warning("profile baseline left out: %s", e)
            return None
        lines = [_words(line) for _, line in p["candidates"]]
        for w in lines:
            df.update(w)
        n_lines += len(lines)
        query = _words(" ".join([p["post_text"], *(c.get("text") or "" for c in p["chain"])]))
        parsed.append((r["sample_id"], lines, query))
    idf = {w: math.log((n_lines + 1) / (c + 1)) for w, c in df.items()}
    return {sid: [sum(idf[w] for w in ws & query) for ws in lines] for sid, lines, query in parsed}


_TOPIC = re.compile(r"#([^#\s]+)#")


def oracle_predictions(rows: list[dict], stats: dict, truth: dict) -> dict[str, Guess] | None:
    """The synthetic corpus's rule (module docstring), or None when the samples' users are not
    the ones ``truth`` names (a pseudonymised build) or a post has no ``#topic#``."""
    from simtune.recipes.social.prompt import parse_prompt
    out = {}
    for r in rows:
        cands = list(r["candidates"])
        if not all(u in truth for u in cands):
            log.warning("oracle left out: candidates of sample %s are not in truth.json (pseudonymised ids?)",
                        r["sample_id"])
            return None
        m = _TOPIC.search(parse_prompt(r["prompt"], f"sample {r['sample_id']}")["post_text"])
        if m is None:
            log.warning("oracle left out: the post of sample %s has no #topic#", r["sample_id"])
            return None
        scores = [1.0 if m.group(1) in truth[u].get("interests", []) else 0.0 for u in cands]
        out[r["sample_id"]] = Guess(_answer(stat_for(stats, r["depth"]), [u for u, s in zip(cands, scores) if s]),
                                    scores)
    return out


class BuildActivity:
    """What the history, author and co-react baselines read from a build: acts strictly before
    a sample's time (``samples.UserTable``)."""

    def __init__(self, build_dir: str | os.PathLike):
        from simtune.recipes.social.user_table import UserTable
        self.users = UserTable(build_dir)

    def counts(self, cands: list[str], t: int) -> list[float]:
        u = self.users
        idx = [u.pos.get(x, -1) for x in cands]
        known = [i for i in idx if i >= 0]
        n = dict(zip(known, u.acts_before(known, int(t)).tolist())) if known else {}
        return [float(n.get(i, 0)) for i in idx]

    def behaviour(self, cands: list[str], counts: list[float], t: int, prompt: str, where: str) -> list:
        """Each candidate's ``prompt.Behaviour`` (None: no earlier act), with the users present
        read from the sample's prompt."""
        from simtune.recipes.social.prompt import parse_prompt
        p = parse_prompt(prompt, f"sample {where}")
        u = self.users
        present = u.present([p["post_author"], *(c["user"] for c in p["chain"])], int(t))
        return [u.behaviour(u.pos[x], int(c), int(t), present) if x in u.pos else None for x, c in zip(cands, counts)]
