"""Offline logit distillation, teacher -> student (TRL has no trainer for this one).

A :class:`DistillTrainer` (an ``SFTTrainer``, so data handling, response-only labels and
packing are SFT's) whose loss is

    kd_alpha * KD(student, teacher) + (1 - kd_alpha) * SFT cross-entropy

with ``KD = create_loss("kd", temperature=kd_temperature, direction=kd_direction)``:
forward KL(teacher||student) or reverse, at temperature T, scaled by T^2, averaged over
the response tokens only (the positions the SFT labels keep). The teacher is frozen, in
eval mode and run under ``torch.no_grad``. Student and teacher must share a tokenizer:
the vocabularies are compared before anything trains.
"""
from __future__ import annotations

import logging

from simtune.config import ConfigError
from simtune.stages.common import (StageContext, TrainResult, early_stopping_callback, load_data,
                                   load_for_training, metrics_callback, train_and_finish, trl_args)

log = logging.getLogger(__name__)


def _trainer_class():
    import torch
    from trl import SFTTrainer

    from simtune.losses import create_loss

    class DistillTrainer(SFTTrainer):
        def __init__(self, *a, teacher, kd_alpha: float, kd_temperature: float, kd_direction: str,
                     vocab_size: int, **kw):
            super().__init__(*a, **kw)
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            self.teacher = teacher.to(self.accelerator.device)
            self.kd_alpha = kd_alpha
            self.vocab_size = vocab_size
            self.kd_loss = create_loss("kd", temperature=kd_temperature, direction=kd_direction)
            self.ce_loss = create_loss("sft", label_smoothing=0.0)
            # compute_loss returns a per-batch mean: let Trainer divide by the accumulation steps
            self.model_accepts_loss_kwargs = False
            self.loss_is_scaled_for_ga = False

        def distill_losses(self, model, inputs):
            """``(kd, ce, student_outputs)`` for one batch."""
            labels = inputs["labels"]
            fwd = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
            out = model(**fwd, use_cache=False)
            with torch.no_grad():
                self.teacher.eval()
                t_logits = self.teacher(**fwd, use_cache=False).logits
            n = self.vocab_size  # padded embedding rows beyond the tokenizer are never targets
            s_logits = out.logits[..., :n]
            t_logits = t_logits[..., :n].to(s_logits.device)
            mask = labels[:, 1:] != -100  # logits at t predict token t+1: response positions only
            kd = self.kd_loss(s_logits[:, :-1], t_logits[:, :-1], mask)
            ce = self.ce_loss(s_logits, labels)
            return kd, ce, out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if model.training else "eval"
            kd, ce, out = self.distill_losses(model, inputs)
            loss = self.kd_alpha * kd + (1.0 - self.kd_alpha) * ce
            self._metrics[mode]["kd_loss"].append(kd.detach().item())
            self._metrics[mode]["ce_loss"].append(ce.detach().item())
            # evaluation asks for outputs: hand back no logits, so no (batch, seq, vocab) tensors pile up
            return (loss, {"loss": loss.detach()}) if return_outputs else loss

    return DistillTrainer


def check_same_tokenizer(student_tok, teacher_tok, cfg) -> int:
    """The vocabulary both models share (its size); ConfigError when they differ."""
    src = cfg.source_of("teacher_model_name_or_path")
    if len(student_tok) != len(teacher_tok):
        raise ConfigError(f"{src}: teacher_model_name_or_path '{cfg.teacher_model_name_or_path}' has a tokenizer of "
                          f"{len(teacher_tok)} tokens but the student '{cfg.model_name_or_path}' has {len(student_tok)}; "
                          "logit distillation needs the same tokenizer")
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        sv, tv = student_tok.get_vocab(), teacher_tok.get_vocab()
        diff = next((t for t in sv if tv.get(t) != sv[t]), "?")
        raise ConfigError(f"{src}: teacher_model_name_or_path '{cfg.teacher_model_name_or_path}' and the student have "
                          f"vocabularies of the same size that map tokens differently (e.g. {diff!r}); "
                          "logit distillation needs the same tokenizer")
    return len(student_tok)


def load_teacher(cfg, student_tok, student_model):
    from simtune.models import load_model, load_tokenizer
    teacher_tok = load_tokenizer(cfg.teacher_model_name_or_path, gguf_file=cfg.teacher_gguf_file,
                                 trust_remote_code=cfg.trust_remote_code)
    n = check_same_tokenizer(student_tok, teacher_tok, cfg)
    teacher = load_model(cfg.teacher_model_name_or_path, gguf_file=cfg.teacher_gguf_file, dtype=cfg.teacher_dtype,
                         device=None, trust_remote_code=cfg.trust_remote_code)
    for who, m in (("teacher", teacher), ("student", student_model)):
        rows = m.get_output_embeddings().weight.shape[0] if m.get_output_embeddings() is not None else None
        if rows is not None and rows < n:
            raise ConfigError(f"{cfg.source_of('teacher_model_name_or_path')}: the {who} has {rows} output rows "
                              f"for a tokenizer of {n} tokens")
    return teacher, n


def build_trainer(ctx: StageContext):
    from trl import SFTConfig as TRLSFTConfig

    cfg = ctx.cfg
    if not cfg.teacher_model_name_or_path:
        raise ConfigError(f"{cfg.source_of('teacher_model_name_or_path')}: distill needs teacher_model_name_or_path")
    train_ds, eval_ds = load_data(ctx, cfg.data_format)
    model, tok = load_for_training(cfg)
    teacher, n = load_teacher(cfg, tok, model)
    args = trl_args(cfg, ctx.exp, TRLSFTConfig, max_length=cfg.max_length, packing=False,
                    completion_only_loss=None if ctx.extra.get("data_kind") == "text" else True,
                    dataset_num_proc=None)
    callbacks = [metrics_callback(ctx.exp)]
    if cfg.early_stopping_patience is not None:
        callbacks.append(early_stopping_callback(cfg))
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tok, callbacks=callbacks, teacher=teacher, kd_alpha=cfg.kd_alpha,
                               kd_temperature=cfg.kd_temperature, kd_direction=cfg.kd_direction, vocab_size=n)
    return trainer, tok


def run(ctx: StageContext) -> TrainResult:
    trainer, tok = build_trainer(ctx)
    return train_and_finish(ctx, trainer, tok)
