"""SFT speed options change the work done, not the training: the same losses, gradients
and logged metrics with the option on and off."""
import pytest
import torch

from simtune.stage_configs import SFTConfig
from simtune.stages import run_stage

from stage_utils import tiny_args


def _logged(tiny_model_dir, tmp_path, pr_file, name, *extra):
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path / name, pr_file, "--max_steps", "4",
                                         "--learning_rate", "3e-3", "--save_steps", "100", *extra))
    return [m for m in run_stage("sft", cfg).experiment.read_metrics() if "loss" in m and "train_runtime" not in m]


def test_labelled_positions_only_leaves_the_loss_curve_unchanged(tiny_model_dir, tmp_path, pr_file):
    on = _logged(tiny_model_dir, tmp_path, pr_file, "on", "--labelled_positions_only", "true")
    off = _logged(tiny_model_dir, tmp_path, pr_file, "off", "--labelled_positions_only", "false")
    assert len(on) == len(off) == 4
    for a, b in zip(on, off):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)          # 4 steps: the weights moved alike
        assert a["mean_token_accuracy"] == pytest.approx(b["mean_token_accuracy"], abs=1e-6)
        assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-4)
        assert a["num_tokens"] == b["num_tokens"]                        # the same real tokens
    assert on[0]["loss"] > on[-1]["loss"]                                # and it trains


def test_labelled_positions_only_projects_only_the_response(tiny_model_dir, tmp_path, pr_file):
    """The LM head of the loss sees as many rows as there are labelled tokens, with the same
    loss and gradients as TRL's head over every position."""
    from simtune.experiment import Experiment
    from simtune.stages.common import StageContext
    from simtune.stages.sft import build_trainer

    def trainer_and_batch(flag):
        cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path / str(flag), pr_file, "--max_steps", "1",
                                             "--labelled_positions_only", str(flag)))
        trainer, _ = build_trainer(StageContext("sft", cfg, Experiment.for_config(cfg)))
        return trainer, next(iter(trainer.get_train_dataloader()))

    from unittest import mock

    from trl.kernels import ChunkedLogProbFunction
    real_apply = ChunkedLogProbFunction.apply
    results = {}
    for flag in (True, False):
        trainer, batch = trainer_and_batch(flag)
        head_rows = []

        def spy(hidden, *a):
            head_rows.append(hidden.shape[0])
            return real_apply(hidden, *a)
        with mock.patch.object(ChunkedLogProbFunction, "apply", spy):
            loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        results[flag] = (float(loss.detach()), grads, head_rows, batch)
    (l_on, g_on, rows_on, batch), (l_off, g_off, rows_off, batch_off) = results[True], results[False]
    assert torch.equal(batch["input_ids"], batch_off["input_ids"])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert rows_on == [labelled] and rows_off == [batch["labels"][:, 1:].numel()] and labelled < rows_off[0]
    assert l_on == pytest.approx(l_off, rel=1e-5)
    assert g_on.keys() == g_off.keys() and g_on
    for n in g_on:
        torch.testing.assert_close(g_on[n], g_off[n], rtol=1e-4, atol=1e-6)
