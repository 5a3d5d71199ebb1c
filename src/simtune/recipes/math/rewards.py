"""GSM8K rewards with TRL's signature ``f(prompts, completions, answer, **kw) -> list[float]``.

- ``math_correctness``: 2.0 when the ``<answer>`` tag holds exactly the gold number (a plain
  literal such as ``72`` or ``72.0``), 1.5 when its number is right but the form differs
  (``$``, commas, units, trailing words: ``$1,234 dollars``), 0 otherwise (wrong, or no
  closed ``<answer>...</answer>`` tag). Within the tag the last number counts.
- ``math_format``: 0.2 for each of ``<reasoning>``, ``</reasoning>``, ``<answer>``, ``</answer>``
  present (0 to 0.8).
- ``math_combined``: their sum (0 to 2.8).

The gold comes from the ``answer`` column: a normalized number (prepared data) or a raw
GSM8K solution ending in ``#### N``. Parsing is regular expressions and ``Fraction``; model
output is never evaluated as code.
"""
from __future__ import annotations

import re

from simtune.recipes.math.data import PLAIN_NUMBER_RE, find_numbers, gold_answer, parse_number
from simtune.rewards import completion_text, register_reward

EXACT, RIGHT_NUMBER, WRONG = 2.0, 1.5, 0.0
TAG_POINTS = 0.2
TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """The content of the last closed ``<answer>...</answer>`` tag, stripped; None if none."""
    found = _ANSWER_RE.findall(text or "")
    return found[-1].strip() if found else None


def correctness_score(text: str, gold) -> float:
    gold_s = gold_answer(gold)
    if gold_s is None:
        return WRONG
    gold_v = parse_number(gold_s)
    content = extract_answer(text)
    if content is None or gold_v is None:
        return WRONG
    if PLAIN_NUMBER_RE.fullmatch(content) and parse_number(content) == gold_v:
        return EXACT
    nums = find_numbers(content)
    return RIGHT_NUMBER if nums and nums[-1] == gold_v else WRONG


def format_score(text: str) -> float:
    text = text or ""
    return round(sum(TAG_POINTS for t in TAGS if t in text), 10)


def well_formed(text: str) -> bool:
    """All four tags present, in order: reasoning open < close < answer open < close."""
    text = text or ""
    pos = 0
    for t in TAGS:
        i = text.find(t, pos)
        if i < 0:
            return False
        pos = i + len(t)
    return True


def last_number_correct(text: str, gold) -> bool:
    """Lenient: the last number anywhere in the completion equals the gold."""
    gold_s = gold_answer(gold)
    nums = find_numbers(text or "")
    return bool(nums) and gold_s is not None and nums[-1] == parse_number(gold_s)


def _golds(answer, n: int) -> list:
    if answer is None:
        raise ValueError("math rewards need an 'answer' column (the gold number) in the dataset")
    if isinstance(answer, (str, int, float)):
        return [answer] * n
    answer = list(answer)
    if len(answer) != n:
        raise ValueError(f"math rewards: {n} completions but {len(answer)} answers")
    return answer


@register_reward("math_correctness")
def math_correctness(prompts, completions, answer=None, **kwargs) -> list[float]:
    golds = _golds(answer, len(completions))
    return [correctness_score(completion_text(c), g) for c, g in zip(completions, golds)]


@register_reward("math_format")
def math_format(prompts, completions, **kwargs) -> list[float]:
    return [format_score(completion_text(c)) for c in completions]


@register_reward("math_combined")
def math_combined(prompts, completions, answer=None, **kwargs) -> list[float]:
    corr = math_correctness(prompts, completions, answer=answer)
    fmt = math_format(prompts, completions)
    return [round(a + b, 10) for a, b in zip(corr, fmt)]
