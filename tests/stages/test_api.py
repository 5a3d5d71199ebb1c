"""The Python API: train, evaluate (cross-checked against the trainer's own eval loss),
predict, chat, load_from_checkpoint (full checkpoint and LoRA adapter), callbacks."""
import math
import subprocess
import sys

import pytest
from transformers import TrainerCallback

from simtune import SFTConfig, Trainer, TrainingConfig
from simtune.config import ConfigError
from simtune.stage_configs import CPTConfig, DPOConfig, SFTConfig


class CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kw):
        self.steps.append(state.global_step)


def make_config(tiny_model_dir, tmp_path, pr_file, **kw):
    base = dict(model_name_or_path=str(tiny_model_dir), train_file=str(pr_file), output_root=str(tmp_path / "out"),
                report_to=["none"], max_length=64, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                learning_rate=3e-3, seed=0, save_steps=100)
    base.update(kw)
    return SFTConfig(**base)


def test_train_evaluate_predict_chat_and_reload(tiny_model_dir, tmp_path, pr_file):
    cfg = make_config(tiny_model_dir, tmp_path, pr_file, max_steps=8, eval_split=0.25, eval_strategy="steps",
                      eval_steps=8)
    cb = CountSteps()
    t = Trainer(cfg, callbacks=[cb])
    before = t.evaluate()
    assert before["eval_examples"] == 4 and before["perplexity"] == pytest.approx(math.exp(before["eval_loss"]))
    assert len(t.predict(["hello", "user 3 sees post about 猫"], max_new_tokens=3)) == 2  # the config's model

    res = t.train()
    assert res.global_step == 8 and cb.steps == list(range(1, 9))
    after = t.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.5, (before, after)
    # the same number the trainer computed on the same held-out split at step 8
    logged = [m["eval_loss"] for m in res.experiment.read_metrics() if "eval_loss" in m]
    assert after["eval_loss"] == pytest.approx(logged[-1], rel=1e-3)

    out = t.predict(["user 1 sees post about football", "hi"], max_new_tokens=6, batch_size=2)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    msgs = [{"role": "user", "content": "user 1 sees post about football"}]
    reply = t.chat(msgs, max_new_tokens=6)
    assert reply == out[0]  # a one-message chat is the same prompt, greedy

    ckpt = res.experiment.checkpoints_dir / "checkpoint-8"
    loaded = Trainer.load_from_checkpoint(ckpt)
    assert loaded.predict(["user 1 sees post about football"], max_new_tokens=6) == out[:1]
    assert Trainer.load_from_checkpoint(res.final_model_dir).chat("user 1 sees post about football", max_new_tokens=6) == reply
    with pytest.raises(ConfigError, match="no training config"):
        loaded.train()


def test_lora_adapter_round_trip(tiny_model_dir, tmp_path, pr_file):
    cfg = make_config(tiny_model_dir, tmp_path, pr_file, max_steps=3, finetuning_type="lora", lora_rank=4,
                      learning_rate=1e-2)
    t = Trainer(cfg)
    res = t.train()
    assert (res.final_model_dir / "adapter_config.json").is_file()
    prompts = ["user 2 sees post about 股票", "user 5 sees post about music"]
    trained = t.predict(prompts, max_new_tokens=5)
    loaded = Trainer.load_from_checkpoint(res.final_model_dir)
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"
    assert loaded.predict(prompts, max_new_tokens=5) == trained
    # evaluate works on a loaded adapter given a file
    ev = loaded.evaluate(eval_file=str(pr_file))
    assert ev["eval_examples"] == 16 and ev["eval_loss"] > 0


def test_stage_and_config_conversion(tiny_model_dir, tmp_path, pr_file):
    cfg = make_config(tiny_model_dir, tmp_path, pr_file)
    t = Trainer(cfg, stage="dpo", beta=0.3)
    assert isinstance(t.config, DPOConfig) and t.config.beta == 0.3 and t.config.data_format == "preference"
    assert t.config.learning_rate == 3e-3 and t.config.train_file == str(pr_file)
    assert isinstance(Trainer(cfg, stage="cpt").config, CPTConfig)
    assert Trainer(cfg, stage="cpt").config.data_format == "text"
    with pytest.raises(ConfigError, match="packing: not a setting of stage 'dpo'"):
        Trainer(make_config(tiny_model_dir, tmp_path, pr_file, packing=True), stage="dpo")
    with pytest.raises(ConfigError, match="unknown stage 'ppo'"):
        Trainer(cfg, stage="ppo")
    with pytest.raises(ConfigError, match="'learning_rate' must be >= 0"):
        Trainer(make_config(tiny_model_dir, tmp_path, pr_file, learning_rate=-1.0))
    with pytest.raises(ConfigError, match="evaluate needs 'eval_file' or 'eval_split'"):
        Trainer(cfg).evaluate()
    with pytest.raises(ConfigError, match="no such checkpoint"):
        Trainer.load_from_checkpoint(tmp_path / "nope")
    with pytest.raises(ConfigError, match="reward model scores text"):
        Trainer(cfg, stage="reward").predict(["x"])
    assert TrainingConfig is SFTConfig


def test_import_simtune_stays_light():
    code = ("import sys, simtune; from simtune import Trainer, TrainingConfig; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules); "
            "print(TrainingConfig.__name__)")
    import os
    from pathlib import Path

    import simtune
    env = {**os.environ, "PYTHONPATH": str(Path(simtune.__file__).resolve().parents[1])}  # this checkout's src
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SFTConfig"


def test_the_sft_config_is_exported_under_its_own_name():
    import simtune.stage_configs
    assert SFTConfig is simtune.stage_configs.SFTConfig and TrainingConfig is SFTConfig  # the earlier name still works
    assert SFTConfig is not simtune.stage_configs.TrainingConfig  # that one is every stage's base
