"""What every stage shares: the experiment folder, data loading, TRL arguments, the
metrics log, checkpoints and resume, and saving the final model.

A stage module (``sft.py``, ``grpo.py``, ...) exposes ``run(ctx: StageContext) -> trainer``;
:func:`simtune.stages.run_stage` builds the context, calls it, and finishes the run.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtune.config import ConfigError
from simtune.stage_configs import TrainingConfig
from simtune.experiment import Experiment
from simtune.io import RejectLog, atomic_path, atomic_write_json

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainResult:
    experiment: Experiment
    final_model_dir: Path
    global_step: int
    metrics: dict = field(default_factory=dict)


@dataclass
class StageContext:
    stage: str
    cfg: TrainingConfig
    exp: Experiment
    callbacks: list = field(default_factory=list)
    reward_funcs: list | None = None
    train_dataset: Any = None
    eval_dataset: Any = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- devices

def has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def precision_flags(cfg: TrainingConfig) -> dict:
    """bf16/fp16 flags for TRL from cfg.mixed_precision: bf16 where the GPU has it; none on CPU."""
    import torch
    mp = cfg.mixed_precision
    if not has_cuda() or cfg.device == "cpu":
        if mp in ("bf16", "fp16"):
            log.warning("mixed_precision=%s asked for on a machine without CUDA: training in fp32", mp)
        return {"bf16": False, "fp16": False, "use_cpu": True}
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": mp == "bf16", "fp16": mp == "fp16", "use_cpu": False}


def use_liger(cfg: TrainingConfig) -> bool:
    """cfg.use_liger_kernel where it can work (a CUDA run with liger-kernel installed);
    otherwise False, with a warning saying why."""
    import importlib.util
    if not getattr(cfg, "use_liger_kernel", False):
        return False
    if not has_cuda() or cfg.device == "cpu":
        log.warning("use_liger_kernel ignored: Liger's kernels are Triton GPU kernels and this run has no CUDA device")
        return False
    if importlib.util.find_spec("liger_kernel") is None:
        log.warning("use_liger_kernel ignored: the liger-kernel package is not installed (pip install liger-kernel)")
        return False
    return True


# --------------------------------------------------------------------------- arguments

def trl_args(cfg: TrainingConfig, exp: Experiment, args_cls, **extra):
    """Map simtune's config onto a TRL/transformers config dataclass. Every key must be one of
    its fields: an unknown one is an error (ConfigError), never silently dropped."""
    import dataclasses
    early = cfg.early_stopping_patience is not None
    if early and cfg.eval_strategy == "no":
        raise ConfigError(f"{cfg.source_of('early_stopping_patience')}: early_stopping_patience needs "
                          "eval_strategy 'steps' or 'epoch' and an eval_file or eval_split")
    from simtune.tracking import check_report_to, use_tensorboard_dir
    report = check_report_to(cfg)
    kw: dict[str, Any] = dict(
        output_dir=str(exp.checkpoints_dir),
        seed=cfg.seed, data_seed=cfg.seed,
        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler_type if cfg.lr_scheduler_type != "constant" or cfg.warmup_ratio == 0
        else "constant_with_warmup",
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy=cfg.eval_strategy, eval_steps=cfg.eval_steps if cfg.eval_strategy == "steps" else None,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=early, metric_for_best_model=cfg.metric_for_best_model if early else None,
        greater_is_better=cfg.greater_is_better if early else None,
        report_to=report,
        dataloader_num_workers=0, disable_tqdm=False, remove_unused_columns=False, use_liger_kernel=use_liger(cfg),
        **precision_flags(cfg),
    )
    # transformers 5.2x renamed gradient_checkpointing (a deprecated alias now, with a FutureWarning)
    names = {f.name for f in dataclasses.fields(args_cls)}
    kw["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = \
        cfg.gradient_checkpointing
    if early and cfg.eval_strategy == "steps" and cfg.save_steps % cfg.eval_steps:
        kw["save_steps"] = cfg.eval_steps  # load_best_model_at_end needs aligned steps
    if report:
        kw["run_name"] = exp.root.name
    kw.update(extra)
    unknown = sorted(set(kw) - names)
    if unknown:  # a renamed field upstream must not turn a user's setting off without a word
        raise ConfigError(f"{args_cls.__module__}.{args_cls.__name__} has no field {', '.join(map(repr, unknown))}: "
                          "this version of TRL/transformers does not take a setting simtune passes on; install the "
                          "versions pyproject.toml names")
    if "tensorboard" in report:
        use_tensorboard_dir(exp)  # transformers 5 reads it from the environment when the trainer is built
    return args_cls(**kw)


# --------------------------------------------------------------------------- data

def load_data(ctx: StageContext, kind: str):
    """Train/eval datasets for ``kind`` from the config (unless given in the context)."""
    from simtune.data.formats import kind_for_stage, load_records, to_dataset
    cfg = ctx.cfg
    if ctx.train_dataset is not None:
        return ctx.train_dataset, ctx.eval_dataset
    kind = kind_for_stage(ctx.stage, kind)
    rejects = RejectLog(ctx.exp.root / "rejects.jsonl", strict=cfg.on_bad_record == "error")
    with rejects:
        train, kind, s_train = load_records(cfg.train_file, kind, rejects=rejects, max_samples=cfg.max_samples,
                                            prompt_template=cfg.prompt_template,
                                            response_template=cfg.response_template)
        summary = {"train": s_train}
        evald = None
        if cfg.eval_file:
            evald, _, s_eval = load_records(cfg.eval_file, kind, rejects=rejects,
                                            prompt_template=cfg.prompt_template,
                                            response_template=cfg.response_template)
            summary["eval"] = s_eval
        elif cfg.eval_split > 0:
            import random
            rng = random.Random(cfg.seed)
            idx = list(range(len(train)))
            rng.shuffle(idx)
            n_eval = max(1, int(round(len(train) * cfg.eval_split)))
            eval_idx = set(idx[:n_eval])
            evald = [r for i, r in enumerate(train) if i in eval_idx]
            train = [r for i, r in enumerate(train) if i not in eval_idx]
            summary["eval"] = {"from_train_split": n_eval}
    atomic_write_json(ctx.exp.root / "data_summary.json", summary)
    if rejects.total:
        log.warning("%d bad records rejected (see %s): %s", rejects.total, rejects.path, dict(rejects.counts))
    ctx.extra["data_kind"] = kind
    return to_dataset(train), (to_dataset(evald) if evald else None)


# --------------------------------------------------------------------------- model

def load_for_training(cfg: TrainingConfig, model_class=None):
    from simtune.models import apply_finetuning, count_parameters, load_model_and_tokenizer
    model, tok = load_model_and_tokenizer(cfg, device=None, for_training=True, model_class=model_class)
    model = apply_finetuning(model, cfg)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    n = count_parameters(model)
    log.info("model %s: %s parameters, %s trainable (%s)", cfg.model_name_or_path, f"{n['total']:,}",
             f"{n['trainable']:,}", cfg.finetuning_type)
    return model, tok


# --------------------------------------------------------------------------- callbacks

def metrics_callback(exp: Experiment):
    """Every dict the trainer logs goes to metrics.jsonl as one line with its step."""
    from transformers import TrainerCallback

    class MetricsJsonl(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                exp.log_metrics({k: v for k, v in logs.items()}, step=state.global_step)

    return MetricsJsonl()


def best_checkpoint_callback(exp: Experiment, metric: str, greater_is_better: bool):
    """Keep ``checkpoints/best`` = the model at the best value of a logged *training*
    metric (e.g. GRPO's ``reward``), saved atomically with a ``best.json`` beside it."""
    from transformers import TrainerCallback

    key = metric[len("train_"):] if metric.startswith("train_") else metric

    class BestByMetric(TrainerCallback):
        def __init__(self):
            self.best = None
            self.trainer = None

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or key not in logs or self.trainer is None:
                return
            val = float(logs[key])
            if math.isnan(val):
                return
            if self.best is None or (val > self.best if greater_is_better else val < self.best):
                self.best = val
                dest = exp.checkpoints_dir / "best"
                with atomic_path(dest, is_dir=True, command="train") as tmp:
                    self.trainer.save_model(str(tmp))
                    (tmp / "best.json").write_text(json.dumps({"metric": key, "value": val, "step": state.global_step}))

    return BestByMetric()


def early_stopping_callback(cfg: TrainingConfig):
    from transformers import EarlyStoppingCallback
    return EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)


