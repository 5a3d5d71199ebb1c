"""DPO: TRL's DPOTrainer on prompt/chosen/rejected pairs (``beta``, ``loss_type``).

The reference model: for full / freeze fine-tuning, a second frozen copy of the starting
model loaded with simtune's own loader (so a .gguf or 'default' start works too); for
LoRA / QLoRA, the base model with the adapters switched off (TRL builds the adapters from
``peft_config`` and needs no second copy).
"""
from __future__ import annotations

import logging

from simtune.stages.common import (StageContext, TrainResult, early_stopping_callback, load_data,
                                   metrics_callback, train_and_finish, trl_args)

log = logging.getLogger(__name__)


def load_policy(cfg, model_class=None, task_type: str = "CAUSAL_LM", modules_to_save: list | None = None):
    """``(model, tokenizer, peft_config)``: for LoRA/QLoRA the *unwrapped* base model and a
    LoraConfig for the TRL trainer to apply; otherwise the model with the fine-tuning type
    applied (full or freeze) and ``None``."""
    from simtune.models import apply_finetuning, count_parameters, load_model_and_tokenizer, lora_config
    model, tok = load_model_and_tokenizer(cfg, device=None, for_training=True, model_class=model_class)
    peft_config = None
    if cfg.finetuning_type in ("lora", "qlora"):
        if cfg.finetuning_type == "qlora":
            from peft import prepare_model_for_kbit_training
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        peft_config = lora_config(cfg)
        peft_config.task_type = task_type
        if modules_to_save:
            peft_config.modules_to_save = list(modules_to_save)
    else:
        model = apply_finetuning(model, cfg)
        if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    n = count_parameters(model)
    log.info("model %s: %s parameters, %s trainable before adapters (%s)", cfg.model_name_or_path,
             f"{n['total']:,}", f"{n['trainable']:,}", cfg.finetuning_type)
    return model, tok, peft_config


def load_reference(cfg):
    """A frozen copy of the starting model (full / freeze fine-tuning)."""
    from simtune.models import load_model
    ref = load_model(cfg.model_name_or_path, gguf_file=cfg.gguf_file, dtype=cfg.dtype, device=None,
                     trust_remote_code=cfg.trust_remote_code, attn_implementation=cfg.attn_implementation)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def run(ctx: StageContext) -> TrainResult:
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    cfg = ctx.cfg
    train_ds, eval_ds = load_data(ctx, "preference")
    model, tok, peft_config = load_policy(cfg)
    ref = None if peft_config is not None else load_reference(cfg)
    args = trl_args(cfg, ctx.exp, TRLDPOConfig, beta=cfg.beta, loss_type=[cfg.loss_type],
                    label_smoothing=cfg.label_smoothing, max_length=cfg.max_length,
                    precompute_ref_log_probs=cfg.precompute_ref_log_probs, dataset_num_proc=None)
    callbacks = [metrics_callback(ctx.exp)]
    if cfg.early_stopping_patience is not None:
        callbacks.append(early_stopping_callback(cfg))
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, callbacks=callbacks, peft_config=peft_config)
    return train_and_finish(ctx, trainer, tok)
