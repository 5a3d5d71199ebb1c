"""Tiny deterministic rewards for tests and smoke runs (no model, no data columns)."""
from __future__ import annotations

from simtune.rewards import completion_text


def length_reward(prompts=None, completions=(), **kwargs) -> list[float]:
    """Shorter completions score higher: -(characters)."""
    return [-float(len(completion_text(c))) for c in completions]
