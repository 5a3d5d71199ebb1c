"""The social data benchmark's I/O floor measures the pipeline's own files: the tree lines
it re-serializes are the build's byte for byte, and it rewrites every sample row."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pyarrow.parquet as pq

from simtune.recipes.social.commands import SocialSamplesConfig, run_samples
from simtune.recipes.social.data.build import build_trees
from simtune.recipes.social.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    if str(ROOT) not in sys.path:  # the benchmarks package sits at the repository root
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.social_data")


def test_floor_rewrites_the_pipelines_own_outputs(tmp_path):
    generate(tmp_path / "raw", seed=5, n_users=300, n_posts=300)
    posts = str(tmp_path / "raw/posts.jsonl")
    b = build_trees(inputs=[posts], profiles=str(tmp_path / "raw/profiles.json"), id_map=None, ced_dir=None,
                    ced_limit=None, out_dir=str(tmp_path / "build"), window_seconds=7 * 86400, strict=False,
                    progress=False)
    s = run_samples(SocialSamplesConfig.load(None, [], build_dir=str(tmp_path / "build"), out=str(tmp_path / "samples"),
                                             progress=False, max_depth=2))
    f = _bench().phase_floor(posts, str(tmp_path))
    assert f["tree_lines"] == b["counts"]["posts_out"] > 250
    assert f["tree_lines_not_as_written"] == 0  # build writes orjson.dumps of its record, nothing else
    assert f["sample_rows"] == s["counts"]["samples_out"] > 300
    parts = ("parse_input_cpu_seconds", "write_trees_cpu_seconds", "parse_trees_cpu_seconds", "write_samples_cpu_seconds")
    assert all(f[k] >= 0 for k in parts) and f["parse_input_cpu_seconds"] > 0
    assert abs(f["cpu_seconds"] - sum(f[k] for k in parts)) < 1e-9
    # its scratch files are gone; the pipeline's are untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "raw", "samples"]
    assert pq.ParquetFile(tmp_path / "samples/train.parquet").metadata.num_rows == s["counts"]["samples_train"]


def test_peak_rss_is_the_phases_own_not_its_parents(tmp_path):
    """A phase started by a parent that holds 300 MB reports its own peak, not the parent's
    (Linux's ru_maxrss survives exec; /proc/self/status VmHWM does not)."""
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]); from benchmarks import peak_rss_mb; "
            "print(peak_rss_mb())")
    big = bytearray(300 * 2 ** 20)
    big[::4096] = b"\x01" * len(big[::4096])  # touch every page: resident
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 150, out.stdout
    del big
