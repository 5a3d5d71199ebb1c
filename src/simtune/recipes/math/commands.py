"""CLI of the math recipe: ``simtune data math prepare``, ``simtune eval math``,
``simtune train math``."""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

from simtune.recipes.math.data import SAMPLE_PATH


def cli_prepare(argv: list[str]) -> int:
    from simtune.recipes.math.data import prepare
    ap = argparse.ArgumentParser(prog="simtune data math prepare",
                                 description="GSM8K JSON lines -> GRPO-ready JSON lines (prompt, answer, question)")
    ap.add_argument("--input", default=str(SAMPLE_PATH), help="GSM8K .jsonl (question, answer ending in '#### N'); "
                    "default: the shipped 64-problem slice")
    ap.add_argument("--out", required=True, help="output .jsonl")
    ap.add_argument("--limit", type=int, help="keep at most N problems")
    ap.add_argument("--offset", type=int, default=0, help="skip the first N usable problems (held-out slices)")
    ap.add_argument("--strict", action="store_true", help="stop at the first bad line instead of rejecting it")
    ap.add_argument("--rejects", help="rejects file (default: <out stem>.rejects.jsonl)")
    a = ap.parse_args(argv)
    res = prepare(a.input, a.out, limit=a.limit, offset=a.offset, strict=a.strict, rejects_path=a.rejects)
    print(f"wrote {res['written']} problems to {res['out']}")
    if res["rejected"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(res["rejects_by_reason"].items()))
        print(f"rejected {res['rejected']} line(s) ({reasons}); see {res['rejects_file']}")
    return 0


def _label(model: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_")
    return s[-60:] or "model"


def cli_eval(argv: list[str]) -> int:
    from simtune.io import atomic_write_json
    from simtune.recipes.math.evaluate import evaluate_model, format_table
    ap = argparse.ArgumentParser(prog="simtune eval math", description=(
        "Accuracy on GSM8K-style JSON lines: strict (number in <answer>), lenient (last number), format rate. "
        "Give --model twice (base, then trained) or --compare an earlier eval_math.json to see the gains."))
    ap.add_argument("--model", action="append", required=True,
                    help="model: 'default', a folder, an experiment folder (its final_model) or a LoRA adapter "
                         "folder; repeat to compare")
    ap.add_argument("--data", default=str(SAMPLE_PATH), help="raw GSM8K or prepared .jsonl (default: shipped slice)")
    ap.add_argument("--limit", type=int, help="evaluate at most N problems")
    ap.add_argument("--offset", type=int, default=0, help="skip the first N problems")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="output folder (default outputs/math/eval/<model>_<time>)")
    ap.add_argument("--compare", action="append", default=[],
                    help="an earlier eval_math.json to show first (e.g. the base model's)")
    a = ap.parse_args(argv)
    earlier = []
    for path in a.compare:
        p = Path(path)
        p = p / "eval_math.json" if p.is_dir() else p
        if not p.is_file():
            from simtune.io import DataError
            raise DataError(p, None, None, "no such eval result (an eval_math.json or its folder)")
        earlier.append(json.loads(p.read_text(encoding="utf-8")))
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    results = []
    for i, model in enumerate(a.model):
        if a.out:
            out = Path(a.out) if len(a.model) == 1 else Path(a.out) / f"{i}_{_label(model)}"
        else:
            out = Path("outputs") / "math" / "eval" / f"{_label(model)}_{stamp}"
        r = evaluate_model(model, a.data, limit=a.limit, offset=a.offset, batch_size=a.batch_size,
                           max_new_tokens=a.max_new_tokens, device=a.device, out_dir=out)
        print(f"{model}: {r['n']} problems in {r['seconds']:.0f}s -> {out}/eval_math.json", file=sys.stderr)
        results.append(r)
    table = format_table(earlier + results)
    print(table)
    if len(earlier + results) > 1:
        out_cmp = Path(a.out) if a.out else Path(results[-1]["out_dir"])
        atomic_write_json(out_cmp / "eval_math_compare.json",
                          {"results": earlier + results, "table": table.splitlines()})
    return 0


def prepare_train_file(cfg, data_dir: Path | None = None) -> str:
    """When ``cfg.train_file`` is raw GSM8K (no ``prompt``), prepare it next to the outputs and
    return the prepared path; a prepared file is returned unchanged."""
    from simtune.recipes.math.data import prepare
    src = Path(cfg.train_file)
    if not src.is_file():
        from simtune.io import DataError
        raise DataError(src, None, None, "train_file not found")
    if src.suffix.lower() != ".jsonl":  # parquet/csv/json: the stage reads them as they are
        return str(src)
    with open(src, encoding="utf-8") as fh:
        first = next((ln for ln in fh if ln.strip()), "")
    try:
        if "prompt" in json.loads(first):
            return str(src)
    except (json.JSONDecodeError, TypeError):
        pass
    data_dir = data_dir or Path(cfg.output_root) / cfg.recipe / "data"
    out = data_dir / f"{src.stem}_prepared.jsonl"
    strict = cfg.on_bad_record == "error"
    res = prepare(src, out, limit=cfg.max_samples, strict=strict)
    print(f"prepared {res['written']} problems from {src} -> {out}"
          + (f" ({res['rejected']} rejected, see {res['rejects_file']})" if res["rejected"] else ""), file=sys.stderr)
    return str(out)


def cli_train(argv: list[str]) -> int:
    """``simtune train math --config configs/math/grpo_default.yaml [--key value ...]``: GRPO with
    the math rewards; raw GSM8K train files are prepared first."""
    from simtune.config import ConfigError
    from simtune.stage_configs import GRPOConfig
    ap = argparse.ArgumentParser(prog="simtune train math", add_help=True,
                                 description=cli_train.__doc__ + " Any GRPO key can follow as --key value.")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[4] / "configs" / "math" /
                                             "grpo_default.yaml"))
    a, rest = ap.parse_known_args(argv)
    cfg = GRPOConfig.load(a.config, rest)
    if not cfg.reward_funcs:
        raise ConfigError(f"{cfg.source_of('reward_funcs')}: 'reward_funcs' is empty; use "
                          "[math_correctness, math_format] (TRL sums them into the combined reward)")
    cfg.train_file = prepare_train_file(cfg)
    from simtune.stages import run_stage
    result = run_stage("grpo", cfg)
    print(f"done: {result.global_step} steps; final model in {result.final_model_dir}")
    print(f"next: simtune report {result.experiment.root}")
    print(f"      simtune eval math --model {cfg.model_name_or_path} --model {result.final_model_dir} --offset 32")
    return 0


def cli_prepare_sft(argv: list[str]) -> int:
    from simtune.recipes.math.data import prepare_sft
    ap = argparse.ArgumentParser(prog="simtune data math sft", description=(
        "GSM8K -> SFT 'messages' records whose answers are the worked solutions in the <reasoning>/<answer> "
        "format: a warm start for small models that never write the tags on their own"))
    ap.add_argument("--input", default=str(SAMPLE_PATH))
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args(argv)
    res = prepare_sft(a.input, a.out, limit=a.limit, offset=a.offset, strict=a.strict)
    print(f"wrote {res['written']} SFT records to {res['out']}"
          + (f"; rejected {res['rejected']} (see {res['rejects_file']})" if res["rejected"] else ""))
    return 0
