"""Training stages, each a thin layer over TRL / transformers.

``run_stage(stage, cfg)`` makes the experiment folder, loads data and model, trains,
and saves; each stage module only builds its trainer. See common.py for what they share.
"""
from __future__ import annotations

import importlib
import logging

from simtune.config import ConfigError
from simtune.stage_configs import TrainingConfig
from simtune.stages.common import StageContext, TrainResult

STAGES = {
    "cpt": "simtune.stages.cpt",
    "sft": "simtune.stages.sft",
    "grpo": "simtune.stages.grpo",
    "reward": "simtune.stages.reward",
    "dpo": "simtune.stages.dpo",
    "distill": "simtune.stages.distill",
}

__all__ = ["run_stage", "TrainResult", "STAGES", "train_command"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_stage(stage: str, cfg: TrainingConfig, *, reward_funcs=None, callbacks=None,
              train_dataset=None, eval_dataset=None) -> TrainResult:
    """Train ``stage`` with ``cfg``; returns where the results went."""
    from transformers import set_seed

    from simtune.experiment import Experiment
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGES)}")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    set_seed(cfg.seed)
    exp = Experiment.for_config(cfg)
    ctx = StageContext(stage=stage, cfg=cfg, exp=exp, callbacks=list(callbacks or []), reward_funcs=reward_funcs,
                       train_dataset=train_dataset, eval_dataset=eval_dataset)
    module = importlib.import_module(STAGES[stage])
    return module.run(ctx)


def cli_train(argv: list[str]) -> int:
    """`simtune train <stage> [--config FILE] [--key value ...]`"""
    from simtune.stage_configs import STAGE_CONFIGS
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: simtune train <stage> [--config FILE] [--key value ...]\nstages: " + ", ".join(STAGES))
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGES)}")
    return train_command(STAGE_CONFIGS[stage], lambda cfg: run_stage(stage, cfg), rest,
                         f"usage: simtune train {stage} [--config FILE] [--key value ...]")


def train_command(config_cls, train, argv: list[str], usage: str) -> int:
    """A `simtune train ...` command: the config from ``argv`` (None for --help), ``train(cfg)``
    with INFO logging, and where the results went."""
    cfg = config_cls.from_argv(argv, usage=usage)
    if cfg is None:
        return 0
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    result = train(cfg)
    print(f"done: {result.global_step} steps; experiment {result.experiment.root}; model {result.final_model_dir}")
    return 0
