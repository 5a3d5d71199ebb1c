"""Two baselines that need no model, computed for every test sample.

- ``recent``: the user's most recent review dated strictly before the target.
- ``similar``: among the user's reviews dated strictly before the target, the one most
  like what other people wrote about the target film. Exactly: R = the target film's
  reviews written by *other* users that are in the *training* split (at most
  ``max_refs`` of them, the newest first); each candidate h is scored
  ``mean(char_similarity(h, r) for r in R)`` (ROUGE-L F1 on characters); the highest
  score wins, ties going to the more recent candidate. When R is empty (no one else
  reviewed the film in training) it falls back to ``recent`` and the fallback is counted.
"""
from __future__ import annotations

from simtune.metrics.text import _f1, lcs_length, text_tokens
from simtune.recipes.reviews.ingest import Review
from simtune.recipes.reviews.samples import Split, earlier_reviews


def film_references(split: Split) -> dict[str, list[tuple[str, Review]]]:
    """film -> [(user, review)] of the training split, newest first."""
    by_film: dict[str, list[tuple[str, Review]]] = {}
    for uid, rows in split.per_user.items():
        for r, s in rows:
            if s == "train":
                by_film.setdefault(r.film, []).append((uid, r))
    for v in by_film.values():
        v.sort(key=lambda x: x[1].sort_key(), reverse=True)
    return by_film


def most_similar(earlier: list[Review], refs: list[str]) -> Review | None:
    if not earlier:
        return None
    if not refs:
        return earlier[-1]
    ref_toks = [text_tokens(t) for t in refs]
    best, best_score = None, -1.0
    for h in earlier:  # oldest first, so ">=" hands ties to the more recent
        ht = text_tokens(h.text)
        score = sum(_f1(lcs_length(ht, rt), len(ht), len(rt)) for rt in ref_toks) / len(ref_toks)
        if score >= best_score:
            best, best_score = h, score
    return best


def compute_baselines(split: Split, splits: tuple[str, ...] = ("test",), max_refs: int = 100) -> tuple[list[dict], dict]:
    """One row per sample of ``splits`` (same order as ``build_samples``):
    ``{"baseline_recent", "baseline_similar", "similar_fallback"}``, and counts."""
    refs_by_film = film_references(split)
    rows_out: list[dict] = []
    fallbacks = no_history = 0
    for uid, rows in split.per_user.items():
        for r, s in rows:
            if s not in splits:
                continue
            earlier = earlier_reviews(rows, r)
            refs = [x.text for u, x in refs_by_film.get(r.film, []) if u != uid][:max_refs]
            recent = earlier[-1] if earlier else None
            sim = most_similar(earlier, refs)
            fallback = bool(earlier) and not refs
            fallbacks += fallback
            no_history += not earlier
            rows_out.append({"baseline_recent": recent.text if recent else "",
                             "baseline_similar": sim.text if sim else "",
                             "similar_fallback": fallback, "similar_n_refs": len(refs)})
    return rows_out, {"similar_fallback_to_recent": fallbacks, "no_earlier_review": no_history}
