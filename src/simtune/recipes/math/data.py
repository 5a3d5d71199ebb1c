"""GSM8K JSON lines -> GRPO-ready records.

A GSM8K line is ``{"question": ..., "answer": "<worked solution>\\n#### 72"}``. A prepared
record is ``{"prompt": [system, user], "answer": "72", "question": ...}``: the system message
states the required ``<reasoning>...</reasoning><answer>...</answer>`` format, ``answer`` is
the gold number as a normalized string (what the rewards compare against).

Numbers are parsed with regular expressions and :class:`fractions.Fraction`; nothing read
from a file or produced by a model is ever evaluated as code.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator

from simtune.config import ConfigError
from simtune.io import DataError, RejectLog, atomic_path, check_apart, iter_jsonl

SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "gsm8k_sample.jsonl"

SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, then give the final answer.\n"
    "Respond in exactly this format:\n"
    "<reasoning>\n...your step-by-step reasoning...\n</reasoning>\n"
    "<answer>\n...the final number only...\n</answer>"
)

# A number as people write it: optional sign, thousands separators, decimals, a fraction.
# "$1,234.50" -> "1,234.50" (the $ is outside the match), "-3", ".5", "3/4".
_NUM = r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|[-−]?\.\d+"
NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_NUM})(?![\d])")
# the whole string is one plain number literal: what the "exact" form means
PLAIN_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def parse_number(text: str) -> Fraction | None:
    """``"1,234"`` -> 1234, ``"-2.50"`` -> -5/2, ``"3/4"`` -> 3/4; None when not one number."""
    s = text.strip().replace("−", "-").replace(",", "").replace(" ", "")
    if not s:
        return None
    try:
        if "/" in s:
            num, _, den = s.partition("/")
            d = Fraction(Decimal(den))
            return None if d == 0 else Fraction(Decimal(num)) / d
        return Fraction(Decimal(s))
    except (InvalidOperation, ValueError):
        return None


def format_number(value: Fraction) -> str:
    """A canonical string: ``72``, ``-3``, ``0.5``, ``1/3`` (no commas, no trailing ``.0``)."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a terminating decimal
        s = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
        return s.rstrip("0").rstrip(".") if "." in s else s
    return f"{value.numerator}/{value.denominator}"


def normalize_number(text: str) -> str | None:
    """The canonical form of a number written with ``$``, commas, units or trailing words:
    the last number in ``text``; None when there is none."""
    nums = find_numbers(text)
    return format_number(nums[-1]) if nums else None


def find_numbers(text: str) -> list[Fraction]:
    """Every number in ``text``, in order (``$`` signs, commas and units ignored)."""
    out = []
    for m in NUMBER_RE.finditer(text or ""):
        v = parse_number(m.group(0))
        if v is not None:
            out.append(v)
    return out


def gold_from_solution(solution: str) -> str | None:
    """The gold number of a GSM8K solution (after the last ``####``), normalized; None if absent."""
    if "####" not in solution:
        return None
    tail = solution.rsplit("####", 1)[1].strip()
    v = parse_number(tail.replace("$", ""))
    return format_number(v) if v is not None else None


def gold_answer(answer) -> str | None:
    """Gold from an ``answer`` field: a GSM8K solution (``... #### N``) or a bare number."""
    if answer is None:
        return None
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return format_number(Fraction(Decimal(str(answer))))
    s = str(answer)
    if "####" in s:
        return gold_from_solution(s)
    v = parse_number(s.replace("$", ""))
    return format_number(v) if v is not None else None


def build_prompt(question: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question.strip()}]


