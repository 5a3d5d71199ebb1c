"""Experiment folders: ``outputs/<recipe>/<name>_<YYYYMMDD_HHMMSS>/`` holding the resolved
config, ``checkpoints/``, ``metrics.jsonl``, ``samples/`` and ``final_model/``.
"""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from simtune.config import ConfigError
from simtune.io import is_within
from simtune.io import atomic_write_text

_STAMP = re.compile(r"_(\d{8}_\d{6})(?:_\d+)?$")


def _recipe_folder(recipe: str, output_root: str | os.PathLike) -> Path:
    """``output_root/recipe``, refused when a symbolic link there leads outside output_root."""
    base = Path(output_root) / recipe
    if not is_within(base, Path(output_root)):
        raise ConfigError(f"recipe '{recipe}': {base} is a symbolic link that leads outside output_root "
                          f"{output_root} (to {base.resolve()}); set output_root to where runs should go")
    return base


class Experiment:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- layout
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def final_model_dir(self) -> Path:
        return self.root / "final_model"

    def __repr__(self) -> str:
        return f"Experiment({str(self.root)!r})"

    # -- creation and lookup
    @classmethod
    def create(cls, recipe: str, name: str, output_root: str | os.PathLike = "outputs", config: Any = None,
               output_dir: str | os.PathLike | None = None) -> "Experiment":
        if output_dir:
            root = Path(output_dir)
        else:
            for part, label in ((recipe, "recipe"), (name, "run_name")):
                if not part or "/" in part or "\\" in part or "\0" in part or part in (".", ".."):
                    raise ConfigError(f"{label} '{part}' must be a plain name (no path separators)")
            _recipe_folder(recipe, output_root)
            stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
            root = Path(output_root) / recipe / f"{name}_{stamp}"
            n = 1
            while root.exists():  # two runs in the same second
                root = Path(output_root) / recipe / f"{name}_{stamp}_{n}"
                n += 1
        exp = cls(root)
        for d in (exp.root, exp.checkpoints_dir, exp.samples_dir):
            d.mkdir(parents=True, exist_ok=True)
        if config is not None:
            exp.save_config(config)
        return exp

    @classmethod
    def latest(cls, recipe: str, name: str, output_root: str | os.PathLike = "outputs") -> "Experiment | None":
        base = _recipe_folder(recipe, output_root)
        if not base.is_dir():
            return None
        runs = [p for p in base.iterdir() if p.is_dir() and p.name.startswith(name + "_") and _STAMP.search(p.name)
                and p.name[len(name) + 1:len(name) + 16] == _STAMP.search(p.name).group(1)]
        return cls(max(runs, key=lambda p: p.name)) if runs else None

    @classmethod
    def for_config(cls, cfg) -> "Experiment":
        """The experiment a training config asks for: a given output_dir, the newest run of
        the same name when resuming, or a new timestamped folder (in a multi-process launch,
        one folder that rank 0 creates and the other ranks read)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not cfg.output_dir:
            return cls._shared_for_launch(cfg)
        return cls._for_config_local(cfg)

    @classmethod
    def _for_config_local(cls, cfg) -> "Experiment":
        if cfg.output_dir:
            return cls.create(cfg.recipe, cfg.run_name, cfg.output_root, config=cfg, output_dir=cfg.output_dir)
        if cfg.resume:
            exp = cls.latest(cfg.recipe, cfg.run_name, cfg.output_root)
            if exp is None:
                raise ConfigError(f"resume: no earlier run '{cfg.run_name}' under {Path(cfg.output_root) / cfg.recipe}")
            return exp
        return cls.create(cfg.recipe, cfg.run_name, cfg.output_root, config=cfg)

    @classmethod
    def _shared_for_launch(cls, cfg, timeout_s: float = 600.0) -> "Experiment":
        """torchrun / accelerate launch start N copies of the command: rank 0 decides the
        folder and leaves its path in a launch file keyed by the launch; the others wait."""
        import hashlib
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        if not run_id or run_id == "none":
            run_id = f"ppid{os.getppid()}"
        key = hashlib.sha1(f"{run_id}|{os.environ.get('MASTER_ADDR')}|{os.environ.get('MASTER_PORT')}".encode()).hexdigest()[:16]
        note = Path(cfg.output_root) / cfg.recipe / f".launch-{key}"
        if int(os.environ.get("RANK", "0")) == 0:
            exp = cls._for_config_local(cfg)
            atomic_write_text(note, str(exp.root))
            return exp
        deadline = time.time() + timeout_s
        while not note.is_file():
            if time.time() > deadline:
                raise ConfigError(f"rank {os.environ.get('RANK')}: rank 0 did not create the experiment folder "
                                  f"within {timeout_s:.0f}s ({note})")
            time.sleep(0.2)
        return cls(note.read_text().strip())

    # -- contents
    def save_config(self, config: Any) -> None:
        text = config.to_yaml() if hasattr(config, "to_yaml") else json.dumps(config, indent=2, default=str)
        atomic_write_text(self.config_path, text)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        rec = {"step": step, "time": time.time(), **metrics} if step is not None else {"time": time.time(), **metrics}
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False, default=float) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        out = []
        with open(self.metrics_path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line from a kill: ignore it, it was never complete
                    continue
        return out

    def write_samples(self, name: str, rows: Iterable[dict]) -> Path:
        path = self.samples_dir / name
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        return path
