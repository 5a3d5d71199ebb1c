"""Continued pretraining: raw text packed into ``block_size`` token blocks, loss on all tokens."""
from __future__ import annotations

from simtune.stages.common import StageContext, TrainResult, train_and_finish
from simtune.stages.sft import build_trainer


def run(ctx: StageContext) -> TrainResult:
    cfg = ctx.cfg
    trainer, tok = build_trainer(ctx, text_only=True, max_length=cfg.block_size, packing=True)
    return train_and_finish(ctx, trainer, tok)