# --------------------------------------------------------------------------- checkpoints

def complete_checkpoints(exp: Experiment, last_file: str = "trainer_state.json") -> list[tuple[int, Path]]:
    """Checkpoints that finished writing (``last_file``, a JSON file, is written last: the
    Trainer's trainer_state.json, or tree GRPO's state.json), oldest first."""
    out = []
    if exp.checkpoints_dir.is_dir():
        for p in exp.checkpoints_dir.iterdir():
            m = _CKPT.match(p.name)
            if m and p.is_dir() and (p / last_file).is_file():
                try:
                    json.loads((p / last_file).read_text())
                except (json.JSONDecodeError, OSError):
                    continue
                out.append((int(m.group(1)), p))
    return sorted(out)


def resume_checkpoint(ctx: StageContext) -> str | None:
    if not ctx.cfg.resume:
        return None
    ckpts = complete_checkpoints(ctx.exp)
    if not ckpts:
        log.warning("resume: no complete checkpoint in %s; starting from step 0", ctx.exp.checkpoints_dir)
        return None
    step, path = ckpts[-1]
    # the metric history after this checkpoint will be logged again: cut it so it stays unbroken
    truncate_metrics(ctx.exp, step)
    log.info("resuming from %s (step %d)", path, step)
    return str(path)


