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
    from simtune.config import STAGE_CONFIGS, load_stage_config
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: simtune train <stage> [--config FILE] [--key value ...]\nstages: " + ", ".join(STAGES))
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGES)}")
    if "-h" in rest or "--help" in rest:
        print(f"usage: simtune train {stage} [--config FILE] [--key value ...]\n\noptions:\n"
              + STAGE_CONFIGS[stage].help_text())
        return 0
    path = None
    if "--config" in rest:
        i = rest.index("--config")
        if i + 1 >= len(rest):
            raise ConfigError("command line: --config needs a file")
        path = rest[i + 1]
        rest = rest[:i] + rest[i + 2:]
    else:
        for i, tok in enumerate(rest):
            if tok.startswith("--config="):
                path = tok.split("=", 1)[1]
                rest = rest[:i] + rest[i + 1:]
                break
    cfg = load_stage_config(stage, path, rest)
    result = run_stage(stage, cfg)
    print(f"done: {result.global_step} steps; experiment {result.experiment.root}; model {result.final_model_dir}")
    return 0
