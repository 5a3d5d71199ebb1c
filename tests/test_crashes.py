"""Crashes (issue 19, round 2): a bad value or a bad path is one clear line (exit 2), never a
traceback, and a config cannot make a command hang or blow memory.

Each test drives the CLI as a user does and imports nothing the fix added, so it runs on the
code before the fix, where each failed (a traceback, a misleading message, or a hang). The
two that hung or grew to gigabytes on that code (the YAML bomb) run in a child process with
a memory and time limit, so they stay bounded there too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from simtune.cli import main as cli
from testutils import run_bounded

T0 = 1_700_000_000


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert len(err) < 600 and all(w in err for w in words), err
    return err


def posts_file(tmp_path: Path, created=None) -> Path:
    from simtune.recipes.social.schema import format_weibo_time
    p = tmp_path / "posts.jsonl"
    recs = [{"id": "p1", "user": {"id": "u0"}, "text_raw": "root", "created_at": format_weibo_time(T0),
             "comments": [{"id": "c1", "user": {"id": "u1"}, "text_raw": "hi", "created_at": format_weibo_time(T0 + 5)}]}]
    if created is not None:
        recs.append({**recs[0], "id": "p2", "created_at": created, "comments": []})
    p.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return p


def build(tmp_path: Path, *argv: str, out: str | None = None) -> int:
    return cli(["data", "social", "build", "--inputs", str(posts_file(tmp_path)), "--out", out or str(tmp_path / "b"),
                "--progress", "false", "--pseudonymize", "false", *argv])


# --------------------------------------------------------------------------- values

def test_a_created_at_of_1e308_is_a_rejected_post_not_an_overflow(tmp_path):
    src = posts_file(tmp_path, created=1e308)
    out = tmp_path / "b"
    assert cli(["data", "social", "build", "--inputs", str(src), "--out", str(out), "--progress", "false",
                "--pseudonymize", "false"]) == 0  # once: OverflowError, the whole build lost
    s = json.loads((out / "summary.json").read_text())
    assert s["counts"]["posts_out"] == 1 and s["rejected_by_reason"] == {"bad_date": 1}


@pytest.mark.parametrize("key,value", [("window_days", "nan"), ("window_days", "inf"), ("window_days", "1e300"),
                                       ("tz_offset_hours", "nan")])
def test_non_finite_or_huge_build_options_are_refused_when_read(tmp_path, capsys, key, value):
    assert build(tmp_path, f"--{key}", value) == 2
    one_line_error(capsys, f"'{key}'", "command line")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv", [["--train_share", "nan"], ["--val_share", "nan"],
                                  ["--k_ranges", "[[0, 1e300]]"], ["--k_ranges", "[[0, nan]]"]])
def test_non_finite_or_huge_samples_options_are_refused_when_read(tmp_path, capsys, argv):
    assert build(tmp_path) == 0
    capsys.readouterr()
    assert cli(["data", "social", "samples", "--build_dir", str(tmp_path / "b"), "--out", str(tmp_path / "s"),
                "--progress", "false", *argv]) == 2
    one_line_error(capsys, argv[0][2:])


def test_a_nan_learning_rate_in_yaml_is_refused_when_read(tmp_path):
    from simtune.config import ConfigError
    from simtune.stage_configs import SFTConfig
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    y = tmp_path / "c.yaml"
    for bad in (".nan", "-.inf", ".inf"):
        y.write_text(f"train_file: {data}\nlearning_rate: {bad}\n")
        with pytest.raises(ConfigError, match="'learning_rate'"):  # once: accepted
            SFTConfig.load(y)


def test_a_huge_value_is_cut_in_the_message(tmp_path, capsys):
    assert cli(["data", "social", "samples", "--max_depth", "x" * 100_000]) == 2
    one_line_error(capsys, "max_depth")


def test_a_yaml_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    names = "abcdefgh"
    lines = ["  - &a [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"  - &{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in zip(names, names[1:])]
    lines.append("  - [" + ", ".join(["*h"] * 9) + "]")  # 9**9: 387 million strings once expanded
    y = tmp_path / "bomb.yaml"
    y.write_text("k_ranges:\n" + "\n".join(lines) + "\n")
    r = run_bounded(["data", "social", "samples", "--config", str(y), "--build_dir", str(tmp_path),
                     "--out", str(tmp_path / "s")])
    assert r.returncode == 2, r.stderr[-1500:]  # once: 3 GB and more than 60 s
    assert "Traceback" not in r.stderr and len(r.stderr) < 600 and "expands" in r.stderr


# --------------------------------------------------------------------------- paths

@pytest.mark.parametrize("key", ["profiles", "id_map"])
def test_a_folder_given_as_an_input_file_is_one_line(tmp_path, capsys, key):
    (tmp_path / "d").mkdir()
    assert build(tmp_path, f"--{key}", str(tmp_path / "d")) == 2
    one_line_error(capsys, str(tmp_path / "d"), "is a folder")


@pytest.mark.parametrize("kind", ["fifo", "devnull"])
def test_a_pipe_or_a_device_as_input_is_named_for_what_it_is(tmp_path, capsys, kind):
    p = tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(p)
    else:
        p = Path(os.devnull)
    assert cli(["data", "social", "build", "--inputs", str(p), "--out", str(tmp_path / "b"), "--progress", "false",
                "--pseudonymize", "false"]) == 2
    one_line_error(capsys, str(p), "not a regular file")  # once: "input file not found"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_an_output_where_nothing_can_be_written_is_one_line(tmp_path, capsys, where):
    (tmp_path / "f").write_text("x")
    out = str(tmp_path / "f" / "sub") if where == "under_a_file" else "/proc/simtune_out"
    assert build(tmp_path, out=out) == 2
    one_line_error(capsys, "out")


def test_math_prepare_into_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    assert cli(["data", "math", "prepare", "--out", str(tmp_path / "d")]) == 2
    one_line_error(capsys, str(tmp_path / "d"))
    assert list((tmp_path / "d").iterdir()) == []


def test_a_binary_yaml_config_is_one_line(tmp_path, capsys):
    y = tmp_path / "c.yaml"
    y.write_bytes(bytes(range(256)) * 4)
    assert cli(["data", "social", "samples", "--config", str(y)]) == 2
    one_line_error(capsys, str(y))


@pytest.mark.parametrize("content", [os.urandom(4096), b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(256)])
def test_model_info_on_a_file_that_is_not_a_gguf_model_is_one_line(tmp_path, capsys, content, monkeypatch):
    monkeypatch.setenv("SIMTUNE_CACHE", str(tmp_path / "cache"))
    g = tmp_path / "fake.gguf"
    g.write_bytes(content)
    assert cli(["model", "info", str(g)]) == 2
    one_line_error(capsys, str(g))


class NotATensor:
    """A pickled object that torch.load(weights_only=True) refuses."""


def test_a_pickle_checkpoint_is_refused_in_one_line(tmp_path, capsys, tiny_model_dir):
    import shutil

    import torch
    m = tmp_path / "m"
    shutil.copytree(tiny_model_dir, m)
    (m / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": NotATensor()}, m / "pytorch_model.bin")
    assert cli(["model", "info", str(m)]) == 2  # once: refused, with a traceback
    one_line_error(capsys, "pickle")