def truncate_metrics(exp: Experiment, step: int) -> None:
    rows = [r for r in exp.read_metrics() if r.get("step") is None or r["step"] <= step]
    # the step-`step` entries were logged before the checkpoint was taken: keep them
    with atomic_path(exp.metrics_path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# --------------------------------------------------------------------------- finishing

def save_final(trainer, tok, exp: Experiment, extra_files=None) -> Path:
    """Save the final model (an adapter for LoRA) and tokenizer, atomically;
    ``extra_files(folder)`` writes what a recipe keeps beside the weights (in the same move)."""
    with atomic_path(exp.final_model_dir, is_dir=True, command="train") as tmp:
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        if extra_files is not None:
            extra_files(tmp)
    return exp.final_model_dir


class AuditCollator:
    """Wraps a data collator to record a hash of every example this process trains on
    (``SIMTUNE_AUDIT_DIR``): evidence that data-parallel ranks saw disjoint data."""

    def __init__(self, collator, seen: list):
        self.collator, self.seen = collator, seen

    def __call__(self, examples):
        import hashlib
        for ex in examples:
            ids = ex.get("input_ids") if isinstance(ex, dict) else None
            if ids is not None:
                self.seen.append(hashlib.sha1(json.dumps(list(map(int, ids))).encode()).hexdigest()[:16])
        return self.collator(examples)


def write_audit(trainer, seen: list, audit_dir: str) -> None:
    import hashlib
    import os
    h = hashlib.sha256()
    for name, p in sorted(trainer.model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    rank = int(os.environ.get("RANK", "0"))
    Path(audit_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(audit_dir) / f"rank{rank}.json",
                      {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "examples": seen,
                       "param_sha256": h.hexdigest(), "global_step": trainer.state.global_step})


def compact_progress():
    """The Trainer's progress bar, with the latest losses and reward as its postfix instead of
    a raw dict printed at every log step (every logged figure is in metrics.jsonl)."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {k: f"{v:.4g}" for k, v in logs.items()
                         if isinstance(v, (int, float)) and (k.endswith("loss") or k == "reward")}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    return CompactProgress()


def train_and_finish(ctx: StageContext, trainer, tok, extra_files=None) -> TrainResult:
    import os

    from transformers.trainer_callback import ProgressCallback
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(compact_progress())
    audit_dir = os.environ.get("SIMTUNE_AUDIT_DIR")
    seen: list = []
    if audit_dir and trainer.data_collator is not None:
        trainer.data_collator = AuditCollator(trainer.data_collator, seen)
    for cb in ctx.callbacks:
        trainer.add_callback(cb)
    for cb in trainer.callback_handler.callbacks:
        if hasattr(cb, "trainer") and getattr(cb, "trainer", 1) is None:
            cb.trainer = trainer
    ckpt = resume_checkpoint(ctx)
    out = trainer.train(resume_from_checkpoint=ckpt)
    if audit_dir:
        write_audit(trainer, seen, audit_dir)
    if not trainer.is_world_process_zero():
        return TrainResult(ctx.exp, ctx.exp.final_model_dir, trainer.state.global_step, dict(out.metrics))
    final = save_final(trainer, tok, ctx.exp, extra_files)
    metrics = dict(out.metrics)
    atomic_write_json(ctx.exp.root / "train_result.json", {"global_step": trainer.state.global_step, **metrics})
    return TrainResult(ctx.exp, final, trainer.state.global_step, metrics)
