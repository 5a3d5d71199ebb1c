"""A run stopped mid-way and resumed reaches the same step, parameters and metric history
as a run never interrupted (CPU, fixed seed)."""
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from simtune.stage_configs import SFTConfig
from simtune.stages import run_stage
from simtune.stages.common import complete_checkpoints

from stage_utils import tiny_args


class Crash(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_resume_matches_uninterrupted(tiny_model_dir, tmp_path, pr_file):
    common = ["--max_steps", "8", "--save_steps", "3", "--learning_rate", "2e-3", "--eval_strategy", "no"]
    full = run_stage("sft", SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path / "a", pr_file, *common)))

    out = tmp_path / "b" / "exp"
    args = tiny_args(tiny_model_dir, tmp_path / "b", pr_file, *common, "--output_dir", str(out))
    with pytest.raises(KeyboardInterrupt):
        run_stage("sft", SFTConfig.load(None, args), callbacks=[Crash(at=7)])
    # simulate a kill while checkpoint-6 was being written: it has no trainer_state.json
    (out / "checkpoints" / "checkpoint-6" / "trainer_state.json").unlink()
    assert [s for s, _ in complete_checkpoints(type(full.experiment)(out))] == [3]
    resumed = run_stage("sft", SFTConfig.load(None, args + ["--resume"]))

    assert resumed.global_step == full.global_step == 8
    a = load_file(full.final_model_dir / "model.safetensors")
    b = load_file(resumed.final_model_dir / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    steps = lambda exp: [(m["step"], round(m["loss"], 4)) for m in exp.read_metrics() if "loss" in m]
    assert steps(resumed.experiment) == steps(full.experiment)
