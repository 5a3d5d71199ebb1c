"""SFT: TRL's SFTTrainer on prompt/completion (chat) pairs or text; loss on the response."""
from __future__ import annotations

from simtune.config import ConfigError
from simtune.stages.common import (StageContext, TrainResult, early_stopping_callback, load_data,
                                   load_for_training, metrics_callback, train_and_finish, trl_args)


_SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def labelled_positions_only(model) -> bool:
    """On CPU, make the LM head of TRL's loss project only the positions that have a label.

    TRL's fused LM head (``model(..., fused_lm_head=True)``, from its SFTTrainer) scores only
    the labelled positions on Triton devices, but *every* position elsewhere (fixed tile
    shapes for compilers), so on CPU each prompt and pad token costs a vocabulary-wide
    projection, softmax and backward as if it had a label. This wraps that forward: on CPU
    (other devices keep TRL's head as it is) the labelled positions are gathered first and
    run through the same TRL kernel; loss, gradients and logged metrics are unchanged.
    Models whose logits are scaled or capped, or that return router logits, keep TRL's
    head. Returns whether the wrapper was applied."""
    import types

    try:
        from trl.kernels import ChunkedLogProbFunction
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = base.config.get_text_config()
    if any(getattr(text, k, None) is not None for k in _SCALED_LOGITS) or getattr(text, "output_router_logits", False):
        return False
    trl_forward = base.forward

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kw):
        head = self.get_output_embeddings()
        if not fused_lm_head or labels is None or shift_labels is not None or head.weight.device.type != "cpu":
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kw)
        kw["use_cache"] = False
        hidden = self.base_model(*args, **kw).last_hidden_state[:, :-1]
        labels = labels[:, 1:].to(head.weight.device)
        mask = labels != -100
        per_token = ChunkedLogProbFunction.apply(hidden.to(head.weight.device)[mask], head.weight, head.bias,
                                                 labels[mask], 1.0, 32768, None, 1.0, ("log_probs", "entropy", "is_top1"))
        log_probs, entropy, _, _, is_top1 = (None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x)
                                             for x in per_token)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, is_top1=is_top1, label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True


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
    if getattr(cfg, "labelled_positions_only", False):
        labelled_positions_only(trainer.model)
    if len(trainer.train_dataset) == 0:
        raise ConfigError(f"{cfg.source_of('max_length')}: all {len(train_ds)} training examples lost their response "
                          f"to truncation at max_length={args.max_length}; raise max_length or shorten the prompts")
    count_truncated_away(ctx, len(train_ds), len(trainer.train_dataset), args.max_length)
    return trainer, tok


def count_truncated_away(ctx: StageContext, before: int, after: int, max_length: int) -> None:
    """TRL drops the examples whose whole response lies past ``max_length`` (nothing left to
    learn from); that loss is counted in data_summary.json and said, never silent."""
    import json
    import logging

    from simtune.io import atomic_write_json
    path = ctx.exp.root / "data_summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    summary["dropped_response_truncated"] = before - after
    atomic_write_json(path, summary)
    if before > after:
        logging.getLogger(__name__).warning(
            "%d of %d training examples are not trained on: their whole response lies past max_length=%d "
            "(raise max_length or shorten the prompts); counted in %s", before - after, before, max_length, path)


def run(ctx: StageContext) -> TrainResult:
    trainer, tok = build_trainer(ctx)
    return train_and_finish(ctx, trainer, tok)
