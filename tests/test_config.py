from pathlib import Path

import pytest

from simtune.config import FLAG, ConfigError, parse_overrides
from simtune.stage_configs import CONFIG_KINDS, GRPOConfig, SFTConfig, config_class, kind_of_config_file, load_stage_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yaml_then_command_line_overrides(tmp_path):
    p = write(tmp_path, "train_file: a.jsonl\nlearning_rate: 1e-4\nlora_target: [q_proj, v_proj]\npacking: false\n")
    c = SFTConfig.load(p, ["--learning_rate", "2e-5", "--packing", "--lora_target=k_proj,o_proj", "--max-length", "64"])
    assert c.learning_rate == pytest.approx(2e-5)  # YAML 1.1 reads "1e-4" as a string: coerced
    assert c.packing is True
    assert c.lora_target == ["k_proj", "o_proj"]
    assert c.max_length == 64
    assert c.source_of("learning_rate") == "command line"
    assert c.source_of("train_file") == str(p)


@pytest.mark.parametrize("text,argv,needle", [
    ("train_file: a\nlerning_rate: 1\n", [], "unknown key 'lerning_rate'"),
    ("train_file: a\n", ["--lerning_rate", "1"], "command line: unknown key 'lerning_rate' for SFTConfig (did you mean 'learning_rate'?)"),
    ("train_file: a\nmax_length: abc\n", [], "'max_length' must be an integer, got 'abc'"),
    ("train_file: a\npacking: maybe\n", [], "'packing' must be true or false"),
    ("train_file: a\nwarmup_ratio: 2\n", [], "'warmup_ratio' must be <= 1.0"),
    ("train_file: a\nfinetuning_type: lorra\n", [], "'finetuning_type' must be one of"),
    ("learning_rate: 1\n", [], "required key 'train_file' is missing"),
    ("train_file: a\n", ["--max_length"], "'--max_length' needs a value"),
    ("- a\n- b\n", [], "the top level must be a mapping"),
    ("train_file: [a\n", [], "not valid YAML"),
])
def test_bad_configs_name_key_and_source(tmp_path, text, argv, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        SFTConfig.load(p, argv)
    assert needle in str(e.value)
    if not argv or "command line" not in needle:
        assert str(p) in str(e.value) or "command line" in str(e.value)


def test_missing_file_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        SFTConfig.load(tmp_path / "nope.yaml")


def test_optional_and_list_of_float():
    c = GRPOConfig.load(None, ["--train_file", "x", "--reward_weights", "[1.0, 0.5]", "--early_stopping_patience", "none"])
    assert c.reward_weights == [1.0, 0.5] and c.early_stopping_patience is None
    with pytest.raises(ConfigError, match="reward_weights"):
        GRPOConfig.load(None, ["--train_file", "x", "--reward_weights", "[a]"])


def test_parse_overrides_rejects_positional():
    assert parse_overrides(["--a", "1", "--b=2", "--c"]) == [("a", "1"), ("b", "2"), ("c", FLAG)]
    assert SFTConfig.load(None, [], train_file="x", eval_file=None).eval_file is None  # None from Python is a value
    with pytest.raises(ConfigError, match="expected --key value"):
        parse_overrides(["a"])


def test_round_trip_yaml(tmp_path):
    c = SFTConfig.load(None, ["--train_file", "t.jsonl", "--lora_rank", "4"])
    p = write(tmp_path, c.to_yaml())
    assert SFTConfig.load(p).to_dict() == c.to_dict()


def test_stage_registry():
    assert load_stage_config("sft", None, ["--train_file", "x"]).__class__ is SFTConfig
    with pytest.raises(ConfigError, match="unknown stage"):
        load_stage_config("ppo")
    assert kind_of_config_file("configs/social/sft_qwen3b_lora.yaml") == "sft"
    with pytest.raises(ConfigError):
        kind_of_config_file("configs/x/whatever.yaml")


SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "accelerate")  # accelerate's own: tests/test_distributed.py


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_config_loads(path):
    kind = kind_of_config_file(path)
    cfg = config_class(kind).load(path)
    assert cfg.to_dict()


def test_configs_exist():
    # the parametrized test above must not silently test nothing
    assert len(SHIPPED) >= 1 and set(CONFIG_KINDS) >= {"sft", "grpo"}


def test_a_setting_the_trl_config_lacks_is_an_error_not_dropped(tmp_path):
    """trl_args passes every setting on; one that TRL/transformers no longer has (a renamed
    field) stops the run with its name instead of vanishing."""
    from trl import SFTConfig as TRLSFTConfig

    from simtune.experiment import Experiment
    from simtune.stages.common import trl_args
    cfg = SFTConfig.load(None, ["--train_file", "x", "--report_to", "none", "--output_root", str(tmp_path),
                                "--learning_rate", "3e-4", "--max_grad_norm", "0.5"])
    exp = Experiment.for_config(cfg)
    args = trl_args(cfg, exp, TRLSFTConfig, max_length=77)
    assert (args.learning_rate, args.max_grad_norm, args.max_length) == (3e-4, 0.5, 77)
    with pytest.raises(ConfigError, match="has no field 'max_seq_len'"):
        trl_args(cfg, exp, TRLSFTConfig, max_seq_len=77)
    # gradient_checkpointing reaches the field transformers reads now, without its deprecation warning
    import warnings
    on = SFTConfig.load(None, ["--train_file", "x", "--report_to", "none", "--output_root", str(tmp_path),
                               "--gradient_checkpointing", "true"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = trl_args(on, exp, TRLSFTConfig)
    assert args.gradient_checkpointing is True and getattr(args, "activation_checkpointing", True) is True
