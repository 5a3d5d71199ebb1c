"""Paired differences between two answerers scored on the same samples: the mean difference
and a bootstrap interval over the samples (reviews: ROUGE per review; social: who-F1 per
sample). A difference is only real when its interval excludes 0."""
from __future__ import annotations

from typing import Sequence


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """The mean of ``a - b`` over paired samples (x100, as the table), with the 2.5 and 97.5
    percentiles of that mean over ``n_boot`` resamples of the pairs (seeded): a difference is
    only real when its interval excludes 0."""
    import numpy as np
    d = 100 * (np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    if not len(d):
        return {"diff": None, "lo": None, "hi": None, "n": 0}
    means = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    return {"diff": float(d.mean()), "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5)),
            "n": int(len(d))}


MIN_PAIRS = 20  # below this a bootstrap interval says little: the table does not call a difference real


def paired_table(pairs: dict[str, dict]) -> str:
    """Markdown: one row per compared pair (``"A - B"``), its mean difference and interval."""
    lines = ["| difference (paired, x100) | mean | 95% interval | real? |", "|---|---|---|---|"]
    for name, r in pairs.items():
        lines.append(f"| {name} | {_fmt(r['diff'])} | [{_fmt(r['lo'])}, {_fmt(r['hi'])}] | {verdict(r)} |")
    return "\n".join(lines)


def verdict(r: dict) -> str:
    """Whether a :func:`paired_bootstrap` difference is real: its interval excludes 0, over at
    least ``MIN_PAIRS`` pairs."""
    return ("n/a" if r["lo"] is None else f"too few pairs to tell ({r['n']} < {MIN_PAIRS})" if r["n"] < MIN_PAIRS
            else "yes" if r["lo"] > 0 or r["hi"] < 0 else "no (0 inside)")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
