import json

import pytest
import torch

from simtune.config import ConfigError
from simtune.stage_configs import CPTConfig, SFTConfig
from simtune.io import DataError, OutputMarker
from simtune.stages import run_stage

from stage_utils import tiny_args, write_jsonl


def losses(exp):
    return [m["loss"] for m in exp.read_metrics() if "loss" in m]


def test_sft_loss_falls_and_outputs_complete(tiny_model_dir, tmp_path, pr_file):
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pr_file, "--max_steps", "12",
                                         "--learning_rate", "3e-3", "--save_steps", "6"))
    res = run_stage("sft", cfg)
    ls = losses(res.experiment)
    assert len(ls) >= 10 and sum(ls[-3:]) / 3 < 0.9 * sum(ls[:3]) / 3  # ~10.4 -> ~8.6 on this set
    assert res.global_step == 12
    assert (res.final_model_dir / "model.safetensors").is_file()
    assert (res.final_model_dir / "tokenizer_config.json").is_file()
    assert OutputMarker.read(res.final_model_dir).command == "train"  # replaced only by a training run
    assert (res.experiment.checkpoints_dir / "checkpoint-12" / "trainer_state.json").is_file()
    assert json.loads((res.experiment.root / "data_summary.json").read_text())["train"]["records_out"] == 16


def test_sft_loss_covers_response_only(tiny_model_dir, tmp_path, pr_file):
    """completion_only_loss: prompt tokens are masked out of the labels."""
    from simtune.stages.common import StageContext
    from simtune.stages.sft import build_trainer
    from simtune.experiment import Experiment
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pr_file, "--max_steps", "1"))
    trainer, tok = build_trainer(StageContext("sft", cfg, Experiment.for_config(cfg)))
    batch = next(iter(trainer.get_train_dataloader()))
    row = 0
    labels = batch["labels"][row]
    kept = tok.decode(batch["input_ids"][row][labels != -100])
    assert kept.startswith('[{"user"') and "sees post" not in kept


def test_sft_messages_and_lora(tiny_model_dir, tmp_path):
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"a{i % 2}"}]} for i in range(8)]
    f = write_jsonl(tmp_path / "m.jsonl", rows)
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "2",
                                         "--finetuning_type", "lora", "--lora_rank", "4"))
    res = run_stage("sft", cfg)
    assert (res.final_model_dir / "adapter_config.json").is_file()  # an adapter, not a full copy


def test_bad_record_stops_with_file_line_field(tiny_model_dir, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": 3}\n')
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "1"))
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'response': wrong type"):
        run_stage("sft", cfg)


def test_bad_records_skipped_and_counted(tiny_model_dir, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"\n{"prompt": "c", "response": "d"}\n{"text": 1}\n')
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "1", "--on_bad_record", "skip",
                                         "--data_format", "prompt_response"))
    res = run_stage("sft", cfg)
    summary = json.loads((res.experiment.root / "data_summary.json").read_text())["train"]
    assert summary["records_in"] == 4 and summary["records_out"] == 2 and summary["rejected"] == 2
    rejects = [json.loads(x) for x in (res.experiment.root / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 4]


def test_cpt_packs_text_blocks(tiny_model_dir, tmp_path):
    rows = [{"text": "微博 用户 转发 评论 " * (5 + i)} for i in range(10)]
    f = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = CPTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "10", "--block_size", "32",
                                         "--learning_rate", "3e-3"))
    res = run_stage("cpt", cfg)
    ls = losses(res.experiment)
    assert ls[-1] < ls[0]


def test_early_stopping_requires_eval(tiny_model_dir, tmp_path, pr_file):
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pr_file, "--early_stopping_patience", "1"))
    with pytest.raises(ConfigError, match="early_stopping_patience needs"):
        run_stage("sft", cfg)


def test_early_stopping_stops(tiny_model_dir, tmp_path, pr_file):
    # a learning rate of 0 never improves eval_loss: patience 1 stops after the 2nd evaluation
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pr_file, "--max_steps", "40", "--eval_split", "0.25",
                                         "--eval_strategy", "steps", "--eval_steps", "2", "--early_stopping_patience", "1",
                                         "--learning_rate", "0"))
    res = run_stage("sft", cfg)
    assert res.global_step == 4
    evals = [m for m in res.experiment.read_metrics() if "eval_loss" in m]
    assert len(evals) == 2


def test_responses_truncated_away_is_a_clear_error(tiny_model_dir, tmp_path):
    f = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "word " * 200, "response": "short"}] * 2)
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "1", "--max_length", "32"))
    with pytest.raises(ConfigError, match="lost their response to truncation at max_length=32"):
        run_stage("sft", cfg)


def test_some_responses_truncated_away_are_counted_and_said(tiny_model_dir, tmp_path, caplog):
    rows = [{"prompt": "word " * 200, "response": "short"}] + [{"prompt": "hi", "response": "there"}] * 3
    f = write_jsonl(tmp_path / "mixed.jsonl", rows)
    cfg = SFTConfig.load(None, tiny_args(tiny_model_dir, tmp_path, f, "--max_steps", "1", "--max_length", "32"))
    with caplog.at_level("WARNING"):
        res = run_stage("sft", cfg)
    summary = json.loads((res.experiment.root / "data_summary.json").read_text())
    assert summary["dropped_response_truncated"] == 1 and summary["train"]
    assert "1 of 4 training examples are not trained on" in caplog.text
