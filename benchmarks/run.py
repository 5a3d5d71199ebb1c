"""`make bench`: every benchmark, each figure beside a baseline measured in the same run,
printed as one table; everything (the conditions, the rows, each benchmark's raw figures)
goes to bench_results/bench.json (ignored by git), and each benchmark's own output to
bench_results/<name>.log. When a bench.json from an earlier run is there, its ratios are
shown in a last column (that file is kept as bench_previous.json).

    PYTHONPATH=src python -m benchmarks.run [--quick] [--only training,rollout] [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from benchmarks import Row, device, rollout, set_device, social_data, training

OUT = Path("bench_results")


def conditions() -> dict:
    import torch
    import transformers
    import trl
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "device": device(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__}


def _run(name: str, module, args: list[str]) -> dict:
    out = OUT / f"{name}.json"
    print(f"running {name} ... (load average {os.getloadavg()[0]:.1f})", flush=True)
    with open(OUT / f"{name}.log", "w") as log, contextlib.redirect_stdout(log):
        module.main([*args, "--out", str(out)])
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes: 20,000 posts, 32 SFT samples (8 steps)")
    ap.add_argument("--only", default="social_data,training,rollout")
    ap.add_argument("--device", help="auto (default: CUDA where there is one, bf16 where it has it), cpu or cuda")
    a = ap.parse_args(argv)
    set_device(a.device)
    OUT.mkdir(exist_ok=True)
    only = a.only.split(",")
    cond = {**conditions(), "load_average_start": os.getloadavg()[0]}
    res, rs = {}, []
    if "social_data" in only:
        res["social_data"] = _run("social_data", social_data, ["--posts", "20000" if a.quick else "200000", "--workers", "0"])
        rs += social_data.rows(res["social_data"])
    if "training" in only:
        res["training"] = _run("training", training, ["--model", "default", *(["--samples", "32"] if a.quick else [])])
        rs += training.rows(res["training"])
    if "rollout" in only:
        res["rollout"] = _run("rollout", rollout, ["--model", "default"])
        rs += rollout.rows(res["rollout"])
    cond["load_average_end"] = os.getloadavg()[0]
    bench = OUT / "bench.json"
    prev = {}
    if bench.is_file():
        old = json.loads(bench.read_text())
        prev = {r.key: r.ratio or r.simtune for r in (Row(*x) for x in old.get("rows", []))}
        shutil.copy(bench, OUT / "bench_previous.json")
        print(f"previous run: {old['conditions']['date']} (load average {old['conditions']['load_average_start']:.1f})")
    print("| measure | simtune | baseline | ratio | target | previous run |\n|---|---|---|---|---|---|")
    for r in rs:
        print(f"| {r.measure} | {r.simtune} | {r.baseline} | {r.ratio} | {r.target} | {prev.get(r.key, '')} |")
    print(f"conditions: {cond['cpus']} CPUs, {cond['torch_threads']} torch threads, device {cond['device']}"
          f"{' (' + cond['gpu'] + ')' if cond['gpu'] else ''}, load average "
          f"{cond['load_average_start']:.1f} at the start and {cond['load_average_end']:.1f} at the end; torch "
          f"{cond['torch']}, transformers {cond['transformers']}, trl {cond['trl']}")
    bench.write_text(json.dumps({"conditions": cond, "rows": rs, "results": res}, indent=2))
    print(f"written: {bench}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
