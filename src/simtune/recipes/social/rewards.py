"""Social rewards with TRL's signature ``f(prompts, completions, **kwargs) -> list[float]``.

They read the ground truth from the GRPO rows' columns (``true_users``, ``true_actions``,
``true_texts``, arriving as keyword arguments, one entry per completion). Weights are set
with ``reward_weights`` in the GRPO config (one per function), as TRL does; the
``social_combined`` reward is a fixed-weight sum for use on its own.
"""
from __future__ import annotations

from simtune.recipes.social.prompt import parse_answer
from simtune.recipes.social.scoring import score_answer
from simtune.rewards import completion_text, register_reward

COMBINED_WEIGHTS = {"format": 0.2, "who": 1.0, "action": 0.3, "text": 0.5}


def _scores(completions, kwargs) -> list[dict]:
    n = len(completions)
    for col in ("true_users", "true_actions", "true_texts"):
        if col not in kwargs or len(kwargs[col]) != n:
            raise KeyError(f"social rewards need the '{col}' column (one entry per completion); got {sorted(kwargs)}")
    return [score_answer(parse_answer(completion_text(c)), u, a, t)
            for c, u, a, t in zip(completions, kwargs["true_users"], kwargs["true_actions"], kwargs["true_texts"])]


@register_reward("social_format")
def social_format(prompts=None, completions=(), **kwargs) -> list[float]:
    """1 when the answer is a JSON list of {user, action, text}, else 0."""
    return [1.0 if parse_answer(completion_text(c)) is not None else 0.0 for c in completions]


@register_reward("social_who")
def social_who(prompts=None, completions=(), **kwargs) -> list[float]:
    """F1 between the predicted and the true set of reacting users."""
    return [s["f1"] for s in _scores(completions, kwargs)]


@register_reward("social_action")
def social_action(prompts=None, completions=(), **kwargs) -> list[float]:
    """Action accuracy on matched users (0 when none matched)."""
    return [s["action_acc"] or 0.0 for s in _scores(completions, kwargs)]


@register_reward("social_text")
def social_text(prompts=None, completions=(), **kwargs) -> list[float]:
    """Character-level similarity (ROUGE-L F1) of matched users' texts (0 when none matched)."""
    return [s["text_sim"] or 0.0 for s in _scores(completions, kwargs)]


def combined(score: dict, weights: dict | None = None) -> float:
    w = weights or COMBINED_WEIGHTS
    return (w["format"] * score["valid"] + w["who"] * score["f1"] + w["action"] * (score["action_acc"] or 0.0)
            + w["text"] * (score["text_sim"] or 0.0))


@register_reward("social_combined")
def social_combined(prompts=None, completions=(), **kwargs) -> list[float]:
    """0.2 format + 1.0 who-F1 + 0.3 action accuracy + 0.5 text similarity."""
    return [combined(s) for s in _scores(completions, kwargs)]
