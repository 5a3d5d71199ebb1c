"""Logit distillation: the KD term falls, the student's distribution moves toward the
teacher's on held-out text, KD counts response tokens only, mismatched tokenizers stop."""
import pytest
import torch

from simtune.config import ConfigError
from simtune.stage_configs import DistillConfig
from simtune.experiment import Experiment
from simtune.stages import run_stage
from simtune.stages.common import StageContext

from stage_utils import tiny_args
from testutils import build_tiny_model

# held-out texts in the training format (user ids and topics combined as never seen in training)
HELD = ["<|im_start|>user\nuser %d sees post about %s<|im_end|>\n<|im_start|>assistant\n"
        '[{"user": "u%d", "action": "comment", "text": "%s!"}]<|im_end|>\n' % (i, t, i, t)
        for i, t in [(21, "股票"), (30, "football"), (47, "music")]]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    # a different width and a peakier (larger-init) output distribution than the student
    return build_tiny_model(tmp_path_factory.mktemp("teacher"), hidden=96, seed=1, init_range=0.2)


def held_kl(student_dir, teacher_dir, T=1.0):
    """Mean forward KL(teacher||student) per token on text never trained on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    s = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    t = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    kls = []
    with torch.no_grad():
        for text in HELD:
            ids = tok(text, return_tensors="pt")
            ls, lt = s(**ids).logits[0] / T, t(**ids).logits[0] / T
            pt = lt.softmax(-1)
            kls.append((pt * (lt.log_softmax(-1) - ls.log_softmax(-1))).sum(-1).mean().item())
    return sum(kls) / len(kls)


def distill_args(tiny_model_dir, tmp_path, pr_file, teacher_dir, *extra):
    return tiny_args(tiny_model_dir, tmp_path, pr_file, "--teacher_model_name_or_path", str(teacher_dir), *extra)


def test_kd_falls_and_student_moves_toward_teacher(tiny_model_dir, tmp_path, pr_file, teacher_dir):
    cfg = DistillConfig.load(None, distill_args(tiny_model_dir, tmp_path, pr_file, teacher_dir, "--max_steps", "6",
                                                "--learning_rate", "3e-3", "--lr_scheduler_type", "constant", "--kd_alpha", "1.0", "--kd_temperature",
                                                "1.0", "--save_steps", "100", "--max_samples", "4",
                                                "--per_device_train_batch_size", "4"))
    res = run_stage("distill", cfg)
    rows = [m for m in res.experiment.read_metrics() if "kd_loss" in m]
    kd, ce, loss = [r["kd_loss"] for r in rows], [r["ce_loss"] for r in rows], [r["loss"] for r in rows]
    assert len(kd) == 6
    assert all(b < a for a, b in zip(kd, kd[1:])) and kd[-1] < 0.93 * kd[0], kd
    assert loss == pytest.approx(kd, rel=1e-3)  # kd_alpha 1: the loss is the KD term alone
    before, after = held_kl(tiny_model_dir, teacher_dir), held_kl(res.final_model_dir, teacher_dir)
    assert after < 0.99 * before, (before, after)


def test_kd_counts_response_tokens_only(tiny_model_dir, tmp_path, pr_file, teacher_dir):
    from simtune.stages.distill import build_trainer
    cfg = DistillConfig.load(None, distill_args(tiny_model_dir, tmp_path, pr_file, teacher_dir, "--kd_temperature", "2.0",
                                                "--kd_direction", "reverse"))
    trainer, tok = build_trainer(StageContext("distill", cfg, Experiment.for_config(cfg)))
    batch = next(iter(trainer.get_train_dataloader()))
    kd, ce, out = trainer.distill_losses(trainer.model, batch)
    with torch.no_grad():
        t = trainer.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    s = out.logits.detach()
    keep = batch["labels"][:, 1:] != -100
    assert 0 < keep.sum() < batch["attention_mask"].sum()  # prompts are masked out

    def rev_kl(s, t):  # T^2 * KL(student||teacher) at T=2, by the formula
        ls, lt = (s / 2).log_softmax(-1), (t / 2).log_softmax(-1)
        return 4 * (ls.exp() * (ls - lt)).sum(-1)

    per = rev_kl(s[:, :-1], t[:, :-1])
    assert kd.item() == pytest.approx(per[keep].mean().item(), rel=1e-5)
    all_tokens = per[batch["attention_mask"][:, 1:] == 1].mean().item()
    assert abs(kd.item() - all_tokens) > 1e-4  # would be equal if prompt tokens counted


def test_different_tokenizer_is_a_config_error(tiny_model_dir, tmp_path, pr_file, teacher_dir):
    import shutil

    from transformers import AutoTokenizer
    other = tmp_path / "other_teacher"
    shutil.copytree(teacher_dir, other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra_token_1>", "<extra_token_2>"])
    tok.save_pretrained(other)
    cfg = DistillConfig.load(None, distill_args(tiny_model_dir, tmp_path, pr_file, other, "--max_steps", "1"))
    with pytest.raises(ConfigError, match=r"teacher_model_name_or_path .* tokenizer of \d+ tokens but the student"):
        run_stage("distill", cfg)
    with pytest.raises(ConfigError, match="required key 'teacher_model_name_or_path'"):
        DistillConfig.load(None, tiny_args(tiny_model_dir, tmp_path, pr_file))
