"""Reward functions: plain callables with TRL's reward signature.

``f(prompts, completions, **kwargs) -> list[float | None]``, where ``kwargs`` holds every
other dataset column (one entry per completion) plus what the trainer adds. Completions
are strings, or lists of chat messages for conversational prompts: use
:func:`completion_text` to read either. Rewards are referable by registered name or by a
dotted path ``package.module:function``.
"""
from __future__ import annotations

import importlib
from typing import Callable

REWARDS: dict[str, Callable] = {}
# modules that register rewards when imported (kept lazy: importing them may be heavy)
_PROVIDERS: list[str] = []


def register_reward(name: str):
    def deco(fn: Callable) -> Callable:
        REWARDS[name] = fn
        fn.reward_name = name
        return fn
    return deco


def add_provider(module: str) -> None:
    if module not in _PROVIDERS:
        _PROVIDERS.append(module)


def get_reward(name: str) -> Callable:
    """A registered reward by name, or ``module:function`` / ``module.function``."""
    if name in REWARDS:
        return REWARDS[name]
    for mod in _PROVIDERS:
        importlib.import_module(mod)
        if name in REWARDS:
            return REWARDS[name]
    if ":" in name or "." in name:
        module, _, func = name.rpartition(":") if ":" in name else name.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"reward '{name}' could not be imported: {e}") from None
        if not callable(fn):
            raise KeyError(f"reward '{name}' is not callable")
        return fn
    raise KeyError(f"unknown reward '{name}'; registered: {sorted(REWARDS)}")


def completion_text(completion) -> str:
    """The text of a completion: a string, or the last message's content of a chat list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        return last.get("content", "") if isinstance(last, dict) else str(last)
    if isinstance(completion, dict):
        return completion.get("content", "")
    return ""


add_provider("simtune.recipes.social.rewards")
add_provider("simtune.recipes.math.rewards")
