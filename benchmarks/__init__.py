"""Benchmarks (run as modules: ``python -m benchmarks.<name>``).

The device: ``SIMTUNE_BENCH_DEVICE`` (set by each benchmark's ``--device``; default
``auto`` = CUDA where there is one, else the CPU). On CUDA the models load in bf16 where
the GPU has it (simtune's ``dtype: auto``), TRL's baseline trains with ``bf16=True`` and
peak GPU memory is reported beside peak RSS; on the CPU everything is fp32."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


def device() -> str:
    """The device the phases run on: ``cuda`` or ``cpu``."""
    from simtune.models import pick_device
    return pick_device(os.environ.get("SIMTUNE_BENCH_DEVICE", "auto"))


def parse_args(ap, argv, out: str):
    """Add the options every benchmark has (``--device``, ``--out``), parse, and make the
    asked device this process's and its phases'."""
    ap.add_argument("--device", help="auto (default: CUDA where there is one), cpu or cuda")
    ap.add_argument("--out", default=out)
    a = ap.parse_args(argv)
    set_device(a.device)
    return a


def set_device(name: str | None) -> None:
    """Make ``name`` (auto / cpu / cuda) the device of this process and of the phases it starts."""
    if name:
        os.environ["SIMTUNE_BENCH_DEVICE"] = name


def sync() -> None:
    """Wait for queued GPU work, so that a timer read next measures it (no-op on the CPU)."""
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def now() -> float:
    sync()
    return time.perf_counter()


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB.

    Linux's ``ru_maxrss`` for RUSAGE_SELF carries over the high-water mark of the process
    that started this one (it survives ``exec``): a phase started by a parent holding 500
    MB reports at least 500 MB. ``VmHWM`` in /proc/self/status belongs to this program
    alone; ``ru_maxrss`` is the fallback where there is no /proc."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peaks() -> dict:
    """Peak RSS of this process in MB, and the peak GPU memory allocated where CUDA is used."""
    out = {"peak_rss_mb": peak_rss_mb()}
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def run_phase(module: str, args: list[str]) -> dict:
    """Run ``python -m <module> --phase ...`` in its own process (so its peaks are its own)
    and return the JSON object on its last line of output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-m", module, "--phase", *args], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{module} phase {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Row(NamedTuple):
    """One line of a benchmark's table: a figure beside its baseline measured in the same run."""
    key: str        # stable name, to compare runs (bench_previous.json)
    measure: str    # what is measured, and on what
    simtune: str
    baseline: str
    ratio: str
    target: str


def table(rs: list[Row]) -> str:
    """Rows as one Markdown table."""
    out = ["| measure | simtune | baseline | ratio | target |", "|---|---|---|---|---|"]
    return "\n".join(out + [f"| {r.measure} | {r.simtune} | {r.baseline} | {r.ratio} | {r.target} |" for r in rs])


def report(res: dict, rs: list[Row], out: str) -> int:
    """Print a benchmark's table and write its raw figures as JSON to ``out``."""
    print(table(rs))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2))
    print(f"written: {out}")
    return 0
