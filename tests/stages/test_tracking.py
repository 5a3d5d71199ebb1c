"""Trackers: TensorBoard events land in the experiment folder (per run, even two runs in
one process); a tracker whose package is missing stops before training, naming it."""
import os

import pytest

from simtune import tracking
from simtune.config import ConfigError
from simtune.stage_configs import SFTConfig
from simtune.stages import run_stage

from stage_utils import tiny_args


def run_tb(tiny_model_dir, tmp_path, pr_file, name):
    args = tiny_args(tiny_model_dir, tmp_path, pr_file, "--max_steps", "1", "--run_name", name)
    args[args.index("--report_to") + 1] = "tensorboard"
    return run_stage("sft", SFTConfig.load(None, args))


def test_tensorboard_events_under_each_experiment(tiny_model_dir, tmp_path, pr_file, monkeypatch):
    monkeypatch.delenv(tracking.TB_ENV, raising=False)
    monkeypatch.setattr(tracking, "_tb_dir_set_by_us", None)
    first = run_tb(tiny_model_dir, tmp_path, pr_file, "a")
    second = run_tb(tiny_model_dir, tmp_path, pr_file, "b")
    for res in (first, second):
        events = list((res.experiment.root / "runs").rglob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0, res.experiment.root
    # the events hold the logged training loss
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(first.experiment.root / "runs"))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]


def test_user_tensorboard_dir_is_kept(tmp_path, monkeypatch):
    from simtune.experiment import Experiment
    monkeypatch.setattr(tracking, "_tb_dir_set_by_us", None)
    monkeypatch.setenv(tracking.TB_ENV, str(tmp_path / "mine"))
    assert tracking.use_tensorboard_dir(Experiment(tmp_path / "exp")) == str(tmp_path / "mine")
    assert os.environ[tracking.TB_ENV] == str(tmp_path / "mine")


@pytest.mark.parametrize("tracker", ["wandb", "swanlab", "trackio"])
def test_missing_tracker_package_is_a_config_error(tiny_model_dir, tmp_path, pr_file, monkeypatch, tracker):
    real = tracking._installed
    monkeypatch.setattr(tracking, "_installed", lambda m: False if m == tracker else real(m))
    args = tiny_args(tiny_model_dir, tmp_path, pr_file, "--max_steps", "1")
    args[args.index("--report_to") + 1] = f"tensorboard,{tracker}"
    cfg = SFTConfig.load(None, args)
    with pytest.raises(ConfigError, match=rf"command line: report_to: {tracker} needs the '{tracker}' package"):
        run_stage("sft", cfg)
    # nothing trained: no checkpoint, no metrics
    out = list((tmp_path / "out").rglob("checkpoint-*")) + list((tmp_path / "out").rglob("metrics.jsonl"))
    assert out == []
