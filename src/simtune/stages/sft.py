"""SFT: TRL's SFTTrainer on prompt/completion (chat) pairs or text; loss on the response."""
from __future__ import annotations

from simtune.config import ConfigError
from simtune.stages.common import (StageContext, TrainResult, early_stopping_callback, load_data,
                                   load_for_training, metrics_callback, train_and_finish, trl_args)


def build_trainer(ctx: StageContext, *, text_only: bool = False, max_length: int | None = None,
                  packing: bool | None = None):
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    cfg = ctx.cfg
    train_ds, eval_ds = load_data(ctx, "text" if text_only else cfg.data_format)
    model, tok = load_for_training(cfg)
    packing = getattr(cfg, "packing", False) if packing is None else packing
    extra = dict(max_length=max_length or cfg.max_length, packing=packing,
                 completion_only_loss=None if text_only else getattr(cfg, "completion_only_loss", True),
                 label_smoothing_factor=getattr(cfg, "label_smoothing", 0.0),
                 dataset_num_proc=None)
    if getattr(cfg, "group_by_length", False) and not packing:
        extra["train_sampling_strategy"] = "group_by_length"
    args = trl_args(cfg, ctx.exp, TRLSFTConfig, **extra)
    callbacks = [metrics_callback(ctx.exp)]
    if cfg.early_stopping_patience is not None:
        callbacks.append(early_stopping_callback(cfg))
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, callbacks=callbacks)
    if len(trainer.train_dataset) == 0:
        raise ConfigError(f"{cfg.source_of('max_length')}: all {len(train_ds)} training examples lost their response "
                          f"to truncation at max_length={args.max_length}; raise max_length or shorten the prompts")
    return trainer, tok


def run(ctx: StageContext) -> TrainResult:
    trainer, tok = build_trainer(ctx)
    return train_and_finish(ctx, trainer, tok)
