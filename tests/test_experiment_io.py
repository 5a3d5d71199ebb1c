import json
import os

import pytest

from simtune.config import ConfigError
from simtune.stage_configs import SFTConfig
from simtune.experiment import Experiment
from simtune.io import DataError, RejectLog, atomic_path, atomic_write_json


def test_experiment_layout_and_config(tmp_path):
    cfg = SFTConfig.load(None, ["--train_file", "x.jsonl", "--recipe", "social", "--run_name", "demo",
                                "--output_root", str(tmp_path)])
    exp = Experiment.for_config(cfg)
    assert exp.root.parent == tmp_path / "social" and exp.root.name.startswith("demo_")
    assert exp.checkpoints_dir.is_dir() and exp.samples_dir.is_dir()
    assert SFTConfig.load(exp.config_path).to_dict() == cfg.to_dict()
    exp2 = Experiment.for_config(cfg)  # same second -> a distinct folder
    assert exp2.root != exp.root
    resumed = Experiment.for_config(SFTConfig.load(exp.config_path, ["--resume"]))
    assert resumed.root == max(exp.root, exp2.root, key=lambda p: p.name)


def test_resume_without_run_is_error(tmp_path):
    cfg = SFTConfig.load(None, ["--train_file", "x", "--output_root", str(tmp_path), "--resume"])
    with pytest.raises(ConfigError, match="no earlier run"):
        Experiment.for_config(cfg)


def test_run_name_may_not_escape(tmp_path):
    with pytest.raises(ConfigError, match="plain name"):
        Experiment.create("social", "../../etc", tmp_path)


def test_metrics_log_survives_torn_line(tmp_path):
    exp = Experiment.create("r", "n", tmp_path)
    exp.log_metrics({"loss": 1.5}, step=1)
    exp.log_metrics({"loss": 1.2}, step=2)
    with open(exp.metrics_path, "a") as fh:
        fh.write('{"step": 3, "lo')  # killed mid-write
    assert [m["loss"] for m in exp.read_metrics()] == [1.5, 1.2]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "dir", is_dir=True) as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_reject_log_counts_and_strict(tmp_path):
    log = RejectLog(tmp_path / "rejects.jsonl")
    log.reject("a.jsonl", 3, "bad json: Expecting value")
    log.reject("a.jsonl", 7, "missing field", field="text")
    log.reject("a.jsonl", 9, "bad json: Unterminated string")
    log.close()
    assert log.counts == {"bad json": 2, "missing field": 1} and log.total == 3
    lines = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert lines[1] == {"file": "a.jsonl", "line": 7, "field": "text", "reason": "missing field"}
    with pytest.raises(DataError, match=r"a.jsonl:3: field 'uid': wrong type"):
        RejectLog(strict=True).reject("a.jsonl", 3, "wrong type", field="uid")
