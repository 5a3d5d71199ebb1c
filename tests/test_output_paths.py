"""Configs cannot make a run write outside the output folder it chose, nor replace a folder
that is not an earlier output: one ConfigError naming the key (and where it came from).
A command replaces only a folder it can prove it wrote (``simtune.io``: its marker names the
command and lists what it wrote), and keeps its outputs apart from its inputs."""
from __future__ import annotations

import json
import os

import pytest

from simtune.cli import main as cli
from simtune.config import ConfigError, SFTConfig
from simtune.experiment import Experiment
from simtune.io import atomic_path
from simtune.recipes.reviews.commands import ReviewsEvalConfig, evaluate_run
from simtune.recipes.social.commands import SocialBuildConfig, SocialSamplesConfig, SocialSynthConfig, run_synth


@pytest.mark.parametrize("key,value", [("run_name", "../../etc"), ("run_name", "/tmp/x"), ("run_name", ".."),
                                       ("run_name", "a/b"), ("recipe", ".."), ("recipe", "a\\b"), ("recipe", "")])
def test_run_name_and_recipe_are_plain_names(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"^command line: '{key}' must be a plain name"):
        SFTConfig.load(None, ["--train_file", "x", "--output_root", str(tmp_path), f"--{key}", value])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"train_file: x\n{key}: {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match=rf"^{cfg_file}: '{key}'"):
        SFTConfig.load(cfg_file)
    assert SFTConfig.load(None, ["--train_file", "x", f"--{key}", "ok..name"])  # dots inside a name are fine


def test_a_symlinked_recipe_folder_may_not_lead_outside_output_root(tmp_path):
    outside, root = tmp_path / "elsewhere", tmp_path / "outputs"
    outside.mkdir()
    root.mkdir()
    (root / "social").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link that leads outside output_root"):
        Experiment.create("social", "run", root)
    with pytest.raises(ConfigError, match="symbolic link that leads outside output_root"):
        Experiment.latest("social", "run", root)
    assert list(outside.iterdir()) == []
    (tmp_path / "big_disk").mkdir()
    (tmp_path / "link_root").symlink_to(tmp_path / "big_disk", target_is_directory=True)
    exp = Experiment.create("social", "run", tmp_path / "link_root")  # output_root itself may be a link
    assert exp.root.resolve().parent.parent == (tmp_path / "big_disk").resolve()


def test_eval_output_subdir_stays_inside_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for bad in ("../x", "/tmp/x", "a/../../x", ""):
        with pytest.raises(ConfigError, match=r"^command line: 'output_subdir' must be a relative path inside"):
            ReviewsEvalConfig.load(None, ["--run", str(run), "--output_subdir", bad])
    assert ReviewsEvalConfig.load(None, ["--run", str(run), "--output_subdir", "eval/v2"]).output_subdir == "eval/v2"
    (tmp_path / "elsewhere").mkdir()
    (run / "eval").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"'output_subdir' 'eval' leads outside .* through a symbolic link"):
        evaluate_run(run, baselines_only=True)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def _files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_data_commands_never_replace_what_is_not_their_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    before = _files(tmp_path)
    # the current folder (this used to delete everything in it), a folder of someone's files, a file
    for out, why in ((".", "is the current folder or holds it"), (str(tmp_path), "is the current folder"),
                     ("mine", r"holds thesis.tex, and no \.simtune-output\.json shows"),
                     ("mine/thesis.tex", "is a file")):
        with pytest.raises(ConfigError, match=rf"^keyword argument: 'out' .* {why}"):
            SocialSynthConfig.load(None, [], out=out, users=5, posts=3)
        assert cli(["data", "social", "synth", "--out", out, "--users", "5", "--posts", "3"]) == 2
        assert "'out'" in capsys.readouterr().err
    assert _files(tmp_path) == before
    # a link; the input of the same command
    os.symlink(tmp_path / "mine", tmp_path / "link")
    with pytest.raises(ConfigError, match="'out' 'link' is a symbolic link"):
        SocialSynthConfig.load(None, [], out="link")
    run_synth(SocialSynthConfig.load(None, [], out="raw", users=5, posts=3))
    with pytest.raises(ConfigError, match=r"'out' 'raw' holds the input raw/posts.jsonl \('inputs'\)"):
        SocialBuildConfig.load(None, [], inputs=["raw/posts.jsonl"], out="raw")
    with pytest.raises(ConfigError, match=r"'out' 'b' is the input b \('build_dir'\)"):
        SocialSamplesConfig.load(None, [], build_dir="b", out="b")
    # an earlier output of the same command (its marker says so) is replaced, as documented
    run_synth(SocialSynthConfig.load(None, [], out="raw", users=6, posts=3))
    assert json.loads((tmp_path / "raw/summary.json").read_text())["counts"]["users"] == 6
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_atomic_folder_replace_refuses_the_current_folder_and_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep").write_text("x")
    for target in (tmp_path, tmp_path.parent):
        with pytest.raises(ValueError, match="refusing to replace"):
            with atomic_path(target, is_dir=True):
                pass
    os.symlink(tmp_path, tmp_path.parent / f"{tmp_path.name}-link")
    with pytest.raises(ValueError, match="refusing to replace"):
        with atomic_path(tmp_path.parent / f"{tmp_path.name}-link", is_dir=True):
            pass
    os.remove(tmp_path.parent / f"{tmp_path.name}-link")
    assert (tmp_path / "keep").read_text() == "x"
