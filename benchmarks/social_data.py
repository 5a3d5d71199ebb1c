"""Social data pipeline vs a bare JSON parse of the same file.

    PYTHONPATH=src python -m benchmarks.social_data --posts 200000 [--workers 2]

Generates the synthetic Weibo-API corpus, then in separate processes (so each peak RSS is
its own): (1) reads the file line by line and parses every line with the fastest JSON
parser installed (each candidate is tried on the first lines; usually orjson) and does
nothing else; (2) runs the pipeline: ``build`` (trees, user index) then ``samples``
(prompts, Parquet), each with ``--workers`` processes. Prints one table side by side
(wall and CPU seconds, throughput, the ratio to the bare parse, peak RSS) and writes the
figures as JSON to ``--out``.

Both phases import their libraries before the clock starts: the pipeline's one-time
imports (numpy, pyarrow, and pandas, which pyarrow loads on first use) are timed
separately and printed, not counted in the throughput.

A third process then measures the *I/O floor* of the output formats: what any
implementation of the pipeline, however fast its own work, must spend to read and write
the same files: parse the input, serialize and write the tree lines ``build`` wrote
(checked byte for byte against trees.jsonl), parse them again (``samples`` reads them),
and write the sample rows ``samples`` wrote with the same Parquet writer and row groups
(the rows are read beforehand, off the clock). It does none of the pipeline's own work
(checks, draws, prompts), so the pipeline cannot be faster than it in these formats.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from benchmarks import Row, parse_args, peak_rss_mb, report, run_phase

MODULE = "benchmarks.social_data"
PARSERS = [("orjson", "loads"), ("msgspec.json", "decode"), ("simdjson", "loads"), ("ujson", "loads"),
           ("rapidjson", "loads"), ("json", "loads")]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _workers_rss_mb() -> float:
    """The largest forked worker's peak RSS in MB (pages shared with the parent included)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB


def _parse_all(path, loads) -> int:
    """Parse every line of ``path`` with ``loads``, keep nothing; the number of lines."""
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n


def fastest_parser(path: str, n_lines: int = 3000) -> tuple[str, object, dict]:
    """The installed JSON parser that parses the first ``n_lines`` lines fastest."""
    with open(path, "rb") as fh:
        sample = [line for _, line in zip(range(n_lines), fh)]
    tried = {}
    best = None
    for mod, fn in PARSERS:
        try:
            loads = getattr(importlib.import_module(mod), fn)
            loads(sample[0])
        except Exception:  # not installed, or cannot read bytes
            continue
        t = time.perf_counter()
        for line in sample:
            loads(line)
        dt = time.perf_counter() - t
        tried[mod] = round(dt, 4)
        if best is None or dt < best[2]:
            best = (mod, loads, dt)
    return best[0], best[1], tried


def phase_parse(path: str) -> dict:
    name, loads, tried = fastest_parser(path)
    t = time.perf_counter()
    c = time.process_time()
    n = _parse_all(path, loads)
    return {"parser": name, "parsers_tried_seconds": tried, "seconds": time.perf_counter() - t,
            "cpu_seconds": time.process_time() - c, "posts": n, "peak_rss_mb": peak_rss_mb()}