def iter_examples(path: str | os.PathLike, rejects: RejectLog | None = None, system_prompt: str = SYSTEM_PROMPT
                  ) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, record)`` prepared records from either a raw GSM8K file
    (``question``/``answer`` with ``####``) or an already prepared one (``prompt``/``answer``).

    A bad line goes to ``rejects`` (which raises :class:`DataError` when strict); without a
    RejectLog every bad line raises.
    """
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    try:
        lines = list(iter_jsonl(path))
    except UnicodeDecodeError as e:
        raise DataError(path, None, None, f"not UTF-8 text: {e}") from None
    for no, line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.reject(path, no, f"bad JSON: {e.msg}", record=line.strip()[:200])
            continue
        if not isinstance(rec, dict):
            rejects.reject(path, no, "not a JSON object", record=line.strip()[:200])
            continue
        if "answer" not in rec:
            rejects.reject(path, no, "missing field: answer", field="answer", record=rec)
            continue
        ans = rec["answer"]
        if "prompt" in rec:  # already prepared
            prompt = rec["prompt"]
            if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
                rejects.reject(path, no, "empty or bad prompt: a string or a message list", field="prompt", record=rec)
                continue
            gold = gold_answer(ans)
            if gold is None:
                rejects.reject(path, no, f"answer is not a number: {str(ans)[:80]!r}", field="answer", record=rec)
                continue
            question = rec.get("question") or (prompt if isinstance(prompt, str) else prompt[-1].get("content", ""))
            yield no, {"prompt": prompt, "answer": gold, "question": question}
            continue
        q = rec.get("question")
        if not isinstance(q, str) or not q.strip():
            rejects.reject(path, no, "missing field: question", field="question", record=rec)
            continue
        if not isinstance(ans, str) or "####" not in ans:
            rejects.reject(path, no, "no '#### <number>' in answer", field="answer", record=rec)
            continue
        gold = gold_from_solution(ans)
        if gold is None:
            rejects.reject(path, no, f"'####' is not followed by a number: {ans.rsplit('####', 1)[1].strip()[:40]!r}",
                           field="answer", record=rec)
            continue
        yield no, {"prompt": build_prompt(q, system_prompt), "answer": gold, "question": q.strip()}


def load_examples(path: str | os.PathLike, limit: int | None = None, offset: int = 0,
                  rejects: RejectLog | None = None, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    out = []
    for i, (_, rec) in enumerate(iter_examples(path, rejects, system_prompt)):
        if i < offset:
            continue
        if limit is not None and len(out) >= limit:
            break
        out.append(rec)
    return out


def prepare(input_path: str | os.PathLike, out_path: str | os.PathLike, limit: int | None = None, offset: int = 0,
            strict: bool = False, rejects_path: str | os.PathLike | None = None,
            system_prompt: str = SYSTEM_PROMPT) -> dict:
    """Write GRPO-ready JSON lines to ``out_path``; return counts.

    Bad lines go to ``rejects_path`` (default ``<out>.rejects.jsonl``) with line numbers;
    ``strict`` stops at the first with a :class:`DataError`. Both files are written
    atomically, the rejects file on every run (empty when nothing is rejected), so it never
    tells of an earlier run; neither may be, or lie inside, the input (checked first).
    """
    out_path = Path(out_path)
    rejects_path = Path(rejects_path) if rejects_path else out_path.parent / f"{out_path.stem}.rejects.jsonl"
    with _outputs(input_path, out_path, rejects_path, strict) as w:
        n = 0
        for rec in load_examples(input_path, limit=limit, offset=offset, rejects=w.rejects,
                                 system_prompt=system_prompt):
            w.out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return {"written": n, "rejected": w.rejects.total, "rejects_by_reason": dict(w.rejects.counts),
            "out": str(out_path), "rejects_file": str(rejects_path)}


@dataclass
class _Writing:
    out: IO[str]  # the output file, open for writing
    rejects: RejectLog


@contextlib.contextmanager
def _outputs(input_path, out_path: Path, rejects_path: Path, strict: bool) -> Iterator[_Writing]:
    """The output file (open for writing) and the RejectLog of a prepare step, both written
    atomically when the block succeeds; refused first when an output is, holds or lies inside
    the input or the other output, or is a folder."""
    check_apart({"out": out_path, "rejects": rejects_path}, {"input": input_path})
    for label, p in (("out", out_path), ("rejects", rejects_path)):
        if p.is_dir():
            raise ConfigError(f"'{label}' {p} is a folder; give a file name")
    with atomic_path(out_path) as tmp, atomic_path(rejects_path) as rtmp:
        with open(tmp, "w", encoding="utf-8") as fh, RejectLog(rtmp, strict=strict) as rej:
            yield _Writing(fh, rej)
        if not rtmp.exists():
            rtmp.write_bytes(b"")


_CALC_RE = re.compile(r"<<[^<>]*>>")


def formatted_solution(solution: str) -> str | None:
    """A GSM8K solution in the target format: the worked steps (calculator notes removed) in
    ``<reasoning>``, the gold number in ``<answer>``; None without ``#### N``."""
    gold = gold_from_solution(solution)
    if gold is None:
        return None
    steps = _CALC_RE.sub("", solution.rsplit("####", 1)[0]).strip()
    return f"<reasoning>\n{steps}\n</reasoning>\n<answer>\n{gold}\n</answer>"


def prepare_sft(input_path: str | os.PathLike, out_path: str | os.PathLike, limit: int | None = None, offset: int = 0,
                strict: bool = False, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """Warm-start data for GRPO: ``messages`` records (system, question, the formatted
    solution) from raw GSM8K, so a small model learns the tags before RL rewards them."""
    out_path = Path(out_path)
    rejects_path = out_path.parent / f"{out_path.stem}.rejects.jsonl"
    with _outputs(input_path, out_path, rejects_path, strict) as w:
        n = 0
        for i, (no, rec) in enumerate(_raw_records(Path(input_path), w.rejects)):
            if i < offset:
                continue
            if limit is not None and n >= limit:
                break
            msgs = build_prompt(rec["question"], system_prompt) + [
                {"role": "assistant", "content": formatted_solution(rec["answer"])}]
            w.out.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
            n += 1
    return {"written": n, "rejected": w.rejects.total, "out": str(out_path), "rejects_file": str(rejects_path)}


def _raw_records(path: Path, rejects: RejectLog):
    """Raw GSM8K records (question, answer with ``#### N``); bad lines to ``rejects``."""
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    for no, line in iter_jsonl(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.reject(path, no, f"bad JSON: {e.msg}")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) or not rec["question"].strip():
            rejects.reject(path, no, "missing field: question", field="question")
            continue
        if not isinstance(rec.get("answer"), str) or gold_from_solution(rec["answer"]) is None:
            rejects.reject(path, no, "no '#### <number>' in answer", field="answer")
            continue
        yield no, rec
