"""Scoring one answer against the real reactions of a node: who (set P/R/F1), which action
(accuracy on matched users), what text (character-level similarity on matched users).

Used by the reward functions (training) and the evaluator (reports), so both measure
the same thing. Conventions, stated once:
- predicted users are de-duplicated (first mention wins); users outside the candidate
  pool count as false positives;
- when nobody really reacted, an empty answer scores F1 = 1 and a non-empty one 0;
- action accuracy and text similarity are averaged over matched users; with no matched
  user they are undefined (None) for evaluation, and 0 for rewards;
- two empty texts (a pure repost) have similarity 1.
"""
from __future__ import annotations

from typing import Sequence

from simtune.metrics.text import char_similarity


def text_sim(a: str, b: str) -> float:
    if not a.strip() and not b.strip():
        return 1.0
    return char_similarity(a, b)


def score_answer(pred: list[dict] | None, true_users: Sequence[str], true_actions: Sequence[str],
                 true_texts: Sequence[str]) -> dict:
    """``pred`` is :func:`~simtune.recipes.social.prompt.parse_answer` output (None = invalid)."""
    truth = {u: (a, t) for u, a, t in zip(true_users, true_actions, true_texts)}
    if pred is None:
        return {"valid": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                "n_pred": 0, "n_true": len(truth), "n_match": 0, "action_acc": None, "text_sim": None}
    seen: dict[str, dict] = {}
    for e in pred:
        seen.setdefault(e["user"], e)
    matched = [u for u in seen if u in truth]
    n_pred, n_true, n_match = len(seen), len(truth), len(matched)
    if n_true == 0:
        p = r = f1 = 1.0 if n_pred == 0 else 0.0
    else:
        p = n_match / n_pred if n_pred else 0.0
        r = n_match / n_true
        f1 = 2 * p * r / (p + r) if p + r else 0.0
    acc = sum(seen[u]["action"] == truth[u][0] for u in matched) / n_match if n_match else None
    sim = sum(text_sim(seen[u].get("text", ""), truth[u][1]) for u in matched) / n_match if n_match else None
    return {"valid": 1.0, "precision": p, "recall": r, "f1": f1, "n_pred": n_pred, "n_true": n_true,
            "n_match": n_match, "action_acc": acc, "text_sim": sim}