def phase_pipeline(path: str, profiles: str, work: str, workers: int = 1, tree_path: str = "fast") -> dict:
    t = time.perf_counter()
    import numpy  # noqa: F401
    import pyarrow as pa
    import pyarrow.parquet  # noqa: F401

    pa.array([0])  # pyarrow imports pandas on the first conversion
    from simtune.recipes.social.commands import SocialSamplesConfig, run_samples
    from simtune.recipes.social.data.build import build_trees

    t_imports = time.perf_counter() - t
    if tree_path == "general":  # every post through make_tree: what the one-pass fast path saves
        from simtune.recipes.social.data.weibo import WeiboParser
        WeiboParser._fast_tree = lambda *a, **k: None

    def clock():
        return time.perf_counter(), time.process_time() + _children_cpu()  # workers included

    w0, c0 = clock()
    b = build_trees(inputs=[path], profiles=profiles, id_map=None, ced_dir=None, ced_limit=None,
                    out_dir=f"{work}/build", window_seconds=7 * 86400, strict=False, progress=False, workers=workers)
    w1, c1 = clock()
    s = run_samples(SocialSamplesConfig.load(None, [], build_dir=f"{work}/build", out=f"{work}/samples",
                                             progress=False, workers=workers))
    w2, c2 = clock()
    return {"imports_seconds": t_imports, "workers": workers,
            "build_seconds": w1 - w0, "samples_seconds": w2 - w1, "seconds": w2 - w0,
            "build_cpu_seconds": c1 - c0, "samples_cpu_seconds": c2 - c1, "cpu_seconds": c2 - c0,
            "posts": b["counts"]["posts_in"], "interactions": b["counts"]["interactions_in"],
            "samples": s["counts"]["samples_out"], "peak_rss_mb": peak_rss_mb(),
            "worker_peak_rss_mb": _workers_rss_mb() if workers > 1 else 0.0}


