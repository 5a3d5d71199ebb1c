"""`simtune report EXPERIMENT_DIR`: plots and a summary of any experiment folder.

The command also writes ``report.html`` into the folder (``--html`` names another path): one
self-contained page with the summary, the curves, the evaluation tables and examples
(:mod:`simtune.report_html`). A folder with an evaluation but no metrics.jsonl (a reviews
ablation, a math evaluation) gets the page alone.

Reads ``metrics.jsonl`` (one JSON object per line with ``step``) and writes a report folder
(``<experiment>/report/`` unless ``--out`` names another) holding ``loss.png``,
``reward.png`` (combined and each reward part), ``output_length.png``,
``loss_vs_reward.png``, ``training_progress.png`` and ``summary.json`` (first / last /
min / max / best of every numeric metric, steps, wall time). A NaN or infinite value (a run
that diverged) is never dropped unseen: ``last`` is the value as logged ("nan", "inf"), the
metric and the summary's ``non_finite`` count it and name its first step, the loss plot
marks those steps, and the command prints a warning. A plot whose metrics are
absent (an SFT run has no reward) is skipped and the reason is recorded in
``summary.json`` under ``plots_skipped``, never silently. The report folder is replaced as
a whole, atomically, and only when it is new, empty or an earlier report
(:func:`simtune.io.replace_refusal`).

Lines for the same step (a resumed run that re-logged a step, the trainer's end-of-run
summary) are merged, the later line winning; torn lines from a kill are counted and skipped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from simtune.io import DataError, atomic_path, atomic_write_json, check_apart, refuse_replace

# direction of "best": higher for these name parts, lower for those
_HIGHER = ("reward", "accuracy", "acc", "correct", "format", "score", "f1")
_LOWER = ("loss", "perplexity", "ppl")
# keys that are bookkeeping, not metrics
_SKIP = {"step", "time", "epoch"}
_END_OF_RUN = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Records merged by step (sorted), and read statistics (lines, torn, duplicate steps)."""
    path = Path(path)
    by_step: dict[int, dict] = {}
    stats = {"lines": 0, "bad_lines": 0, "lines_without_step": 0, "duplicate_steps": 0}
    seen_train_steps: set[int] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            stats["lines"] += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                stats["bad_lines"] += 1
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), (int, float)):
                stats["lines_without_step"] += 1
                continue
            step = int(rec["step"])
            if "loss" in rec:  # a training log line; a repeated one means a step was re-run
                if step in seen_train_steps:
                    stats["duplicate_steps"] += 1
                seen_train_steps.add(step)
            by_step.setdefault(step, {}).update(rec)
    return [by_step[s] for s in sorted(by_step)], stats


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _non_finite(v) -> bool:
    """NaN or an infinity (``NaN`` / ``Infinity`` in metrics.jsonl): a run that diverged."""
    return isinstance(v, float) and not math.isfinite(v)


def _json_number(v):
    """A metric value for summary.json: non-finite ones as the strings "nan", "inf", "-inf"
    (strict JSON has no such numbers)."""
    return str(v) if _non_finite(v) else v


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``key``'s finite values (the plots' and the HTML page's curves)."""
    xs, ys = [], []
    for r in records:
        v = _num(r.get(key))
        if v is not None:
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def _direction(key: str) -> str | None:
    k = key.lower()
    if k.endswith("/std") or k.endswith("_std") or "length" in k:
        return None
    if any(p in k for p in _LOWER):
        return "min"
    if any(p in k for p in _HIGHER):
        return "max"
    return None


