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

from simtune.recipes.reviews.ingest import Review
from simtune.recipes.reviews.samples import MAX_REFS, Split, by_similarity, earlier_reviews, film_references, other_refs


def most_similar(earlier: list[Review], refs: list[str]) -> Review | None:
    return by_similarity(earlier, refs)[0] if earlier else None


def compute_baselines(split: Split, splits: tuple[str, ...] = ("test",), max_refs: int = MAX_REFS) -> tuple[list[dict], dict]:
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
            refs = other_refs(refs_by_film, uid, r.film, max_refs)
            recent = earlier[-1] if earlier else None
            sim = most_similar(earlier, refs)
            fallback = bool(earlier) and not refs
            fallbacks += fallback
            no_history += not earlier
            rows_out.append({"baseline_recent": recent.text if recent else "",
                             "baseline_similar": sim.text if sim else "",
                             "similar_fallback": fallback, "similar_n_refs": len(refs)})
    return rows_out, {"similar_fallback_to_recent": fallbacks, "no_earlier_review": no_history}