def phase_floor(path: str, work: str, rows_per_group: int = 5000) -> dict:
    """The I/O the output formats force, without the pipeline's own work (module docstring)."""
    import tempfile

    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simtune.recipes.social.sample_files import parquet_writer

    cpu = time.process_time
    out = {}
    c = cpu()
    _parse_all(path, orjson.loads)
    out["parse_input_cpu_seconds"] = cpu() - c
    trees = Path(work) / "build/trees.jsonl"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        # the tree lines: parsed (what samples must do), then parsed and written again (what
        # build must do on top of its own parse of the input); writing = the difference
        c = cpu()
        _parse_all(trees, orjson.loads)
        t_parse = cpu() - c
        c = cpu()
        with open(trees, "rb") as fh, open(Path(tmp) / "trees.jsonl", "wb") as w:
            dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
            for line in fh:
                w.write(dumps(orjson.loads(line), option=opt))
        t_dump = max(cpu() - c - t_parse, 0.0)
        # off the clock: the lines written are the build's, byte for byte
        with open(trees, "rb") as a, open(Path(tmp) / "trees.jsonl", "rb") as b:
            n_lines = mismatched = 0
            for x, y in zip(a, b):
                n_lines += 1
                mismatched += x != y
        (Path(tmp) / "trees.jsonl").unlink()
        out.update(write_trees_cpu_seconds=t_dump, parse_trees_cpu_seconds=t_parse, tree_lines=n_lines,
                   tree_lines_not_as_written=mismatched)
        t_write = 0.0
        rows = in_mem = 0
        for f in sorted((Path(work) / "samples").glob("*.parquet")):
            pf = pq.ParquetFile(f)
            wr = parquet_writer(Path(tmp) / f.name, pf.schema_arrow)
            for b in pf.iter_batches(batch_size=rows_per_group):
                t = pa.Table.from_batches([b])
                rows += t.num_rows
                in_mem += t.nbytes
                c0 = cpu()
                wr.write_table(t)
                t_write += cpu() - c0
            c0 = cpu()
            wr.close()
            t_write += cpu() - c0
    out.update(write_samples_cpu_seconds=t_write, sample_rows=rows, samples_mb_in_memory=in_mem / 1e6)
    out["cpu_seconds"] = (out["parse_input_cpu_seconds"] + t_dump + t_parse + t_write)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def rows(res: dict) -> list[Row]:
    """The rows of the combined table (benchmarks.Row)."""
    pipe, parse = res["pipeline"], res["parse"]
    return [Row("social_data", f"social data s, build + samples vs bare orjson parse [{res['posts']:,} posts, "
             f"{res['file_mb']:.0f} MB]", f"{pipe['seconds']:.1f}", f"{parse['seconds']:.2f}", f"{res['ratio']:.1f}x",
             "<= 3x"),
            Row("social_data_floor", "social data I/O floor of the formats, CPU s (no processing) vs bare parse",
             f"{res['floor']['cpu_seconds']:.1f}", f"{res['floor']['parse_input_cpu_seconds']:.2f}",
             f"{res['floor_ratio']:.1f}x", ""),
            Row("social_data_rss", "social data peak RSS MB", f"{pipe['peak_rss_mb']:.0f}", f"{parse['peak_rss_mb']:.0f}",
             "", "")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=None, help="default: posts / 10, at least 300")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="outputs/bench_social", help="corpus and outputs (gitignored)")
    ap.add_argument("--workers", type=int, default=1, help="processes for build and samples (0 = one per CPU)")
    ap.add_argument("--reuse", action="store_true", help="reuse the corpus in --work when it has the asked size")
    ap.add_argument("--tree_path", choices=["fast", "general"], default="fast",
                    help="general: build without WeiboParser._fast_tree (every post takes make_tree), to measure "
                         "what the fast path saves")
    ap.add_argument("--phase", choices=["parse", "pipeline", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--profiles", help=argparse.SUPPRESS)
    a = parse_args(ap, argv, "bench_results/social_data.json")
    workers = a.workers or (os.cpu_count() or 1)
    if a.phase == "parse":
        print(json.dumps(phase_parse(a.file)))
        return 0
    if a.phase == "pipeline":
        print(json.dumps(phase_pipeline(a.file, a.profiles, a.work, workers, a.tree_path)))
        return 0
    if a.phase == "floor":
        print(json.dumps(phase_floor(a.file, a.work)))
        return 0

    users = a.users or max(300, a.posts // 10)
    work = Path(a.work)
    meta_path = work / "raw/summary.bench.json"
    want = {"posts": a.posts, "users": users, "seed": a.seed}
    t = time.perf_counter()
    if a.reuse and meta_path.exists() and json.loads(meta_path.read_text()).get("want") == want:
        info = json.loads(meta_path.read_text())["info"]
        gen_s = None
    else:
        from simtune.recipes.social.synthetic import generate

        info = generate(work / "raw", seed=a.seed, n_users=users, n_posts=a.posts, span_days=max(60.0, a.posts / 1000))
        gen_s = time.perf_counter() - t
        meta_path.write_text(json.dumps({"want": want, "info": info}))
    path = str(work / "raw/posts.jsonl")
    size_mb = os.path.getsize(path) / 1e6
    load_before = os.getloadavg()[0]
    parse = run_phase(MODULE, ["parse", "--file", path])
    pipe = run_phase(MODULE, ["pipeline", "--file", path, "--profiles", str(work / "raw/profiles.json"),
                       "--work", str(work), "--workers", str(workers), "--tree_path", a.tree_path])
    floor = run_phase(MODULE, ["floor", "--file", path, "--work", str(work)])
    load_after = os.getloadavg()[0]
    p_s, p_c = parse["seconds"], parse["cpu_seconds"]
    cols = [("build", pipe["build_seconds"], pipe["build_cpu_seconds"]),
            ("samples", pipe["samples_seconds"], pipe["samples_cpu_seconds"]),
            ("build+samples", pipe["seconds"], pipe["cpu_seconds"])]
    head = ["", f"bare {parse['parser']} parse"] + [c[0] for c in cols]
    shown = [
        ["wall seconds", f"{p_s:.2f}"] + [f"{w:.2f}" for _, w, _ in cols],
        ["CPU seconds (all processes)", f"{p_c:.2f}"] + [f"{c:.2f}" for _, _, c in cols],
        ["posts/s", f"{parse['posts'] / p_s:,.0f}"] + [f"{pipe['posts'] / w:,.0f}" for _, w, _ in cols],
        ["interactions/s", f"{info['interactions'] / p_s:,.0f}"] + [f"{pipe['interactions'] / w:,.0f}" for _, w, _ in cols],
        ["input MB/s", f"{size_mb / p_s:,.1f}"] + [f"{size_mb / w:,.1f}" for _, w, _ in cols],
        ["x bare parse, wall", "1.00"] + [f"{w / p_s:.2f}" for _, w, _ in cols],
        ["x bare parse, CPU", "1.00"] + [f"{c / p_c:.2f}" for _, _, c in cols],
        ["peak RSS MB", f"{parse['peak_rss_mb']:,.0f}", "", "",
         f"{pipe['peak_rss_mb']:,.0f}" + (f" (+ workers, largest {pipe['worker_peak_rss_mb']:,.0f})" if workers > 1 else "")],
    ]
    gen = f"generated in {gen_s:.1f} s" if gen_s is not None else "reused"
    print(f"corpus: {info['posts']:,} posts, {info['interactions']:,} interactions, {users:,} users, "
          f"{size_mb:,.1f} MB ({gen}); samples written: {pipe['samples']:,}; workers: {workers}; tree path: {a.tree_path}")
    print(f"pipeline one-time imports before the clock: {pipe['imports_seconds']:.2f} s; "
          f"parsers tried (s on 3000 lines): {parse['parsers_tried_seconds']}")
    w0 = max(len(r[0]) for r in shown)
    widths = [max(len(head[i]), *(len(r[i]) for r in shown)) for i in range(1, len(head))]
    print(f"  {'':<{w0}}  " + "  ".join(f"{h:>{wd}}" for h, wd in zip(head[1:], widths)))
    for r in shown:
        print(f"  {r[0]:<{w0}}  " + "  ".join(f"{v:>{wd}}" for v, wd in zip(r[1:], widths)))
    ratio = pipe["seconds"] / p_s
    print(f"  build+samples / bare parse: {ratio:.2f}x wall, {pipe['cpu_seconds'] / p_c:.2f}x CPU (target <= 3x: "
          f"{'met' if ratio <= 3 else 'not met'})")
    fp = floor["parse_input_cpu_seconds"]
    floor_ratio = floor["cpu_seconds"] / fp
    print(f"  I/O floor of the output formats (one process, no checks, draws or prompts; CPU s): parse the input "
          f"{fp:.2f} + write trees.jsonl {floor['write_trees_cpu_seconds']:.2f} + parse it "
          f"{floor['parse_trees_cpu_seconds']:.2f} + write the {floor['sample_rows']:,} sample rows "
          f"({floor['samples_mb_in_memory']:,.0f} MB in memory, {size_mb:,.0f} MB of input) "
          f"{floor['write_samples_cpu_seconds']:.2f} = {floor['cpu_seconds']:.2f} s = {floor_ratio:.2f}x its bare "
          f"parse (without the tree lines, as if build handed samples a binary form: "
          f"{(fp + floor['write_samples_cpu_seconds']) / fp:.2f}x); the pipeline's CPU is "
          f"{pipe['cpu_seconds'] / floor['cpu_seconds']:.1f}x this floor"
          + ("" if not floor["tree_lines_not_as_written"] else
             f" (WARNING: {floor['tree_lines_not_as_written']} tree lines re-serialized differently)"))
    print(f"  load average (1 min) before / after: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs")
    res = {"posts": info["posts"], "interactions": info["interactions"], "users": users, "file_mb": round(size_mb, 2),
           "generate_seconds": None if gen_s is None else round(gen_s, 2), "parse": parse, "pipeline": pipe,
           "ratio": round(ratio, 3), "cpu_ratio": round(pipe["cpu_seconds"] / p_c, 3),
           "build_ratio": round(pipe["build_seconds"] / p_s, 3), "samples_ratio": round(pipe["samples_seconds"] / p_s, 3),
           "floor": floor, "floor_ratio": round(floor_ratio, 3),
           "workers": workers, "loadavg_before": load_before, "loadavg_after": load_after,
           "python": sys.version.split()[0]}
    return report(res, rows(res), a.out)


if __name__ == "__main__":
    sys.exit(main())
