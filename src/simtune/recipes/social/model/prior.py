"""The numbers prior: the scorer's logit and the numbers each candidate line states
(``prompt.line_numbers``: earlier acts, days since the last, this author, alongside)
combined by one logistic fit on the calibration pools, after training.

Why: a candidate line says ``6 earlier acts; last 0.1 days ago; this author 1x; ...`` in
words, and a 135M scorer trained on ~200 pools reads those numbers worse than a logistic
fit on them does (Twitter val pools: AUC 0.75 against 0.84). The fit keeps what the scorer
knows beyond the numbers (the post, the profile, the said text) as the weight of its logit,
and takes the numbers' share from the numbers themselves. The same fit without the logit
(:data:`NUMBERS_ONLY`) is reported beside the model by ``eval social``: it is what the
numbers give with no language model, so the model's row shows what the model adds.
"""
from __future__ import annotations

import math
from typing import Sequence

from simtune.recipes.social.prompt import LineNumbers, pool_numbers, split_prompt

FEATURES = ("scorer_logit", "log_acts", "acts_unknown", "no_acts", "has_behaviour", "log_days_since",
            "log_author", "log_shared", "alongside_share")
NUMBERS_ONLY = FEATURES[1:]
RIDGE = 1e-2  # fixed, so that a weight means the same as repeated rows; keeps a separable sample finite


def numbers_row(n: LineNumbers) -> list[float]:
    """The features of one candidate line, without the scorer's logit (:data:`NUMBERS_ONLY`)."""
    acts, b = n.acts, n.behaviour
    return [math.log1p(acts or 0), float(acts is None), float(acts == 0), float(b is not None),
            math.log1p(b.days_since) if b else 0.0, math.log1p(b.author) if b else 0.0,
            math.log1p(b.shared) if b else 0.0, b.alongside / max(b.present, 1) if b else 0.0]


def design(logits: Sequence[float] | None, numbers: Sequence[LineNumbers]) -> list[list[float]]:
    """One row per candidate: :data:`FEATURES` (with ``logits``) or :data:`NUMBERS_ONLY` (None)."""
    rows = [numbers_row(n) for n in numbers]
    return rows if logits is None else [[x, *r] for x, r in zip(logits, rows)]


def fit_logistic(X, y, w=None, centre=None, iters: int = 100) -> list[float]:
    """Weights (the last one the bias) minimising the weighted log loss of
    ``sigmoid(X @ weights[:-1] + weights[-1])`` plus a ridge of :data:`RIDGE` toward
    ``centre`` (default 0): Newton's method with step halving, so the loss never rises."""
    import numpy as np

    X = np.hstack([np.asarray(X, dtype=np.float64), np.ones((len(X), 1))])
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    c = np.zeros(X.shape[1]) if centre is None else np.asarray(centre, dtype=np.float64)

    def loss(v):
        z = X @ v
        return float((w * (np.logaddexp(0, z) - y * z)).sum() + RIDGE * ((v - c) ** 2).sum() / 2)

    v = c.copy()
    v[-1] = float(np.log(max((w * y).sum(), 1e-9) / max((w * (1 - y)).sum(), 1e-9)))  # start: the base rate
    cur = loss(v)
    for _ in range(iters):
        p = 0.5 * (1 + np.tanh((X @ v) / 2))  # the sigmoid, without overflow
        g = X.T @ (w * (p - y)) + RIDGE * (v - c)
        h = (X * (w * p * (1 - p))[:, None]).T @ X + RIDGE * np.eye(len(v))
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-6 and loss(v - t * step) > cur:
            t /= 2
        if t <= 1e-6:
            break
        v = v - t * step
        new = loss(v)
        done = cur - new < 1e-10 * max(abs(cur), 1.0)
        cur = new
        if done:
            break
    return [float(x) for x in v]


def fit(logits: list[list[float]] | None, numbers: list[Sequence[LineNumbers]], labels: list[list[float]]) -> list[float]:
    """The prior's weights over pools (``logits`` None: the numbers alone); the scorer's
    weight starts from 1 (the ridge pulls toward the scorer as it is)."""
    X, y = [], []
    for k, ns in enumerate(numbers):
        X += design(None if logits is None else logits[k], ns)
        y += labels[k]
    centre = [0.0] * (len(NUMBERS_ONLY) + (logits is not None) + 1)
    if logits is not None:
        centre[0] = 1.0
    return fit_logistic(X, y, centre=centre)


def apply(weights: Sequence[float], logits: Sequence[float] | None, numbers: Sequence[LineNumbers]) -> list[float]:
    """The probabilities the prior gives one pool."""
    from simtune.recipes.social.model.decision import sigmoid
    return [sigmoid(sum(a * b for a, b in zip(weights, row)) + weights[-1]) for row in design(logits, numbers)]


def numbers_only_guesses(rows: list[dict], dec, stats: dict) -> dict:
    """``{sample_id: baselines.Guess}``: the numbers alone (``dec.numbers_only``) with their own
    tuned rules, answering as the baselines do (the train split's action and text)."""
    from simtune.recipes.social.baselines import Guess, _answer, stat_for
    alone = dec.numbers_only_decision()
    out = {}
    for r in rows:
        lines = split_prompt(r["prompt"], r["candidates"], f"sample {r['sample_id']}").lines
        probs = apply(dec.numbers_only["weights"], None, pool_numbers(lines))
        users = [r["candidates"][i] for i in alone.choose(probs, r["depth"])]
        out[r["sample_id"]] = Guess(_answer(stat_for(stats, r["depth"]), users), probs)
    return out
