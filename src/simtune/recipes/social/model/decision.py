"""Who is named, given every candidate's probability of reacting (``who.py`` computes them):
the rule per depth, tuned after training on held-out pools, saved as ``who.json`` beside
the weights with a fingerprint of them (checked at load).

Three rules, one chosen per depth by mean who-F1 on the calibration pools (:func:`tune`):
- ``threshold``: those at or above the depth's probability (``at_least_one``: the best one
  when none is);
- ``relative``: those at or above a share of the pool's best score;
- ``expected_f1``: the ``k`` best, ``k`` maximising the pool's expected who-F1.
A depth without its own entry uses the deepest one below it. With a ``prior`` (``prior.py``),
the probabilities the rules read are the scorer's logit combined with the numbers its
candidate line states, fitted on the same calibration pools before the rules are tuned.

Out of a whole user universe (simulation of a new post), those rules do not hold: they were
tuned on pools half made of reactors. There the scores are first recalibrated for the
universe (``universe``: per depth, ``a, b`` fitted by ``universe.py``), and
:func:`expected_size_pick` names as many as the recalibrated probabilities of a level add up to.
With a candidate proposer in front (``candidates``: how many users a question asks about,
``candidates.py``), the reactions expected from the users it left out (``outside``) are
added to that count.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

from simtune.config import ConfigError

WHO_FILE = "who.json"
WHO_VERSION = 1


def at_depth(table: dict, depth: int):
    """The entry of ``table`` (depth as str -> value) for ``depth``: its own, or the deepest
    one below it, or the shallowest one."""
    known = sorted(int(d) for d in table)
    return table[str(max((k for k in known if k <= depth), default=known[0]))]


@dataclass
class WhoDecision:
    layer: int                          # decoder layers run before the score is read
    yes_id: int
    no_id: int
    scale: float = 1.0                  # score = scale * (logit yes - logit no) + offset: set before training
    offset: float = 0.0                 # so that the untrained scores start at the base rate (see init_score)
    thresholds: dict = field(default_factory=dict)  # depth (str) -> probability; deeper: the deepest one
    at_least_one: bool = False          # name the best candidate when none reaches the threshold
    rules: dict = field(default_factory=dict)  # depth (str) -> "threshold" (default), "relative", "expected_f1"
    shares: dict = field(default_factory=dict)  # depth (str) -> share of the pool's best score ("relative")
    fingerprint: str = ""               # of the weights it was tuned with
    max_tokens: int = 2048              # tokens per packed row (a longer pool is scored in chunks)
    calibration: dict = field(default_factory=dict)  # what it was tuned on (counts, F1)
    universe: dict = field(default_factory=dict)  # depth (str) -> [a, b]: p' = sigmoid(a logit(p) + b) out of everyone
    candidates: int = 0                 # out of everyone, the scorer asks about the proposer's best (candidates.py); 0: all
    outside: dict = field(default_factory=dict)  # depth (str) -> reactors per user the proposer left out
    prior: list = field(default_factory=list)  # weights over prior.FEATURES and a bias: the score with its line's numbers; []: none
    numbers_only: dict = field(default_factory=dict)  # the same fit without the scorer, with its own rules (prior.py)
    version: int = WHO_VERSION

    def threshold(self, depth: int) -> float:
        if not self.thresholds:
            raise ConfigError(f"{WHO_FILE}: no thresholds")
        return float(at_depth(self.thresholds, depth))

    def rule(self, depth: int) -> str:
        return at_depth(self.rules, depth) if self.rules else "threshold"

    def choose(self, probs: Sequence[float], depth: int) -> list[int]:
        """Indices (pool order) of the candidates to name."""
        rule = self.rule(depth)
        if rule == "expected_f1":
            return expected_f1_pick(probs)
        if rule == "relative":
            return relative_pick(probs, float(at_depth(self.shares, depth)))
        return pick(probs, self.threshold(depth), self.at_least_one)

    def universe_probs(self, probs: Sequence[float], depth: int) -> list[float]:
        """The probabilities recalibrated for a pool of everyone (see the module's note)."""
        if not self.universe:
            raise ConfigError(f"{WHO_FILE}: no universe calibration (train again with universe_roots > 0, "
                              "or give a pool)")
        a, b = at_depth(self.universe, depth)
        return [sigmoid(a * logit(p) + b) for p in probs]

    def outside_rate(self, depth: int) -> float:
        """Expected reactors per user of the universe that the proposer did not propose."""
        return float(at_depth(self.outside, depth)) if self.outside else 0.0

    def numbers_only_decision(self) -> "WhoDecision | None":
        """The rules tuned for the numbers alone (``numbers_only``), as a decision; None without."""
        d = self.numbers_only
        if not d:
            return None
        return WhoDecision(layer=self.layer, yes_id=self.yes_id, no_id=self.no_id, thresholds=d["thresholds"],
                           at_least_one=d["at_least_one"], rules=d["rules"], shares=d["shares"])

    def save(self, folder: str | Path) -> None:
        (Path(folder) / WHO_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, model=None, tok=None) -> "WhoDecision":
        """The decision saved with a model; with ``model`` (and ``tok``), checked to belong to it."""
        path = Path(folder) / WHO_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no who decision here (train with `simtune train social who`, "
                              "or evaluate with --who generative)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            dec = cls(**d)
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: not a who decision ({e})") from None
        if dec.version != WHO_VERSION:
            raise ConfigError(f"{path}: version {dec.version}, this simtune reads {WHO_VERSION}")
        if model is not None:
            from simtune.recipes.social.model.who import fingerprint, n_layers
            fp = fingerprint(model)
            if fp != dec.fingerprint:
                raise ConfigError(f"{path}: its thresholds were tuned for other weights (fingerprint "
                                  f"{dec.fingerprint}, this model {fp}); train and tune again")
            if dec.layer > n_layers(model):
                raise ConfigError(f"{path}: layer {dec.layer}, but the model has {n_layers(model)} layers")
        if tok is not None and (dec.yes_id >= len(tok) or dec.no_id >= len(tok)):
            raise ConfigError(f"{path}: its yes/no token ids do not exist in this tokenizer")
        return dec


def has_decision(folder) -> bool:
    return folder is not None and (Path(folder) / WHO_FILE).is_file()


def pick(probs: Sequence[float], threshold: float, at_least_one: bool) -> list[int]:
    """The candidates at or above ``threshold`` (pool order); with ``at_least_one``, the best
    one when none is."""
    out = [i for i, p in enumerate(probs) if p >= threshold]
    if not out and at_least_one and len(probs):
        out = [max(range(len(probs)), key=lambda i: probs[i])]
    return out


def expected_f1_pick(probs: Sequence[float]) -> list[int]:
    """The best ``k`` candidates (pool order), ``k`` chosen to maximise the pool's expected
    who-F1 if the probabilities are right: 2 x (sum of the chosen's) / (k + sum of all), or
    the chance that nobody reacts for ``k`` = 0. Unlike one threshold for every pool, it
    adapts to how many reactors a pool seems to hold: where a pool holds many (who-joins
    pools, ~46%), naming nearly everyone is what a threshold tuned for F1 ends up doing."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    total = sum(probs)
    best, best_k, acc = math.prod(1.0 - p for p in probs), 0, 0.0
    for k, i in enumerate(order, 1):
        acc += probs[i]
        v = 2 * acc / (k + total)
        if v > best:
            best, best_k = v, k
    return sorted(order[:best_k])


def logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(min(x, 30.0), -30.0)))


def expected_size_pick(probs: Sequence[Sequence[float]], rng=None, outside: float = 0.0) -> list[list[int]]:
    """For the questions of one level (each a list of probabilities): the ``round(sum of all
    + outside)`` best over the whole level, per question in pool order (``outside``: the
    reactions expected from users the proposer did not put in the pools; candidates.py). Why not a threshold: out of a
    universe hardly anyone's probability passes 0.5, yet a few react. Why over the level and
    not per question: a reply is rare per node (0.4 expected) but not per level; rounded per
    node, no simulated cascade would ever go below depth 1.
    ``rng`` (a ``random.Random``): that many drawn without replacement in proportion to their
    probabilities instead (keys ``u ** (1 / p)``, Efraimidis-Spirakis). Why: the best are the
    same users for every post that scores alike; draws spread over them as reactions do."""
    k = int(math.floor(sum(map(sum, probs)) + outside + 0.5))
    key = (lambda p: rng.random() ** (1 / max(p, 1e-12))) if rng is not None else (lambda p: p)
    flat = sorted(((key(p), q, i) for q, ps in enumerate(probs) for i, p in enumerate(ps)), key=lambda t: -t[0])[:k]
    out: list[list[int]] = [[] for _ in probs]
    for _, q, i in flat:
        out[q].append(i)
    return [sorted(o) for o in out]


def relative_pick(probs: Sequence[float], share: float) -> list[int]:
    """The candidates scoring at least ``share`` x the pool's best score (pool order). Why:
    candidates of one pool share the post, and how strongly a post draws reactions moves all
    their scores together; a cut relative to the pool's best removes that, which one fixed
    threshold cannot. It names at least one candidate."""
    top = max(probs, default=0.0)
    return [i for i, p in enumerate(probs) if p >= share * top]


SHARES = tuple(round(0.3 + 0.05 * k, 2) for k in range(14))  # 0.3 .. 0.95


def sample_f1(chosen: Sequence[int], labels: Sequence[float]) -> float:
    """who-F1 of one answer (scoring.py's convention: nobody to find and nobody named is 1)."""
    n_true = sum(1 for y in labels if y > 0.5)
    tp = sum(1 for i in chosen if labels[i] > 0.5)
    return 2 * tp / (len(chosen) + n_true) if chosen or n_true else 1.0


class Tuned(NamedTuple):
    thresholds: dict      # depth (str) -> probability
    at_least_one: bool
    rules: dict           # depth (str) -> "threshold", "relative" or "expected_f1"
    shares: dict          # depth (str) -> the relative rule's share
    report: dict          # depth (str) -> {n, f1, f1_threshold, f1_relative, share, f1_expected_f1}


def tune(probs: list[list[float]], labels: list[list[float]], depths: list[int]) -> Tuned:
    """The decision with the best mean who-F1 over the given pools: with and without
    ``at_least_one``, each depth's threshold out of the pools' own probabilities (and 0.5);
    among equally good thresholds the middle one. Then per depth, the rule that does best on
    the same pools: that threshold, the expected-F1 rule (:func:`expected_f1_pick`) or the relative
    cut (:func:`relative_pick`, its share out of ``SHARES``); a tie keeps the earlier."""
    by_d: dict[int, list[int]] = {}
    for k, d in enumerate(depths):
        by_d.setdefault(d, []).append(k)
    best = None
    for flag in (False, True):
        thresholds, f1 = {}, {}
        for d, ks in sorted(by_d.items()):
            grid = sorted({round(p, 4) for k in ks for p in probs[k]} | {0.5})
            score = {th: sum(sample_f1(pick(probs[k], th, flag), labels[k]) for k in ks) for th in grid}
            top = max(score.values())
            tied = [th for th in grid if score[th] == top]
            thresholds[str(d)], f1[str(d)] = float(tied[len(tied) // 2]), top / len(ks)
        total = sum(f1[str(d)] * len(ks) for d, ks in by_d.items())
        if best is None or total > best[0] + 1e-12:
            best = (total, thresholds, flag, f1)
    _, thresholds, flag, f1 = best
    rules, shares, report = {}, {}, {}
    for d, ks in sorted(by_d.items()):
        mean = lambda choose: sum(sample_f1(choose(probs[k]), labels[k]) for k in ks) / len(ks)  # noqa: E731
        rel = {s: mean(lambda p: relative_pick(p, s)) for s in SHARES}
        tied = [s for s in SHARES if rel[s] == max(rel.values())]
        shares[str(d)] = tied[len(tied) // 2]
        got = {"threshold": f1[str(d)], "expected_f1": mean(expected_f1_pick), "relative": rel[shares[str(d)]]}
        rules[str(d)] = max(got, key=lambda r: got[r] + 1e-12 * (r == "threshold"))
        report[str(d)] = {"n": len(ks), "f1": got[rules[str(d)]], "f1_threshold": got["threshold"],
                          "f1_relative": got["relative"], "share": shares[str(d)], "f1_expected_f1": got["expected_f1"]}
    return Tuned(thresholds, flag, rules, shares, report)
