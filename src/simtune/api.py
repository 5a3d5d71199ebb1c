"""The Python API: ``from simtune import SFTConfig, Trainer``.

    cfg = SFTConfig(model_name_or_path="default", train_file="train.jsonl", finetuning_type="lora")
    trainer = Trainer(cfg)                      # stage="sft"; also "cpt", "reward", "dpo", "grpo", "distill"
    result = trainer.train()                    # -> TrainResult (experiment folder, final model, steps)
    trainer.evaluate()                          # {"eval_loss": ..., "perplexity": ..., "eval_tokens": ...}
    trainer.predict(["hello"], max_new_tokens=32)
    trainer.chat([{"role": "user", "content": "hi"}])
    Trainer.load_from_checkpoint("outputs/generic/run_.../final_model").predict(["hello"])

``SFTConfig`` is :class:`simtune.stage_configs.SFTConfig` (one source of truth for the fields,
their defaults, help and validation). ``simtune.TrainingConfig`` is the same class under its
earlier name, kept for scripts that use it; the base of every stage's config is
:class:`simtune.stage_configs.TrainingConfig`. For another stage, pass that stage's config
(``simtune.stage_configs.DPOConfig`` ...) or an ``SFTConfig`` plus the stage's own fields as
keyword arguments: ``Trainer(cfg, stage="dpo", beta=0.2)``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from simtune.config import ConfigError
from simtune.stage_configs import STAGE_CONFIGS, SFTConfig
from simtune.stage_configs import TrainingConfig as _BaseTrainingConfig

log = logging.getLogger(__name__)

TrainingConfig = SFTConfig  # the earlier public name of SFTConfig

__all__ = ["SFTConfig", "Trainer", "TrainingConfig"]


def stage_config(config: _BaseTrainingConfig, stage: str, **overrides: Any) -> _BaseTrainingConfig:
    """``config`` as the config class of ``stage`` (shared fields carried over), validated."""
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"unknown stage '{stage}'; available: {sorted(STAGE_CONFIGS)}")
    cls = STAGE_CONFIGS[stage]
    if type(config) is cls and not overrides:
        config.validate()
        return config
    names = set(cls.field_names())
    data = {k: v for k, v in config.to_dict().items() if k in names}
    # fields only the source class has, changed from their defaults, would be lost: say so
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
                for f in dataclasses.fields(type(config))}
    lost = sorted(k for k, v in config.to_dict().items() if k not in names and v != defaults[k])
    if lost:
        raise ConfigError(f"{', '.join(lost)}: not a setting of stage '{stage}' ({cls.__name__})")
    if data.get("data_format") == defaults.get("data_format"):
        data.pop("data_format", None)  # the source class's default: take the stage's own (e.g. CPT's "text")
    return cls.from_dict(data, source="Trainer(config)", overrides={k: (v, "keyword argument") for k, v in overrides.items()})


class Trainer:
    """Train a stage and use the result: evaluate, predict, chat."""

    def __init__(self, config: _BaseTrainingConfig | None = None, stage: str = "sft", callbacks: list | None = None,
                 **overrides: Any):
        self.stage = stage
        self.callbacks = list(callbacks or [])
        self.config = stage_config(config, stage, **overrides) if config is not None else None
        self.result = None
        self._model_path: str | None = None  # what predict/chat load: the trained model once there is one
        self._model = None
        self._tok = None
        self._device = getattr(self.config, "device", "auto") if self.config is not None else "auto"

    # ------------------------------------------------------------------ training
    def train(self, **run_kw: Any):
        """Run the stage (``simtune.stages.run_stage``); returns its TrainResult."""
        from simtune.stages import run_stage
        if self.config is None:
            raise ConfigError("this Trainer was loaded from a checkpoint and has no training config; "
                              "build one with Trainer(SFTConfig(...))")
        self.result = run_stage(self.stage, self.config, callbacks=self.callbacks, **run_kw)
        self._model_path = str(self.result.final_model_dir)
        self._model = self._tok = None
        return self.result

    @classmethod
    def load_from_checkpoint(cls, path: str | Path, *, device: str = "auto", config: _BaseTrainingConfig | None = None,
                             stage: str = "sft") -> "Trainer":
        """A Trainer around a ``checkpoint-N``, ``final_model`` or LoRA adapter folder (or a
        model folder / .gguf): ready to predict and chat; give ``config`` to evaluate too."""
        p = Path(path)
        if not p.exists() and not str(path) == "default":
            raise ConfigError(f"{path}: no such checkpoint or model folder")
        if p.is_dir() and not ((p / "config.json").is_file() or (p / "adapter_config.json").is_file()):
            raise ConfigError(f"{path}: not a model, checkpoint or adapter folder (no config.json or adapter_config.json)")
        t = cls(None, stage=stage)
        t.config = config
        t._model_path = str(path)
        t._device = device
        return t

    # ------------------------------------------------------------------ the model
    @property
    def model_path(self) -> str:
        if self._model_path is not None:
            return self._model_path
        return self.config.model_name_or_path

    def _load(self):
        if self.stage == "reward":
            raise ConfigError("a reward model scores text and does not generate: load it with "
                              "simtune.export.load_trained(path) and read model(**inputs).logits")
        if self._model is None:
            from simtune.export import load_trained
            if self._model_path is None:  # before training: the config's model
                from simtune.models import load_model_and_tokenizer
                self._model, self._tok = load_model_and_tokenizer(self.config, device=self._device)
                self._model.eval()
            else:
                kw = {}
                if self.config is not None:
                    kw = dict(dtype=self.config.dtype, trust_remote_code=self.config.trust_remote_code,
                              chat_template=self.config.chat_template)
                self._model, self._tok = load_trained(self._model_path, device=self._device, **kw)
        return self._model, self._tok

    @property
    def model(self):
        return self._load()[0]

    @property
    def tokenizer(self):
        return self._load()[1]

    # ------------------------------------------------------------------ use
    def predict(self, prompts: Sequence, max_new_tokens: int = 128, batch_size: int = 8, **gen: Any) -> list:
        """One completion per prompt (a string, or a list of chat messages), batched."""
        from simtune.generation import generate
        if isinstance(prompts, str):
            raise TypeError("predict() takes a list of prompts; for one prompt use predict([prompt])")
        model, tok = self._load()
        return generate(model, tok, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size, **gen)

    def chat(self, messages, max_new_tokens: int = 128, **gen: Any) -> str:
        """The assistant's reply to a conversation (a list of {role, content}, or one user string)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise TypeError("chat() takes a list of {'role': ..., 'content': ...} messages")
        return self.predict([list(messages)], max_new_tokens=max_new_tokens, batch_size=1, **gen)[0]

    def evaluate(self, eval_file: str | None = None, batch_size: int | None = None) -> dict:
        """Mean token loss and perplexity of the current model on the evaluation data:
        ``eval_file`` (argument, then config), else the ``eval_split`` share of train_file
        (the same records training held out). Response tokens only for prompt/response
        and messages data; every token for text."""
        import torch

        records = self._eval_records(eval_file)
        model, tok = self._load()
        max_len = self.config.max_length if self.config is not None else 1024
        bs = batch_size or (self.config.per_device_eval_batch_size if self.config is not None else 4)
        examples = [self._encode(tok, r, max_len) for r in records]
        examples = [e for e in examples if any(l != -100 for l in e[1][1:])]
        if not examples:
            raise ConfigError("evaluate: no evaluation example has a target token (too short a max_length?)")
        device = next(model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(examples), bs):
                chunk = examples[i:i + bs]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                labels = torch.full((len(chunk), width), -100, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (x, y) in enumerate(chunk):  # right padding
                    ids[row, :len(x)] = torch.tensor(x)
                    labels[row, :len(y)] = torch.tensor(y)
                    mask[row, :len(x)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
                shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
                loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                                         shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
                total += loss.item()
                count += int((shift_labels != -100).sum())
        mean = total / count
        return {"eval_loss": mean, "perplexity": math.exp(min(mean, 50.0)), "eval_tokens": count,
                "eval_examples": len(examples)}

    # ------------------------------------------------------------------ helpers
    def _eval_records(self, eval_file: str | None) -> list[dict]:
        import random

        from simtune.data.formats import kind_for_stage, load_records
        cfg = self.config
        if cfg is None and eval_file is None:
            raise ConfigError("evaluate: give eval_file= (this Trainer has no config)")
        kind = kind_for_stage(self.stage, cfg.data_format if cfg is not None else "auto")
        kw = dict(prompt_template=getattr(cfg, "prompt_template", None), response_template=getattr(cfg, "response_template", None))
        path = eval_file or (cfg.eval_file if cfg is not None else None)
        if path:
            return load_records(path, kind, **kw)[0]
        if cfg.eval_split > 0 and cfg.train_file:
            train = load_records(cfg.train_file, kind, max_samples=cfg.max_samples, **kw)[0]
            idx = list(range(len(train)))
            random.Random(cfg.seed).shuffle(idx)  # the same split as simtune.stages.common.load_data
            n_eval = max(1, int(round(len(train) * cfg.eval_split)))
            keep = set(idx[:n_eval])
            return [r for i, r in enumerate(train) if i in keep]
        raise ConfigError(f"{cfg.source_of('eval_file')}: evaluate needs 'eval_file' or 'eval_split' > 0")

    @staticmethod
    def _encode(tok, rec: dict, max_len: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) with -100 on the prompt (and nothing masked for text)."""
        if "text" in rec:
            ids = tok(rec["text"])["input_ids"][:max_len]
            return ids, list(ids)
        completion = rec.get("completion") or rec.get("chosen")
        prompt_text = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        full_text = tok.apply_chat_template(rec["prompt"] + completion, tokenize=False)
        if not full_text.startswith(prompt_text):
            prompt_text = tok.apply_chat_template(rec["prompt"], tokenize=False)
        p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
        ids = tok(full_text, add_special_tokens=False)["input_ids"][:max_len]
        n = min(len(p_ids), len(ids))
        return ids, [-100] * n + ids[n:]
