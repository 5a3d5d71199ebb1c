"""Experiment trackers: metrics.jsonl always; TensorBoard by default; W&B, SwanLab and
trackio when ``report_to`` names them.

A tracker whose package is missing is a :class:`~simtune.config.ConfigError` naming the
package and the key ``report_to`` *before* any model loads or step runs. TensorBoard
event files go to ``<experiment>/runs/`` (unless the user set TENSORBOARD_LOGGING_DIR).
Offline use: WANDB_MODE=offline (sync later with ``wandb sync``), SWANLAB_MODE=local or
offline, and trackio logs locally by default (TRACKIO_DIR sets where).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from simtune.config import ConfigError

# report_to value -> (module to import, pip name)
TRACKERS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "swanlab": (("swanlab",), "swanlab"),
    "trackio": (("trackio",), "trackio"),
}
TB_ENV = "TENSORBOARD_LOGGING_DIR"
_tb_dir_set_by_us: str | None = None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_report_to(cfg) -> list[str]:
    """The trackers to report to (without 'none'); ConfigError for one not installed."""
    src = cfg.source_of("report_to") if hasattr(cfg, "source_of") else "config"
    out = []
    for name in cfg.report_to:
        if name == "none":
            continue
        if name not in TRACKERS:
            raise ConfigError(f"{src}: 'report_to' must be among {sorted(TRACKERS) + ['none']}, got {name!r}")
        modules, pip_name = TRACKERS[name]
        if not any(_installed(m) for m in modules):
            raise ConfigError(f"{src}: report_to: {name} needs the '{pip_name}' package, which is not installed "
                              f"(pip install {pip_name}), or remove '{name}' from 'report_to'")
        out.append(name)
    return out


def tensorboard_dir(exp) -> Path:
    return Path(exp.root) / "runs"


def use_tensorboard_dir(exp) -> str:
    """Point transformers' TensorBoard callback at this experiment's ``runs/`` folder.

    transformers 5 reads TENSORBOARD_LOGGING_DIR when the trainer is built. A value the
    user set is kept; one simtune set for an earlier run in this process is replaced.
    """
    global _tb_dir_set_by_us
    current = os.environ.get(TB_ENV)
    if current is not None and current != _tb_dir_set_by_us:
        return current  # the user's own choice
    path = str(tensorboard_dir(exp))
    os.environ[TB_ENV] = path
    _tb_dir_set_by_us = path
    return path
