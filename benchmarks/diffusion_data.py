"""`data social build --diffusion` on a large who-joins file vs a bare read of the same file.

    PYTHONPATH=src python -m benchmarks.diffusion_data --lines 1000000

Writes a seeded file of ``--lines`` cascades (`uid time,uid time,...`, 2-12 users each,
users drawn from ``--users`` with a skew, so that they recur), then in separate processes
(each peak RSS its own): (1) reads every line and splits it into its pairs, keeping nothing
(the floor of any reader); (2) runs ``build_trees`` on it. Prints both side by side (wall
seconds, lines/s, peak RSS) and the build's RSS per million activity records, which is
what grows: the per-act index (user, time, kind, cascade) is kept until the end, the
trees are streamed to disk.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from benchmarks import Row, parse_args, peak_rss_mb, report, run_phase


def write_corpus(path: Path, lines: int, users: int, seed: int) -> int:
    rng = random.Random(seed)
    acts = 0
    t = 1_284_967_588
    with open(path, "w") as fh:
        for _ in range(lines):
            n = rng.randint(2, 12)
            us = {int(users * rng.random() ** 2) for _ in range(n)}
            t += rng.randint(1, 30)
            fh.write(",".join(f"{u} {t + 7 * k}" for k, u in enumerate(us)) + ",\n")
            acts += len(us)
    return acts


def phase_read(path: str) -> dict:
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            for part in line.rstrip().rstrip(b",").split(b","):
                part.split()
            n += 1
    return {"seconds": time.perf_counter() - t, "lines": n, "peak_rss_mb": peak_rss_mb()}


def phase_build(path: str, out: str) -> dict:
    from simtune.recipes.social.data.build import build_trees
    t = time.perf_counter()
    s = build_trees(inputs=[], profiles=None, id_map=None, ced_dir=None, ced_limit=None, out_dir=out,
                    window_seconds=36500 * 86400, strict=False, progress=False, diffusion=[path])
    return {"seconds": time.perf_counter() - t, "lines": s["counts"]["posts_out"],
            "acts": s["activity_records"], "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="outputs/bench_diffusion")
    ap.add_argument("--phase", choices=["read", "build"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    a = parse_args(ap, argv, "bench_results/diffusion_data.json")
    if a.phase:
        res = phase_read(a.file) if a.phase == "read" else phase_build(a.file, str(Path(a.work) / "build"))
        print(json.dumps(res))
        return 0
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    f = work / f"cascades_{a.lines}_{a.seed}.txt"
    if not f.is_file():
        write_corpus(f, a.lines, a.users, a.seed)
    res = {}
    for phase in ("read", "build"):
        res[phase] = run_phase("benchmarks.diffusion_data", [phase, "--file", str(f), "--work", a.work])
    r, b = res["read"], res["build"]
    print(f"{f.name}: {f.stat().st_size / 1e6:.0f} MB, {b['lines']} cascades, {b['acts']} activity records")
    print(f"{'':28}{'seconds':>9}{'lines/s':>11}{'peak RSS MB':>13}")
    for name, x in (("bare read + split", r), ("build --diffusion", b)):
        print(f"{name:28}{x['seconds']:9.1f}{x['lines'] / x['seconds']:11.0f}{x['peak_rss_mb']:13.0f}")
    print(f"build / bare read: {b['seconds'] / r['seconds']:.1f}x the time; "
          f"{b['peak_rss_mb'] / (b['acts'] / 1e6):.0f} MB of peak RSS per million activity records")
    return report({"lines": a.lines, "file_mb": f.stat().st_size / 1e6, **res}, rows(res), a.out)


def rows(res: dict) -> list[Row]:
    """The rows of the combined table (benchmarks.Row)."""
    r, b = res["read"], res["build"]
    return [Row("diffusion_build", f"build --diffusion s vs a bare read + split [{b['lines']:,} cascades]",
                f"{b['seconds']:.1f}", f"{r['seconds']:.1f}", f"{b['seconds'] / r['seconds']:.1f}x", ""),
            Row("diffusion_rss", "build --diffusion peak RSS MB (vs bare read)", f"{b['peak_rss_mb']:.0f}",
                f"{r['peak_rss_mb']:.0f}", "", "")]


if __name__ == "__main__":
    raise SystemExit(main())