def non_finite_steps(records: list[dict], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` for every NaN or infinite value of ``key``."""
    return [(r["step"], r[key]) for r in records if _non_finite(r.get(key))]


def _metric(records: list[dict], key: str) -> dict:
    """first / last / min / max / mean / best of a metric. first and last are the values as
    logged, NaN and infinity too (as "nan", "inf"); min, max, mean and best are over the finite
    ones; ``non_finite`` counts the others and names the first step with one."""
    logged = [(r["step"], r[key]) for r in records if _num(r.get(key)) is not None or _non_finite(r.get(key))]
    xs, ys = series(records, key)
    entry = {"n": len(logged), "first": _json_number(logged[0][1]), "first_step": logged[0][0],
             "last": _json_number(logged[-1][1]), "last_step": logged[-1][0]}
    if ys:
        entry.update(min=min(ys), max=max(ys), mean=sum(ys) / len(ys))
        d = _direction(key)
        if d:
            i = ys.index(max(ys) if d == "max" else min(ys))
            entry.update(best=ys[i], best_step=xs[i], best_is=d)
    bad = non_finite_steps(records, key)
    if bad:
        entry["non_finite"] = {"n": len(bad), "first_step": bad[0][0],
                               "values": sorted({str(v) for _, v in bad})}
    return entry


def summarize(records: list[dict], stats: dict) -> dict:
    keys = sorted({k for r in records for k, v in r.items()
                   if k not in _SKIP and k not in _END_OF_RUN and (_num(v) is not None or _non_finite(v))})
    metrics = {k: _metric(records, k) for k in keys}
    flagged = {k: m["non_finite"] for k, m in metrics.items() if "non_finite" in m}
    times = [r["time"] for r in records if _num(r.get("time")) is not None]
    steps = [r["step"] for r in records]
    end = {k: v for r in records for k, v in r.items() if k in _END_OF_RUN}
    train_steps = sorted(r["step"] for r in records if "loss" in r)
    gaps = []
    if train_steps:
        diffs = {b - a for a, b in zip(train_steps, train_steps[1:])}
        stride = min(diffs) if diffs else 1
        gaps = [[a, b] for a, b in zip(train_steps, train_steps[1:]) if b - a > stride]
    return {"steps": {"first": steps[0] if steps else None, "last": steps[-1] if steps else None,
                      "records": len(records), "gaps": gaps},
            "wall_time_s": (max(times) - min(times)) if len(times) > 1 else None,
            "read": stats, "end_of_run": {k: _json_number(v) for k, v in end.items()},
            "non_finite": flagged, "metrics": metrics}


# --------------------------------------------------------------------------- plots

def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _smooth(ys: list[float], k: int = 5) -> list[float]:
    out = []
    for i in range(len(ys)):
        w = ys[max(0, i - k + 1): i + 1]
        out.append(sum(w) / len(w))
    return out


def _line(ax, xs, ys, label, std=None, smooth=True, **kw):
    (ln,) = ax.plot(xs, ys, label=label, alpha=0.45 if smooth and len(ys) > 10 else 1.0, **kw)
    if smooth and len(ys) > 10:
        ax.plot(xs, _smooth(ys), color=ln.get_color(), lw=2, label=f"{label} (avg of 5)")
    if std is not None:
        lo = [y - s for y, s in zip(ys, std)]
        hi = [y + s for y, s in zip(ys, std)]
        ax.fill_between(xs, lo, hi, color=ln.get_color(), alpha=0.12)


def reward_keys(records: list[dict]) -> list[str]:
    """``rewards/<name>/mean`` keys, in first-seen order."""
    out: list[str] = []
    for r in records:
        for k in r:
            if k.startswith("rewards/") and k.endswith("/mean") and k not in out:
                out.append(k)
    return out


def _mark_non_finite(ax, records, key) -> bool:
    """A red dashed line at each step where ``key`` is NaN or infinite (none is left out unseen)."""
    bad = non_finite_steps(records, key)
    for k, (step, _) in enumerate(bad):
        ax.axvline(step, color="red", ls="--", lw=1, alpha=0.7,
                   label=f"{key} not finite ({len(bad)} steps, from {bad[0][0]})" if k == 0 else None)
    return bool(bad)


def _plot_loss(records, ax):
    ok = False
    for key in ("loss", "eval_loss"):
        xs, ys = series(records, key)
        if ys:
            _line(ax, xs, ys, key)
            ok = True
        ok = _mark_non_finite(ax, records, key) or ok
    ax.set_title("loss")
    return ok


def _plot_reward(records, ax):
    ok = False
    xs, ys = series(records, "reward")
    if ys:
        sx, sy = series(records, "reward_std")
        std = sy if sx == xs else None
        _line(ax, xs, ys, "reward (combined)", std=std, smooth=False, lw=2)
        ok = True
    for k in reward_keys(records):
        xs, ys = series(records, k)
        sx, sy = series(records, k[: -len("/mean")] + "/std")
        if ys:
            _line(ax, xs, ys, k[len("rewards/"): -len("/mean")], std=sy if sx == xs else None, smooth=False)
            ok = True
    ax.set_title("reward (combined and parts, ±1 std)")
    return ok


def _plot_length(records, ax):
    xs, ys = series(records, "completions/mean_length")
    if not ys:
        return False
    ax.plot(xs, ys, label="mean", lw=2)
    lx, lo = series(records, "completions/min_length")
    hx, hi = series(records, "completions/max_length")
    if lx == xs and hx == xs:
        ax.fill_between(xs, lo, hi, alpha=0.2, label="min-max")
    ax.set_title("completion length (tokens)")
    return True


def _has(records, key):
    return bool(series(records, key)[1])


def _progress_panels(records):
    panels = [("loss", ["loss", "eval_loss"]), ("reward", ["reward"] + reward_keys(records)),
              ("completion length", ["completions/mean_length"]), ("KL", ["kl"]),
              ("clip ratio", ["clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean"]),
              ("entropy", ["entropy"]), ("grad norm", ["grad_norm"]), ("learning rate", ["learning_rate"]),
              ("token accuracy", ["mean_token_accuracy"])]
    return [(t, [k for k in ks if _has(records, k)]) for t, ks in panels if any(_has(records, k) for k in ks)]


def write_report(exp_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """Write the plots and ``summary.json`` into ``out_dir`` (default ``<exp_dir>/report``),
    replacing an earlier report there; return the summary."""
    exp_dir = Path(exp_dir)
    metrics_path = exp_dir / "metrics.jsonl"
    if not exp_dir.is_dir():
        raise DataError(exp_dir, None, None, "no such experiment folder")
    if not metrics_path.is_file():
        raise DataError(metrics_path, None, None, "no metrics.jsonl in the experiment folder")
    final = Path(out_dir) if out_dir else exp_dir / "report"
    check_apart({"--out": final}, {"metrics": metrics_path})
    refuse_replace(final, "report")
    records, stats = read_metrics(metrics_path)
    if not records:
        raise DataError(metrics_path, None, "step", "no metric line with a step")
    with atomic_path(final, is_dir=True, command="report") as out:
        summary = _write_report(exp_dir, out, records, stats)
    return {**summary, "report_dir": str(final)}


def _write_report(exp_dir: Path, out: Path, records: list[dict], stats: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(records, stats)
    written, skipped = [], {}

    def single(name, fn, missing):
        fig, ax = plt.subplots(figsize=(7, 4))
        if fn(records, ax):
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            _save(fig, out / name)
            written.append(name)
        else:
            plt.close(fig)
            skipped[name] = f"no {missing} in metrics.jsonl"

    single("loss.png", _plot_loss, "'loss'")
    single("reward.png", _plot_reward, "'reward' or 'rewards/<name>/mean'")
    single("output_length.png", _plot_length, "'completions/mean_length'")

    pairs = [(r["loss"], r["reward"], r["step"]) for r in records
             if _num(r.get("loss")) is not None and _num(r.get("reward")) is not None]
    if pairs:
        fig, ax = plt.subplots(figsize=(6, 5))
        sc = ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], c=[p[2] for p in pairs], cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax, label="step")
        ax.set_xlabel("loss")
        ax.set_ylabel("reward")
        ax.set_title("loss vs reward")
        ax.grid(alpha=0.3)
        _save(fig, out / "loss_vs_reward.png")
        written.append("loss_vs_reward.png")
    else:
        skipped["loss_vs_reward.png"] = "no step has both 'loss' and 'reward'"

    panels = _progress_panels(records)
    if panels:
        cols = 3 if len(panels) > 4 else 2 if len(panels) > 1 else 1
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
        for ax, (title, keys) in zip(axes.flat, panels):
            for k in keys:
                xs, ys = series(records, k)
                ax.plot(xs, ys, label=k.replace("rewards/", "").replace("/mean", ""))
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if len(keys) > 1:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"training progress: {exp_dir.name}")
        fig.tight_layout()
        _save(fig, out / "training_progress.png")
        written.append("training_progress.png")
    else:
        skipped["training_progress.png"] = "no known metric to plot"

    summary.update(experiment=str(exp_dir), plots=written, plots_skipped=skipped)
    atomic_write_json(out / "summary.json", summary)
    return summary


def cli_report(argv: list[str]) -> int:
    from simtune.report_html import write_html
    from simtune.report_sources import has_evaluation
    ap = argparse.ArgumentParser(prog="simtune report", description=__doc__.split("\n\n")[0] + " And report.html: "
                                 "one page holding the folder's summary, curves, evaluation and examples.")
    ap.add_argument("experiment_dir", help="an experiment folder holding metrics.jsonl (or an evaluation alone)")
    ap.add_argument("--out", help="the report folder, replaced as a whole (default: <experiment_dir>/report)")
    ap.add_argument("--html", help="the page (default: <experiment_dir>/report.html)")
    a = ap.parse_args(argv)
    exp = Path(a.experiment_dir)
    html = Path(a.html) if a.html else exp / "report.html"
    out = Path(a.out) if a.out else exp / "report"
    check_apart({"--out": out}, {"metrics": exp / "metrics.jsonl"})  # the input first: its error names it
    check_apart({"--html": html}, {"--out": out})
    if exp.is_dir() and not (exp / "metrics.jsonl").is_file() and has_evaluation(exp):
        print(f"no metrics.jsonl in {exp}: no plots or summary.json, the page alone")
    else:
        _print_report(write_report(exp, a.out))
    page = write_html(exp, html)
    print(f"wrote {page.path} ({page.bytes / 1e3:.0f} kB): {', '.join(page.sections)}")
    for note in page.notes:
        print(f"  page note: {note}")
    return 0


def _print_report(s: dict) -> None:
    out = s["report_dir"]
    print(f"{s['steps']['records']} steps ({s['steps']['first']}..{s['steps']['last']}), "
          f"wall time {s['wall_time_s'] or 0:.0f}s")
    for k, bad in s["non_finite"].items():
        print(f"  WARNING: {k} is not finite ({', '.join(bad['values'])}) at {bad['n']} step(s), from step "
              f"{bad['first_step']} (did the run diverge?)")
    for k in ("loss", "reward", *[k for k in s["metrics"] if k.startswith("rewards/") and k.endswith("/mean")]):
        m = s["metrics"].get(k)
        if m:
            print(f"  {k:<36} first {_fmt(m['first'])}  last {_fmt(m['last'])}  "
                  f"best {_fmt(m.get('best', m.get('max', '-')))}"
                  + (f"  ({m['non_finite']['n']} not finite)" if "non_finite" in m else ""))
    print(f"wrote {', '.join(s['plots'])} and summary.json to {out}")
    for name, why in s["plots_skipped"].items():
        print(f"  skipped {name}: {why}")
    if s["read"]["bad_lines"]:
        print(f"  note: {s['read']['bad_lines']} unreadable line(s) in metrics.jsonl were skipped")
