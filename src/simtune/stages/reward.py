"""Reward model: TRL's RewardTrainer on prompt/chosen/rejected pairs (pairwise loss
``-logsigmoid(r_chosen - r_rejected)``), a sequence-classification head with one output.

LoRA / QLoRA use the SEQ_CLS task type with the ``score`` head fully trainable (it starts
random); freeze keeps the head trainable too. Logged per step: ``loss``, ``accuracy``
(share of pairs ranked right) and ``margin`` (mean r_chosen - r_rejected).
"""
from __future__ import annotations

from simtune.stages.common import (StageContext, TrainResult, early_stopping_callback, load_data,
                                   metrics_callback, train_and_finish, trl_args)
from simtune.stages.dpo import load_policy

HEAD = "score"


class RewardHead:
    """``model_class`` for the loader: a sequence classifier with a single output (the reward)."""

    @staticmethod
    def from_pretrained(path, **kw):
        from transformers import AutoModelForSequenceClassification
        kw["num_labels"] = 1
        return AutoModelForSequenceClassification.from_pretrained(path, **kw)


def load_reward_model(cfg):
    model, tok, peft_config = load_policy(cfg, model_class=RewardHead, task_type="SEQ_CLS", modules_to_save=[HEAD])
    if peft_config is None:
        for name, p in model.named_parameters():  # freeze must not freeze the new head
            if name.startswith(HEAD + ".") or f".{HEAD}." in name:
                p.requires_grad_(True)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok, peft_config


def run(ctx: StageContext) -> TrainResult:
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    cfg = ctx.cfg
    train_ds, eval_ds = load_data(ctx, "preference")
    model, tok, peft_config = load_reward_model(cfg)
    args = trl_args(cfg, ctx.exp, TRLRewardConfig, max_length=cfg.max_length,
                    center_rewards_coefficient=cfg.center_rewards_coefficient, dataset_num_proc=None)
    callbacks = [metrics_callback(ctx.exp)]
    if cfg.early_stopping_patience is not None:
        callbacks.append(early_stopping_callback(cfg))
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                            processing_class=tok, callbacks=callbacks, peft_config=peft_config)
    return train_and_finish(ctx, trainer, tok)
