"""Accuracy on GSM8K-style JSON lines, three ways side by side.

- strict: the closed ``<answer>`` tag holds the right number (correctness reward > 0);
  ``exact`` is the stricter share where it holds nothing but the number (reward 2.0);
- lenient: the last number anywhere in the completion is right (format ignored);
- format rate: all four tags present in order.

Run the same command on the base model and on the trained one: a gain in lenient accuracy
is better reasoning, a gain in strict accuracy without one is the model learning to put
its answer in the tag. Baselines that need no model are reported beside: always answering
the most common gold answer of the file, and answering the last number of the question.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from simtune.recipes.math.data import find_numbers, format_number, load_examples
from simtune.recipes.math.rewards import (EXACT, correctness_score, format_score, last_number_correct,
                                          well_formed)

METRIC_ROWS = [("strict", "strict accuracy (number in <answer>)"),
               ("exact", "exact (<answer> holds only the number)"),
               ("lenient", "lenient accuracy (last number)"),
               ("format_rate", "format rate (4 tags in order)"),
               ("mean_format_reward", "mean format reward (0-0.8)")]


def baselines(examples: list[dict]) -> dict:
    """Accuracies that need no model: the majority gold answer, the question's last number."""
    golds = [ex["answer"] for ex in examples]
    if not golds:
        return {"majority_answer": None, "majority_accuracy": 0.0, "last_question_number_accuracy": 0.0}
    value, count = Counter(golds).most_common(1)[0]
    hits = 0
    for ex in examples:
        nums = find_numbers(ex.get("question", ""))
        hits += bool(nums) and format_number(nums[-1]) == ex["answer"]
    return {"majority_answer": value, "majority_accuracy": count / len(golds),
            "last_question_number_accuracy": hits / len(golds)}


def score(examples: list[dict], completions: list[str]) -> tuple[dict, list[dict]]:
    """Metrics and per-sample rows for completions aligned with examples."""
    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    rows = []
    for ex, text in zip(examples, completions):
        corr = correctness_score(text, ex["answer"])
        rows.append({"question": ex.get("question"), "gold": ex["answer"], "completion": text,
                     "correctness": corr, "strict": corr > 0, "exact": corr == EXACT,
                     "lenient": last_number_correct(text, ex["answer"]),
                     "format": format_score(text), "well_formed": well_formed(text)})
    n = len(rows)

    def share(key):
        return sum(bool(r[key]) for r in rows) / n if n else 0.0

    metrics = {"n": n, "strict": share("strict"), "exact": share("exact"), "lenient": share("lenient"),
               "format_rate": share("well_formed"),
               "mean_format_reward": sum(r["format"] for r in rows) / n if n else 0.0,
               "mean_correctness_reward": sum(r["correctness"] for r in rows) / n if n else 0.0}
    return metrics, rows


def resolve_model_dir(model: str) -> str:
    """An experiment folder means its final_model; anything else is passed on unchanged."""
    p = Path(model)
    if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists() \
            and (p / "final_model").is_dir():
        return str(p / "final_model")
    return model


def load_for_eval(model: str, device: str = "auto"):
    """Model and tokenizer from a name, folder, experiment folder or LoRA adapter folder."""
    from simtune.models import load_model, load_tokenizer
    path = resolve_model_dir(model)
    p = Path(path)
    if p.is_dir() and (p / "adapter_config.json").exists() and not (p / "config.json").exists():
        from peft import PeftModel
        base = json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
        tok_src = path if (p / "tokenizer_config.json").exists() else base
        tok = load_tokenizer(tok_src)
        m = load_model(base, device=device)
        m = PeftModel.from_pretrained(m, path).merge_and_unload()
        return m, tok
    return load_model(path, device=device), load_tokenizer(path)


def evaluate_model(model: str, data: str | os.PathLike, *, limit: int | None = None, offset: int = 0,
                   batch_size: int = 8, max_new_tokens: int = 256, device: str = "auto",
                   out_dir: str | os.PathLike | None = None, model_and_tokenizer=None) -> dict:
    """Generate greedily for each problem, score, and (with ``out_dir``) write
    ``eval_math.json`` and ``eval_math_samples.jsonl`` there."""
    from simtune.generation import generate
    from simtune.io import atomic_write_json, atomic_write_text

    examples = load_examples(data, limit=limit, offset=offset)
    if not examples:
        from simtune.io import DataError
        raise DataError(data, None, None, "no usable problems (check --offset/--limit)")
    t0 = time.time()
    model_obj, tok = model_and_tokenizer or load_for_eval(model, device)
    completions = generate(model_obj, tok, [ex["prompt"] for ex in examples], max_new_tokens=max_new_tokens,
                           batch_size=batch_size, do_sample=False)
    metrics, rows = score(examples, completions)
    result = {"model": str(model), "data": str(data), "offset": offset, "limit": limit, **metrics,
              "baselines": baselines(examples),
              "generation": {"greedy": True, "max_new_tokens": max_new_tokens, "batch_size": batch_size},
              "seconds": round(time.time() - t0, 2)}
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / "eval_math.json", result)
        atomic_write_text(out / "eval_math_samples.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        result["out_dir"] = str(out)
    return result


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:5.1f}%"


def format_table(results: list[dict]) -> str:
    """Side-by-side table of one or more eval results; with two or more, the last minus the
    first as a gain column, and a line telling the format gain from the reasoning gain."""
    if not results:
        return ""
    labels = [Path(r["model"]).name or r["model"] for r in results]
    labels = [lb if len(lb) <= 22 else "…" + lb[-21:] for lb in labels]
    name_w = max(len(d) for _, d in METRIC_ROWS) + 2
    head = f"{'metric':<{name_w}}" + "".join(f"{lb:>24}" for lb in labels)
    if len(results) > 1:
        head += f"{'gain':>10}"
    lines = [head, "-" * len(head)]
    for key, desc in METRIC_ROWS:
        vals = [r.get(key) for r in results]
        line = f"{desc:<{name_w}}" + "".join(f"{_pct(v) if key != 'mean_format_reward' else f'{v:.3f}':>24}"
                                             for v in vals)
        if len(results) > 1 and vals[0] is not None and vals[-1] is not None:
            g = vals[-1] - vals[0]
            line += f"{(f'{100 * g:+.1f}pp' if key != 'mean_format_reward' else f'{g:+.3f}'):>10}"
        lines.append(line)
    b = results[-1]["baselines"]
    lines.append("-" * len(head))
    lines.append(f"{'baseline: always ' + repr(b['majority_answer']):<{name_w}}{_pct(b['majority_accuracy']):>24}"
                 "   (no model)")
    lines.append(f"{'baseline: last number of question':<{name_w}}{_pct(b['last_question_number_accuracy']):>24}"
                 "   (no model)")
    ns = {r["n"] for r in results}
    lines.append(f"n = {'/'.join(str(n) for n in sorted(ns))} problems" +
                 ("  (WARNING: different problem counts, not comparable)" if len(ns) > 1 else ""))
    if len(results) > 1:
        a, z = results[0], results[-1]
        lines.append(f"reasoning gain (lenient): {100 * (z['lenient'] - a['lenient']):+.1f}pp; "
                     f"format gain (format rate): {100 * (z['format_rate'] - a['format_rate']):+.1f}pp; "
                     f"strict gain: {100 * (z['strict'] - a['strict']):+.1f}pp")
    return "\n".join(lines)
