"""Data loss (issue 19): each finding as it was reported must not happen again.

The tests drive the commands as a user does (the CLI; nothing added by the fix is imported
here, so the file runs on the code before it, where every test failed). The rule that fixes
them lives in ``simtune.io``; its own tests are in tests/test_output_paths.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import simtune
from simtune.cli import main as cli
from simtune.recipes.social.commands import SocialSynthConfig, run_synth

from testutils import atomic_siblings, experiment_folder, file_tree, social_build_args, synth_corpus

GOOD = json.dumps({"question": "What is 2+3?", "answer": "2+3=5\n#### 5"})


# --------------------------------------------------------------------------- the findings

def test_1_build_never_replaces_an_experiment_folder_that_report_wrote_into(tmp_path):
    exp = experiment_folder(tmp_path / "run")
    assert cli(["report", str(exp)]) == 0
    raw = synth_corpus(tmp_path / "raw")
    before = file_tree(exp)
    assert cli(social_build_args(raw, exp)) == 2  # once: exit 0, final_model/, checkpoints/ and metrics.jsonl gone
    assert file_tree(exp) == before


def test_1_synth_never_replaces_a_folder_that_report_wrote_into(tmp_path):
    exp = experiment_folder(tmp_path / "run")
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cli(["report", str(exp), "--out", str(mine)])  # refused now; once it put a summary.json beside notes.txt
    assert cli(["data", "social", "synth", "--out", str(mine), "--users", "5", "--posts", "3"]) == 2
    assert file_tree(mine) == {"notes.txt": b"mine"}
    # a report's folder is the report's: synth does not take it for its own either
    rep = tmp_path / "rep"
    assert cli(["report", str(exp), "--out", str(rep)]) == 0
    before = file_tree(rep)
    assert cli(["data", "social", "synth", "--out", str(rep), "--users", "5", "--posts", "3"]) == 2
    assert file_tree(rep) == before


def test_2_export_never_replaces_the_model_or_a_folder_holding_it(tmp_path, tiny_model_dir, capsys):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "m")
    before = file_tree(models)
    for out in (models, models / "m", models / "m" / "sub"):  # the parent (it was deleted), the model, inside it
        assert cli(["export", "--model", str(models / "m"), "--out", str(out), "--overwrite"]) == 2
        assert "'--model'" in capsys.readouterr().err
    assert file_tree(models) == before


def test_3_prepare_never_deletes_the_rejects_file_when_nothing_is_rejected(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(GOOD + "\n")
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text('{"line": 7, "reason": "from an earlier run"}\n')
    assert cli(["data", "math", "prepare", "--input", str(src), "--out", str(tmp_path / "out.jsonl"),
                "--rejects", str(rejects)]) == 0
    assert rejects.read_text() == ""  # written on every run (empty: nothing rejected), never deleted


@pytest.mark.parametrize("how", ["same", "link", "dotted", "rejects"])
def test_4_prepare_never_writes_over_its_input(tmp_path, how):
    src = tmp_path / "in.jsonl"
    text = "".join(f"{GOOD}\n" if i % 2 else "{not json\n" for i in range(13))  # 13 lines, 6 of them good
    src.write_text(text)
    (tmp_path / "link.jsonl").symlink_to(src)
    (tmp_path / "sub").mkdir()
    out = {"same": src, "link": tmp_path / "link.jsonl", "dotted": tmp_path / "sub" / ".." / "in.jsonl",
           "rejects": tmp_path / "out.jsonl"}[how]
    args = ["data", "math", "prepare", "--input", str(src), "--out", str(out)]
    assert cli(args + (["--rejects", str(src)] if how == "rejects" else [])) == 2  # once: 13 lines became 6
    assert src.read_text() == text


def _fail_moving_into(monkeypatch, target: Path):
    """os.replace / os.rename fail (disk full) when a finished ``.tmp-*`` folder is moved onto ``target``."""
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def move(src, dst, *a, _real=real, **kw):
            if Path(dst) == target and Path(src).name.startswith(".tmp-"):
                raise OSError(28, "No space left on device")
            return _real(src, dst, *a, **kw)
        monkeypatch.setattr(os, name, move)


def test_5_a_replace_that_fails_keeps_the_old_output(tmp_path, monkeypatch):
    out = synth_corpus(tmp_path / "raw")
    before = file_tree(out)
    _fail_moving_into(monkeypatch, out)
    with pytest.raises(OSError, match="No space left"):
        run_synth(SocialSynthConfig.load(None, [], out=str(out), users=6, posts=3))
    monkeypatch.undo()
    assert file_tree(out) == before  # once: deleted first, so only what the new run had not yet written was left
    assert atomic_siblings(tmp_path) == []


KILLED = """
import os, signal, sys
from pathlib import Path
out, sig, when = Path(sys.argv[1]), getattr(signal, sys.argv[2]), sys.argv[3]
if when == "writing":  # the kill comes while the new output is written
    import simtune.recipes.social.synthetic as s
    real = s.generate
    def generate(folder, **kw):
        real(folder, **kw)
        os.kill(os.getpid(), sig)
    s.generate = generate
else:  # ... or when the finished output is moved onto the old one
    for name in ("replace", "rename"):
        real = getattr(os, name)
        def move(src, dst, *a, _real=real, **kw):
            if Path(dst) == out and Path(src).name.startswith(".tmp-"):
                os.kill(os.getpid(), sig)
            return _real(src, dst, *a, **kw)
        setattr(os, name, move)
from simtune.cli import main
main(["data", "social", "synth", "--out", str(out), "--users", "6", "--posts", "3"])
"""


def _killed_synth(out: Path, sig: str, when: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(simtune.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-c", KILLED, str(out), sig, when], env=env, capture_output=True, text=True)
    assert r.returncode == -getattr(signal, sig), r.stderr


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_6_what_a_killed_run_leaves_is_cleared_by_the_next_run(tmp_path, sig):
    out = tmp_path / "raw"
    (tmp_path / ".tmp-mine").mkdir()  # the user's own, not named as simtune names them: kept
    (tmp_path / ".old-notes-1-2").write_text("mine")
    _killed_synth(out, sig, "writing")
    assert [n for n in atomic_siblings(tmp_path) if n.startswith(".tmp-raw-")]  # the temporary folder a kill leaves
    synth_corpus(out)
    assert atomic_siblings(tmp_path) == [".old-notes-1-2", ".tmp-mine"]
    assert (tmp_path / ".old-notes-1-2").read_text() == "mine"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_6_a_run_killed_mid_replace_leaves_the_old_output_to_the_next_run(tmp_path, sig):
    out = synth_corpus(tmp_path / "raw")
    before = file_tree(out)
    _killed_synth(out, sig, "moving")
    synth_corpus(tmp_path / "other")  # any next run into the same folder puts the old output back
    assert file_tree(out) == before
    assert atomic_siblings(tmp_path) == []
