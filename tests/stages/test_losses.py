"""Each loss against numbers worked out by hand (plain math, not the code under test)."""
import math

import pytest
import torch

from simtune.config import ConfigError
from simtune.losses import create_loss

L3, L5 = math.log(3), math.log(5)


def approx(x, v, tol=1e-5):
    assert float(torch.as_tensor(x).detach()) == pytest.approx(v, abs=tol)


def test_sft_cross_entropy_ignores_minus_100_and_smooths():
    # row [0,0,0]: p(label)=1/3 -> ln 3; row [0, ln3, 0]: softmax (1/5, 3/5, 1/5), label 1 -> ln(5/3)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, L3, 0.0], [9.0, -9.0, 0.0]]])
    labels = torch.tensor([[2, 1, -100]])
    approx(create_loss("sft", shift=False)(logits, labels), (L3 + (L5 - L3)) / 2)
    # label smoothing eps: (1-eps)*NLL + eps*mean_k(-log p_k); row 2: mean = (ln5 + ln5/3... ) = ln5 - ln3/3
    eps = 0.3
    row1 = L3
    row2 = (1 - eps) * (L5 - L3) + eps * (L5 - L3 / 3)
    approx(create_loss("sft", shift=False, label_smoothing=eps)(logits, labels), (row1 + row2) / 2)
    # causal shift: logits at t predict labels at t+1
    shifted = torch.tensor([[-100, 2, 1]])
    approx(create_loss("sft")(logits, shifted), L5 / 2)
    # all ignored -> 0, not NaN
    approx(create_loss("sft", shift=False)(logits, torch.full((1, 3), -100)), 0.0)


def test_pairwise_with_and_without_margin():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    approx(create_loss("pairwise")(rc, rr), (math.log(1 + math.exp(-2)) + math.log(2)) / 2)
    approx(create_loss("pairwise", margin=1.0)(rc, rr), (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2)
    # a per-pair margin tensor overrides the constant
    approx(create_loss("pairwise", margin=5.0)(rc, rr, margin=torch.tensor([2.0, 0.0])), (math.log(2) + math.log(2)) / 2)


def test_policy_clipped_objective_and_clip_fraction():
    ratios = [1.5, 0.5, 1.1, 1.5, 1.0]
    adv = torch.tensor([[1.0, -1.0, -1.0, -1.0, 2.0]])
    logp = torch.log(torch.tensor([ratios]))
    old = torch.zeros_like(logp)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    # token by token: -min(1.5,1.2)=-1.2 (clipped); -min(-0.5,-0.8)=0.8 (clipped);
    # -min(-1.1,-1.1)=1.1; -min(-1.5,-1.2)=1.5 (not clipped: A<0 and ratio>1); 5th masked out
    loss, frac = create_loss("policy", epsilon=0.2)(logp, old, adv, mask)
    approx(loss, (-1.2 + 0.8 + 1.1 + 1.5) / 4)
    approx(frac, 2 / 4)
    # per-sequence advantages broadcast over tokens; gradient flows only through unclipped tokens
    logp = torch.log(torch.tensor([[1.5, 1.0]])).requires_grad_()
    loss, frac = create_loss("policy", epsilon=0.2)(logp, torch.zeros(1, 2), torch.tensor([1.0]))
    approx(loss, -(1.2 + 1.0) / 2)
    loss.backward()
    assert logp.grad[0, 0] == 0 and float(logp.grad[0, 1]) == pytest.approx(-0.5)


def test_value_loss_clipped():
    v, old, ret = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([2.0, 0.0])
    # token 1: v_clip=0.7: max(1, 1.69)/2 = 0.845; token 2: v_clip=0.3: max(0, 0.09)/2 = 0.045
    approx(create_loss("value", clip_eps=0.2)(v, old, ret), (0.845 + 0.045) / 2)
    approx(create_loss("value", clip_eps=0.2)(v, old, ret, torch.tensor([0, 1])), 0.045)


def test_kd_forward_reverse_temperature_mask():
    student = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])
    teacher = torch.tensor([[[L3, 0.0], [-5.0, 5.0]]])  # p_t = (3/4, 1/4) on token 1
    mask = torch.tensor([[1, 0]])
    fwd = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    rev = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    approx(create_loss("kd", temperature=1.0)(student, teacher, mask), fwd)
    approx(create_loss("kd", temperature=1.0, direction="reverse")(student, teacher, mask), rev)
    # T=2: teacher probs from logits/2 = (sqrt3, 1)/(sqrt3+1); loss scaled by T^2 = 4
    s3 = math.sqrt(3)
    p = [s3 / (s3 + 1), 1 / (s3 + 1)]
    approx(create_loss("kd", temperature=2.0)(student, teacher, mask), 4 * sum(q * math.log(q / 0.5) for q in p))
    # the masked-out second token (very different) would add a lot if it counted
    assert float(create_loss("kd")(student, teacher)) > 2
    # identical distributions -> 0
    approx(create_loss("kd")(teacher, teacher), 0.0)


def test_unknown_loss_lists_names():
    with pytest.raises(ConfigError, match="unknown loss 'ppo'; available: kd, pairwise, policy, sft, value"):
        create_loss("ppo")
    with pytest.raises(ConfigError, match="loss 'kd'"):
        create_loss("kd", temprature=2.0)
    with pytest.raises(ConfigError, match="direction"):
        create_loss("kd", direction="sideways")
