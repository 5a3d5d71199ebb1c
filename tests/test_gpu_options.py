"""GPU-only speed options on a machine that cannot use them: FlashAttention and Liger are
ignored with a warning saying why (the run goes on); vLLM stops with a clear error."""
import importlib.util
import logging

import pytest
import torch

from simtune.config import ConfigError
from simtune.stage_configs import GRPOConfig, SFTConfig
from simtune.models import attn_for_device, load_model


def _no_package(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_flash_attention_falls_back_to_sdpa_with_the_reason(monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert attn_for_device("flash_attention_2") == "sdpa"
    assert "needs a CUDA GPU" in caplog.text
    caplog.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # a GPU, but no package
    _no_package(monkeypatch, "flash_attn", "flash_attn_interface")
    assert attn_for_device("flash_attention_2") == "sdpa" and "pip install flash-attn" in caplog.text
    assert attn_for_device("flash_attention_3") == "sdpa" and "pip install flash-attn-3" in caplog.text
    assert attn_for_device("flash_attention_2", device="cpu") == "sdpa"   # a GPU machine, a CPU run
    assert attn_for_device("eager") == "eager" and attn_for_device("sdpa") == "sdpa"


def test_flash_attention_request_still_loads_the_model_on_cpu(tiny_model_dir, caplog):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    caplog.set_level(logging.WARNING)
    model = load_model(str(tiny_model_dir), device="cpu", attn_implementation="flash_attention_2")
    assert model.config._attn_implementation == "sdpa" and "flash_attention_2 ignored" in caplog.text


def test_liger_ignored_with_the_reason(tmp_path, monkeypatch, caplog):
    from trl import SFTConfig as TRLSFTConfig

    from simtune.experiment import Experiment
    from simtune.stages.common import trl_args, use_liger
    caplog.set_level(logging.WARNING)
    cfg = SFTConfig.load(None, ["--train_file", "x", "--use_liger_kernel", "--report_to", "none",
                                "--output_root", str(tmp_path)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = trl_args(cfg, Experiment.for_config(cfg), TRLSFTConfig)
    assert args.use_liger_kernel is False and "no CUDA device" in caplog.text
    caplog.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _no_package(monkeypatch, "liger_kernel")
    assert use_liger(cfg) is False and "pip install liger-kernel" in caplog.text
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())   # both present: passed on
    assert use_liger(cfg) is True
    assert use_liger(SFTConfig.load(None, ["--train_file", "x"])) is False      # off unless asked


def test_vllm_without_gpu_or_package_stops_with_a_clear_error(monkeypatch):
    from simtune.stages.grpo import check_vllm
    cfg = GRPOConfig.load(None, ["--train_file", "x", "--use_vllm", "--vllm_mode", "server"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="use_vllm needs a CUDA GPU"):
        check_vllm(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _no_package(monkeypatch, "vllm")
    with pytest.raises(ConfigError, match=r"needs the vllm package \(pip install vllm\)"):
        check_vllm(cfg)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):       # a GPU machine, a CPU run
        check_vllm(GRPOConfig.load(None, ["--train_file", "x", "--use_vllm", "--device", "cpu"]))
    check_vllm(GRPOConfig.load(None, ["--train_file", "x"]))          # not asked for: nothing checked


def test_vllm_options_reach_trl(tiny_model_dir, tmp_path, monkeypatch):
    """With vLLM usable (pretended here), the GRPO stage hands TRL the mode and its settings."""
    import json

    import trl

    from simtune.stages import grpo, run_stage

    class Built(Exception):
        pass

    def fake_trainer(*a, args=None, **kw):
        raise Built(args)
    monkeypatch.setattr(trl, "GRPOTrainer", fake_trainer)
    monkeypatch.setattr(grpo, "check_vllm", lambda cfg: None)
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"prompt": "say a"}) + "\n")
    cfg = GRPOConfig.load(None, ["--model_name_or_path", str(tiny_model_dir), "--train_file", str(data),
                                 "--reward_funcs", "social_format", "--report_to", "none", "--output_root", str(tmp_path),
                                 "--use_vllm", "--vllm_mode", "server", "--vllm_server_base_url", "http://h:8000",
                                 "--vllm_gpu_memory_utilization", "0.5"])
    with pytest.raises(Built) as e:
        run_stage("grpo", cfg)
    args = e.value.args[0]
    assert args.use_vllm and args.vllm_mode == "server"
    assert (args.vllm_server_base_url, args.vllm_gpu_memory_utilization) == ("http://h:8000", 0.5)
