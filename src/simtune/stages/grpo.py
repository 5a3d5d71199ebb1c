"""GRPO: TRL's GRPOTrainer with simtune's reward functions (by name, dotted path or callable).

The dataset needs a ``prompt`` column (a string becomes one user message); every other
column reaches the reward functions as a keyword argument. Sample completions are written
to ``samples/`` every ``log_completions_every`` steps, and ``checkpoints/best`` keeps the
model at the best ``metric_for_best_model`` (e.g. ``reward``) seen in training logs.
"""
from __future__ import annotations

import json

from simtune.config import ConfigError
from simtune.rewards import get_reward
from simtune.stages.common import (StageContext, TrainResult, best_checkpoint_callback, load_for_training,
                                   metrics_callback, train_and_finish, trl_args)


def load_prompts(ctx: StageContext):
    """GRPO data: records with a ``prompt`` (string or message list) and any other columns."""
    from simtune.data.formats import read_records, to_dataset
    from simtune.io import DataError, RejectLog
    if ctx.train_dataset is not None:
        return ctx.train_dataset
    cfg = ctx.cfg
    rows = []
    with RejectLog(ctx.exp.root / "rejects.jsonl", strict=cfg.on_bad_record == "error") as rejects:
        for no, rec in read_records(cfg.train_file):
            try:
                if isinstance(rec, DataError):
                    raise rec
                if not isinstance(rec, dict) or "prompt" not in rec:
                    raise DataError(cfg.train_file, no, "prompt", "missing field")
                p = rec["prompt"]
                if isinstance(p, str):
                    if cfg.prompt_template:
                        p = cfg.prompt_template.format(prompt=p)
                    p = [{"role": "user", "content": p}]
                elif not (isinstance(p, list) and p and all(isinstance(m, dict) and "role" in m and "content" in m for m in p)):
                    raise DataError(cfg.train_file, no, "prompt", "wrong type: expected a string or a list of {role, content}")
                rows.append({**rec, "prompt": p})
            except DataError as e:
                rejects.reject(e.path, e.line, e.reason, field=e.field)
            if cfg.max_samples and len(rows) >= cfg.max_samples:
                break
    if not rows:
        raise DataError(cfg.train_file, None, None, "no usable prompts")
    return to_dataset(rows)


def samples_callback(ctx: StageContext, every: int):
    """Write the latest generation batch (prompt, completion, rewards) every N steps."""
    from transformers import TrainerCallback

    exp = ctx.exp

    class Samples(TrainerCallback):
        trainer = None

        def on_step_end(self, args, state, control, **kw):
            if not state.is_world_process_zero or self.trainer is None or state.global_step % every:
                return
            logs = getattr(self.trainer, "_logs", None)
            if not logs or not logs.get("prompt"):
                return
            rewards = {k: list(v) for k, v in logs["rewards"].items()}
            rows = []
            for i, (p, c) in enumerate(zip(logs["prompt"], logs["completion"])):
                rows.append({"step": state.global_step, "prompt": p, "completion": c,
                             "rewards": {k: v[i] for k, v in rewards.items() if i < len(v)},
                             "advantage": logs["advantages"][i] if i < len(logs["advantages"]) else None})
            exp.write_samples(f"completions_step{state.global_step:06d}.jsonl", rows)

    return Samples()


def resolve_rewards(ctx: StageContext) -> list:
    funcs = list(ctx.reward_funcs or [])
    for name in ctx.cfg.reward_funcs:
        try:
            funcs.append(get_reward(name))
        except KeyError as e:
            raise ConfigError(f"{ctx.cfg.source_of('reward_funcs')}: {e.args[0]}") from None
    if not funcs:
        raise ConfigError(f"{ctx.cfg.source_of('reward_funcs')}: GRPO needs at least one reward function (reward_funcs)")
    w = ctx.cfg.reward_weights
    if w is not None and len(w) != len(funcs):
        raise ConfigError(f"{ctx.cfg.source_of('reward_weights')}: {len(w)} reward_weights for {len(funcs)} reward functions")
    return funcs


def check_vllm(cfg) -> None:
    if not cfg.use_vllm:
        return
    import importlib.util

    import torch
    if not torch.cuda.is_available() or cfg.device == "cpu":
        raise ConfigError(f"{cfg.source_of('use_vllm')}: use_vllm needs a CUDA GPU; this run has none "
                          "(set use_vllm: false)")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{cfg.source_of('use_vllm')}: use_vllm needs the vllm package (pip install vllm), "
                          "which is not installed (set use_vllm: false)")


def run(ctx: StageContext) -> TrainResult:
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    cfg = ctx.cfg
    check_vllm(cfg)
    funcs = resolve_rewards(ctx)
    batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    if batch % cfg.num_generations:
        raise ConfigError(f"{cfg.source_of('num_generations')}: per_device_train_batch_size x gradient_accumulation_steps "
                          f"({batch}) must be a multiple of num_generations ({cfg.num_generations})")
    train_ds = load_prompts(ctx)
    model, tok = load_for_training(cfg)
    args = trl_args(cfg, ctx.exp, TRLGRPOConfig,
                    num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                    temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta, epsilon=cfg.epsilon,
                    num_iterations=cfg.num_iterations, loss_type=cfg.loss_type, reward_weights=cfg.reward_weights,
                    use_vllm=cfg.use_vllm, vllm_mode=cfg.vllm_mode,
                    vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                    vllm_server_base_url=cfg.vllm_server_base_url, log_completions=False,
                    save_only_model=False)
    callbacks = [metrics_callback(ctx.exp), samples_callback(ctx, cfg.log_completions_every)]
    if cfg.metric_for_best_model and cfg.metric_for_best_model != "eval_loss":
        callbacks.append(best_checkpoint_callback(ctx.exp, cfg.metric_for_best_model, cfg.greater_is_better))
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_ds,
                          processing_class=tok, callbacks=callbacks)
    (ctx.exp.root / "reward_funcs.json").write_text(json.dumps(
        [getattr(f, "reward_name", getattr(f, "__name__", str(f))) for f in funcs]))
    return train_and_finish(ctx, trainer, tok)
