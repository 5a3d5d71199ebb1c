"""SFT and level-wise GRPO run on the social samples through the generic stages."""
from simtune.stage_configs import GRPOConfig, SFTConfig
from simtune.stages import run_stage


def common(tiny_model_dir, tmp_path):
    return ["--model_name_or_path", str(tiny_model_dir), "--output_root", str(tmp_path), "--report_to", "none",
            "--logging_steps", "1", "--recipe", "social"]


def test_sft_on_social_samples(social_data, tiny_model_dir, tmp_path):
    cfg = SFTConfig.load(None, common(tiny_model_dir, tmp_path) + [
        "--train_file", str(social_data.samples / "train.parquet"), "--max_samples", "8", "--max_steps", "2",
        "--max_length", "256"])
    res = run_stage("sft", cfg)
    assert res.global_step == 2 and res.experiment.root.parent.name == "social"


def test_levelwise_grpo_with_social_rewards(social_data, tiny_model_dir, tmp_path):
    cfg = GRPOConfig.load(None, common(tiny_model_dir, tmp_path) + [
        "--train_file", str(social_data.grpo / "train.parquet"), "--max_samples", "4", "--max_steps", "2",
        "--reward_funcs", "social_format,social_who,social_action,social_text", "--reward_weights", "[0.2,1,0.3,0.5]",
        "--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "8"])
    res = run_stage("grpo", cfg)
    m = [r for r in res.experiment.read_metrics() if "reward" in r]
    assert len(m) == 2 and "rewards/social_who/mean" in m[0] and "rewards/social_format/mean" in m[0]
