"""Training stages, each a thin layer over TRL / transformers.

``run_stage(stage, cfg)`` makes the experiment folder, loads data and model, trains,
and saves; each stage module only builds its trainer. See common.py for what they share.
"""
from __future__ import annotations

import importlib
import logging

from simtune.config import ConfigError, TrainingConfig
from simtune.stages.common import StageContext, TrainResult

STAGES = {
    "cpt": "simtune.stages.cpt",
    "sft": "simtune.stages.sft",
    "grpo": "simtune.stages.grpo",
    "reward": "simtune.stages.reward",
    "dpo": "simtune.stages.dpo",
    "distill": "simtune.stages.distill",
}

__all__ = ["run_stage", "TrainResult", "STAGES"]


def run_stage(stage: str, cfg: TrainingConfig, *, reward_funcs=None, callbacks=None,
              train_dataset=None, eval_dataset=None) -> TrainResult:
    """Train ``stage`` with ``cfg``; returns where the results went."""
    from transformers import set_seed

    from simtune.experiment import Experiment
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(cfg.seed)
    exp = Experiment.for_config(cfg)
    ctx = StageContext(stage=stage, cfg=cfg, exp=exp, callbacks=list(callbacks or []), reward_funcs=reward_funcs,
                       train_dataset=train_dataset, eval_dataset=eval_dataset)
    module = importlib.import_module(STAGES[stage])
    return module.run(ctx)


def cli_train(argv: list[str]) -> int:
    """`simtune train <stage> [--config FILE] [--key value ...]`"""
    from simtune.config import STAGE_CONFIGS
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: simtune train <stage> [--config FILE] [--key value ...]\nstages: " + ", ".join(STAGES))
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGES)}")
    cfg = STAGE_CONFIGS[stage].from_argv(rest, usage=f"usage: simtune train {stage} [--config FILE] [--key value ...]")
    if cfg is None:
        return 0
    result = run_stage(stage, cfg)
    print(f"done: {result.global_step} steps; experiment {result.experiment.root}; model {result.final_model_dir}")
    return 0
