"""Property: whatever output and input paths a command is given (new, nested, equal, parent,
child, through links), it never deletes or changes a file that was there before it ran,
except what it may replace: its own earlier output folder at that path (the marker says
so), or a file named as an output file (``--out`` / ``--rejects`` of math prepare). A
refused command changes nothing at all, and a command writes nowhere but its outputs
(no ``.tmp-*`` or ``.old-*`` left either).

The cheap commands run on tiny inputs in a small world: a synthetic corpus, its build, a
GSM8K file, an experiment folder, a report, the user's own files, links to each.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simtune.cli import main as cli
from simtune.io import OutputMarker

from testutils import experiment_folder, social_build_args, synth_corpus

GOOD = '{"question": "What is 2+3?", "answer": "2+3=5\\n#### 5"}'


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    cwd = os.getcwd()
    os.chdir(w)
    try:
        synth_corpus("raw")
        assert cli(social_build_args(Path("raw"), "build")) == 0
        experiment_folder(Path("run"))
        assert cli(["report", "run"]) == 0
    finally:
        os.chdir(cwd)
    (w / "gsm8k.jsonl").write_text("".join(f"{GOOD}\n" if i % 3 else "{not json\n" for i in range(13)))
    (w / "mine" / "deep").mkdir(parents=True)
    (w / "mine" / "notes.txt").write_text("mine")
    (w / "mine" / "summary.json").write_text('{"mine": true}')  # what once made a folder look like an output
    (w / "mine" / "deep" / "data.txt").write_text("deep")
    (w / "empty").mkdir()
    (w / "top.txt").write_text("top")
    for link, target in (("link_raw", "raw"), ("link_build", "build"), ("link_mine", "mine"), ("link_run", "run"),
                         ("link_gsm.jsonl", "gsm8k.jsonl")):
        (w / link).symlink_to(target)  # relative: the copies' links point into the copies
    return w


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file and link below ``root`` (links not followed): relative path -> bytes or target."""
    out: dict[str, bytes | str] = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(d) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


@dataclass
class Run:
    """A command line, the folder it replaces as a whole (if any) and the files it names as outputs."""
    command: str
    argv: list[str]
    folder: str | None = None
    files: tuple[str, ...] = ()


BASES = [".", "raw", "build", "run", "run/final_model", "run/report", "mine", "mine/deep", "empty",
         "link_raw", "link_build", "link_mine", "link_run", "new", "new/nested"]
SUFFIXES = ["", "", "sub", "..", "report", "posts.jsonl", "notes.txt", "x.jsonl", "gsm8k.jsonl"]
PATHS = st.builds(lambda base, suffix: os.path.join(base, suffix) if suffix else base,
                  st.sampled_from(BASES), st.sampled_from(SUFFIXES))


def _synth(out):
    return Run("data social synth", ["data", "social", "synth", "--out", out, "--users", "5", "--posts", "3"], out)


def _build(out, posts, profiles):
    argv = ["data", "social", "build", "--inputs", posts, "--out", out, "--progress", "false"]
    return Run("data social build", argv + (["--profiles", profiles] if profiles else []), out)


def _samples(out, build_dir):
    return Run("data social samples", ["data", "social", "samples", "--build_dir", build_dir, "--out", out,
                                       "--progress", "false"], out)


def _prepare(inp, out, rejects):
    default = os.path.join(os.path.dirname(out), Path(out).stem + ".rejects.jsonl")
    return Run("data math prepare", ["data", "math", "prepare", "--input", inp, "--out", out]
               + (["--rejects", rejects] if rejects else []), None, (out, rejects or default))


def _report(exp, out):
    return Run("report", ["report", exp] + (["--out", out] if out else []), out or os.path.join(exp, "report"),
               (os.path.join(exp, "report.html"),))


RUNS = st.one_of(
    st.builds(_synth, PATHS),
    st.builds(_build, PATHS, st.sampled_from(["raw/posts.jsonl", "link_raw/posts.jsonl", "gsm8k.jsonl"]),
              st.sampled_from([None, "raw/profiles.json", "link_raw/profiles.json"])),
    st.builds(_samples, PATHS, st.sampled_from(["build", "link_build", "raw"])),
    st.builds(_prepare, st.sampled_from(["gsm8k.jsonl", "link_gsm.jsonl", "mine/notes.txt"]), PATHS,
              st.one_of(st.none(), PATHS)),
    st.builds(_report, st.sampled_from(["run", "link_run"]), st.one_of(st.none(), PATHS)),
)


def _below(root: Path, path: str) -> str:
    """``path`` (relative to ``root``, maybe through links) relative to ``root`` once links are resolved."""
    return os.path.relpath((root / path).resolve(), root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=RUNS)
def test_no_command_changes_a_file_it_may_not_replace(world, run):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d).resolve() / "w"
        shutil.copytree(world, root, symlinks=True)
        before = snapshot(root)
        folder = _below(root, run.folder) if run.folder else None
        own = folder is not None and getattr(OutputMarker.read(root / folder), "command", None) == run.command
        cwd = os.getcwd()
        os.chdir(root)
        try:
            rc = cli(run.argv)
        finally:
            os.chdir(cwd)
        after = snapshot(root)
        assert rc in (0, 2)
        event(f"{run.command}: {'refused' if rc else 'ran'}")
        if rc == 2:  # refused (or bad input): nothing changed
            assert after == before
            return
        files = {_below(root, f) for f in run.files}

        def in_folder(rel: str) -> bool:
            return folder is not None and (rel == folder or rel.startswith(folder + "/"))

        changed = [f for f in before if after.get(f) != before[f]]
        assert [f for f in changed if f not in files and not (own and in_folder(f))] == [], run
        assert [f for f in after if f not in before and f not in files and not in_folder(f)] == [], run
