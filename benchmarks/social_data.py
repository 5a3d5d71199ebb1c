"""Social data pipeline vs a bare JSON parse of the same file.

    PYTHONPATH=src python -m benchmarks.social_data --posts 200000

Generates the synthetic Weibo-API corpus, then in separate processes (so each peak RSS is
its own): (1) reads the file line by line and parses every line with orjson (the fastest
JSON parser installed) and does nothing else; (2) runs the pipeline: ``build`` (trees,
user index) then ``samples`` (prompts, Parquet). Prints one table side by side and writes
the figures as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def phase_parse(path: str) -> dict:
    import orjson

    t = time.perf_counter()
    c = time.process_time()
    n = 0
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c, "posts": n,
            "peak_rss_mb": _rss_mb()}


def phase_pipeline(path: str, profiles: str, work: str, workers: int = 1) -> dict:
    from simtune.recipes.social.commands import SocialSamplesConfig, run_samples
    from simtune.recipes.social.ingest import build_trees

    t = time.perf_counter()
    c = time.process_time()
    cc = _children_cpu()
    b = build_trees(inputs=[path], profiles=profiles, id_map=None, ced_dir=None, ced_limit=None,
                    out_dir=f"{work}/build", window_seconds=7 * 86400, strict=False, progress=False)
    t_build = time.perf_counter() - t
    c_build = time.process_time() - c
    s = run_samples(SocialSamplesConfig.load(None, [], build_dir=f"{work}/build", out=f"{work}/samples",
                                             progress=False, workers=workers))
    total = time.perf_counter() - t
    return {"seconds": total, "build_seconds": t_build, "samples_seconds": total - t_build,
            "cpu_seconds": time.process_time() - c + _children_cpu() - cc,  # workers included
            "build_cpu_seconds": c_build,
            "posts": b["counts"]["posts_in"], "interactions": b["counts"]["interactions_in"],
            "samples": s["counts"]["samples_out"], "peak_rss_mb": _rss_mb()}


def _run_phase(args: list[str]) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", "benchmarks.social_data", *args], capture_output=True, text=True,
                       env=env, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise SystemExit(f"phase {args[:2]} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def rows(res: dict) -> list[tuple]:
    """(key, measure, simtune, baseline, ratio, target) rows for the combined table."""
    pipe, parse = res["pipeline"], res["parse"]
    return [("social_data", f"social data s, build + samples vs bare orjson parse [{res['posts']:,} posts, "
             f"{res['file_mb']:.0f} MB]", f"{pipe['seconds']:.1f}", f"{parse['seconds']:.2f}", f"{res['ratio']:.1f}x",
             "<= 3x"),
            ("social_data_rss", "social data peak RSS MB", f"{pipe['peak_rss_mb']:.0f}", f"{parse['peak_rss_mb']:.0f}",
             "", "")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=None, help="default: posts / 10, at least 300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="outputs/bench_social", help="corpus and outputs (gitignored)")
    ap.add_argument("--out", default="bench_results/social_data.json")
    ap.add_argument("--workers", type=int, default=1, help="processes for the samples pass")
    ap.add_argument("--phase", choices=["parse", "pipeline"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--profiles", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.phase == "parse":
        print(json.dumps(phase_parse(a.file)))
        return 0
    if a.phase == "pipeline":
        print(json.dumps(phase_pipeline(a.file, a.profiles, a.work, a.workers)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from simtune.recipes.social.synthetic import generate

    users = a.users or max(300, a.posts // 10)
    work = Path(a.work)
    t = time.perf_counter()
    info = generate(work / "raw", seed=a.seed, n_users=users, n_posts=a.posts, span_days=max(60.0, a.posts / 1000))
    gen_s = time.perf_counter() - t
    path = str(work / "raw/posts.jsonl")
    size_mb = os.path.getsize(path) / 1e6
    parse = _run_phase(["--phase", "parse", "--file", path])
    pipe = _run_phase(["--phase", "pipeline", "--file", path, "--profiles", str(work / "raw/profiles.json"),
                       "--work", str(work), "--workers", str(a.workers)])
    ratio = pipe["seconds"] / parse["seconds"]
    cpu_ratio = pipe["cpu_seconds"] / parse["cpu_seconds"]
    build_ratio = pipe["build_seconds"] / parse["seconds"]
    rows = [
        ("", "bare orjson parse", "pipeline (build+samples)"),
        ("seconds", f"{parse['seconds']:.2f}", f"{pipe['seconds']:.2f}  (build {pipe['build_seconds']:.2f}, samples {pipe['samples_seconds']:.2f})"),
        ("CPU seconds", f"{parse['cpu_seconds']:.2f}", f"{pipe['cpu_seconds']:.2f}  (build {pipe['build_cpu_seconds']:.2f})"),
        ("posts/s", f"{parse['posts'] / parse['seconds']:,.0f}", f"{pipe['posts'] / pipe['seconds']:,.0f}"),
        ("interactions/s", f"{info['interactions'] / parse['seconds']:,.0f}", f"{pipe['interactions'] / pipe['seconds']:,.0f}"),
        ("MB/s", f"{size_mb / parse['seconds']:,.1f}", f"{size_mb / pipe['seconds']:,.1f}"),
        ("peak RSS MB", f"{parse['peak_rss_mb']:,.0f}", f"{pipe['peak_rss_mb']:,.0f}"),
    ]
    print(f"corpus: {info['posts']:,} posts, {info['interactions']:,} interactions, {users:,} users, "
          f"{size_mb:,.1f} MB (generated in {gen_s:.1f} s); samples written: {pipe['samples']:,}")
    w = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"  {r[0]:<{w}}  {r[1]:>20}  {r[2]}")
    print(f"  pipeline / bare parse time ratio: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (target <= 3x); "
          f"build alone: {build_ratio:.2f}x wall")
    print(f"  load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    res = {"posts": info["posts"], "interactions": info["interactions"], "users": users, "file_mb": round(size_mb, 2),
           "generate_seconds": round(gen_s, 2), "parse": parse, "pipeline": pipe, "ratio": round(ratio, 3),
           "cpu_ratio": round(cpu_ratio, 3), "workers": a.workers, "build_ratio": round(build_ratio, 3), "loadavg": os.getloadavg()[0],
           "python": sys.version.split()[0]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
