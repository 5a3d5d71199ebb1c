"""The numbers prior (recipes/social/model/prior.py): the numbers a candidate line states are read
back exactly, the fit finds the signal wherever it is (the score or the numbers), and the
scorer's probabilities and the numbers-alone row use it."""
import random

import pytest

from simtune.recipes.social.model.decision import WhoDecision
from simtune.recipes.social.model.prior import FEATURES, NUMBERS_ONLY, apply, fit, numbers_only_guesses
from simtune.recipes.social.prompt import Behaviour, LineNumbers, build_prompt, candidate_line, line_numbers
from simtune.recipes.social.model.who import ranking


def test_line_numbers_reads_back_what_candidate_line_wrote():
    b = Behaviour(3.0, 2, 1, 3, 4)
    tricky = ["", "hi", "; 7 earlier acts", "no profile; 9 earlier acts; last 1.0 days ago", "好吃; said: x"]
    for static in (None, "interests: food", "likes x; 3 earlier acts", "no profile?"):
        for acts in (None, 0, 5):
            for said in tricky:
                for beh in (None, b):
                    line = candidate_line(static, acts, said or None, beh)
                    if acts is None and static and static.endswith("earlier acts"):
                        continue  # the same text as that profile with 3 acts known: the line cannot tell
                    want_b = beh if static is None and acts else None
                    assert line_numbers(line) == LineNumbers(acts, want_b), line


def pools_where(signal: str, n_pools: int = 60, seed: int = 0):
    """Pools of 10 in which reactors differ from the others by ``signal``: 'numbers' (more
    earlier acts, a noisy score) or 'score' (a higher score, the same numbers)."""
    rng = random.Random(seed)
    logits, numbers, labels = [], [], []
    for _ in range(n_pools):
        ys = [1.0] * 4 + [0.0] * 6
        lg, ns = [], []
        for y in ys:
            acts = rng.randint(5, 40) if (signal == "numbers" and y) else rng.randint(0, 8)
            lg.append(rng.gauss(2.0 * y if signal == "score" else 0.0, 1.0))
            ns.append(LineNumbers(acts, Behaviour(rng.random(), 0, 0, 1, 0) if acts else None))
        logits.append(lg)
        numbers.append(ns)
        labels.append(ys)
    return logits, numbers, labels


def mean_auc(probs, labels):
    return sum(ranking(p, y)[0] for p, y in zip(probs, labels)) / len(labels)


@pytest.mark.parametrize("signal", ["numbers", "score"])
def test_the_prior_takes_the_signal_from_where_it_is(signal):
    logits, numbers, labels = pools_where(signal)
    w = fit(logits, numbers, labels)
    alone = fit(None, numbers, labels)
    assert len(w) == len(FEATURES) + 1 and len(alone) == len(NUMBERS_ONLY) + 1
    t_logits, t_numbers, t_labels = pools_where(signal, seed=1)  # scored on other pools
    fused = mean_auc([apply(w, lg, ns) for lg, ns in zip(t_logits, t_numbers)], t_labels)
    score = mean_auc(t_logits, t_labels)
    numbers_only = mean_auc([apply(alone, None, ns) for ns in t_numbers], t_labels)
    if signal == "numbers":
        assert score < 0.6 and fused > 0.85 and numbers_only > 0.85 and w[1] > 0.5
    else:
        assert numbers_only < 0.65 and fused > 0.85 and score > 0.85 and w[0] > 1.0


def test_the_numbers_alone_row_answers_with_its_own_rule():
    cands = [("u1", candidate_line(None, 30, None, Behaviour(0.1, 3, 1, 1, 5))), ("u2", candidate_line(None, 0)),
             ("u3", candidate_line("interests: food", 1))]
    row = {"sample_id": "s1", "depth": 0, "prompt": build_prompt("post", "u0", cands), "candidates": ["u1", "u2", "u3"]}
    logits, numbers, labels = pools_where("numbers")
    dec = WhoDecision(layer=1, yes_id=1, no_id=2, numbers_only={
        "weights": fit(None, numbers, labels), "thresholds": {"0": 0.5}, "at_least_one": False,
        "rules": {"0": "threshold"}, "shares": {}})
    g = numbers_only_guesses([row], dec, {0: {"rate": 0.3, "mean_true": 1, "action": "repost", "text": ""}})["s1"]
    assert [a["user"] for a in g.answer] == ["u1"] and g.scores[0] > 0.5 > max(g.scores[1:])
    assert g.answer[0]["action"] == "repost"
