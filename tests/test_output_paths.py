"""Configs cannot make a run write outside the output folder it chose, nor replace a folder
that is not an earlier output: one ConfigError naming the key (and where it came from).
A command replaces only a folder it can prove it wrote (``simtune.io``: its marker names the
command and lists what it wrote), and keeps its outputs apart from its inputs."""
from __future__ import annotations

import json
import os

import pytest

from simtune.cli import main as cli
from simtune.config import ConfigError
from simtune.stage_configs import SFTConfig
from simtune.experiment import Experiment
from simtune.io import MARKER, OutputMarker, atomic_path, clean_stale
from simtune.recipes.reviews.commands import ReviewsEvalConfig, evaluate_run
from simtune.recipes.social.commands import SocialBuildConfig, SocialSamplesConfig, SocialSynthConfig, run_synth

from testutils import experiment_folder, file_tree, social_build_args, synth_corpus


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


def test_the_marker_names_the_command_its_schema_a_run_id_and_what_it_wrote(tmp_path):
    out = synth_corpus(tmp_path / "raw")
    m = OutputMarker.read(out)
    assert (m.command, m.schema) == ("data social synth", 1) and len(m.run_id) == 16
    assert set(m.files) == {p.name for p in out.iterdir()} - {MARKER}
    synth_corpus(out, users=6)  # its own earlier output: replaced
    assert OutputMarker.read(out).run_id != m.run_id
    assert json.loads((out / "summary.json").read_text())["counts"]["users"] == 6


def test_only_what_the_same_command_wrote_may_be_replaced(tmp_path, capsys):
    raw = synth_corpus(tmp_path / "raw")
    (raw / "my_notes.txt").write_text("mine")  # added to an output: no longer only the command's
    assert cli(["data", "social", "synth", "--out", str(raw), "--users", "5", "--posts", "3"]) == 2
    assert "holds my_notes.txt, which `simtune data social synth` did not write" in capsys.readouterr().err
    (raw / "my_notes.txt").unlink()
    build = tmp_path / "build"
    assert cli(social_build_args(raw, build)) == 0
    assert cli(["data", "social", "synth", "--out", str(build), "--users", "5", "--posts", "3"]) == 2
    assert "is the output of `simtune data social build`, not of `simtune data social synth`" in capsys.readouterr().err
    # an output from before the marker (a summary.json, nothing to prove who wrote the rest): refused
    (build / MARKER).unlink()
    before = file_tree(build)
    assert cli(social_build_args(raw, build)) == 2
    err = capsys.readouterr().err
    assert f"holds activity.npz, rejects.jsonl, summary.json and 2 more, and no {MARKER} shows" in err
    assert err.count("\n") == 1 and file_tree(build) == before  # one line naming what is in the way


@pytest.mark.parametrize("where", ["equal", "inside", "holds", "link"])
def test_social_outputs_are_kept_apart_from_their_inputs(tmp_path, where, capsys):
    raw = synth_corpus(tmp_path / "raw")
    build = tmp_path / "build"
    assert cli(social_build_args(raw, build)) == 0
    (tmp_path / "build_link").symlink_to(build, target_is_directory=True)
    before = file_tree(tmp_path)
    out = {"equal": build, "inside": build / "samples", "holds": tmp_path, "link": tmp_path / "build_link" / "s"}[where]
    assert cli(["data", "social", "samples", "--build_dir", str(build), "--out", str(out), "--progress", "false"]) == 2
    assert "('build_dir')" in capsys.readouterr().err
    assert file_tree(tmp_path) == before


def test_reviews_run_folder_is_kept_apart_from_the_data(tmp_path):
    from simtune.recipes.reviews.commands import _run_folder, load_config
    data = tmp_path / "run" / "data" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"'output_dir' .* holds the input .*train.jsonl \('data_path'\)"):
        _run_folder(load_config(["--data_path", str(data), "--output_dir", str(tmp_path / "run")]))
    douban = tmp_path / "douban"
    douban.mkdir()
    with pytest.raises(ConfigError, match=r"'output_root' .* is inside the input folder"):
        _run_folder(load_config(["--data_path", str(douban), "--output_root", str(douban / "outputs")]))
    assert file_tree(tmp_path) == {"run/data/train.jsonl": b"{}\n"}


def test_report_replaces_its_own_folder_and_nothing_else(tmp_path, capsys):
    exp = experiment_folder(tmp_path / "run")
    assert cli(["report", str(exp)]) == 0 and cli(["report", str(exp)]) == 0  # its own folder, replaced
    assert OutputMarker.read(exp / "report").command == "report" and (exp / "report" / "summary.json").is_file()
    assert cli(["report", str(exp), "--out", str(exp)]) == 2
    assert "holds the input" in capsys.readouterr().err


def test_export_overwrite_replaces_an_earlier_export_only(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "exported"
    assert cli(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert cli(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert "holds an earlier export (pass --overwrite" in capsys.readouterr().err
    assert cli(["export", "--model", str(tiny_model_dir), "--out", str(out), "--overwrite"]) == 0
    assert OutputMarker.read(out).command == "export"


def test_a_run_folder_of_a_live_process_or_another_host_is_never_cleared(tmp_path):
    from simtune.io import _HOST
    live = tmp_path / f".tmp-x-{os.getpid()}-{_HOST}-0123abcd"
    other_host = tmp_path / f".tmp-x-{2 ** 22 + 1}-{'0' * 8 if _HOST != '0' * 8 else '1' * 8}-0123abcd"
    for p in (live, other_host):
        p.mkdir()
    clean_stale(tmp_path)
    assert live.is_dir() and other_host.is_dir()


def test_atomic_path_refuses_a_folder_it_did_not_write_before_the_block_runs(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    ran = []
    with pytest.raises(ConfigError, match=r"refusing to replace .*out: it holds keep, and no"):
        with atomic_path(tmp_path / "out", is_dir=True, command="data social build"):
            ran.append(1)
    assert ran == [] and file_tree(tmp_path) == {"out/keep": b"x"}
