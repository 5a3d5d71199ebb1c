"""The training losses, in one place, as plain ``nn.Module`` s: ``create_loss(name, **kw)``.

- ``sft``: token cross-entropy (labels ``-100`` are ignored), optional label smoothing;
  by default logits at position t predict the label at t+1 (causal shift).
- ``pairwise``: reward-model loss ``-logsigmoid(r_chosen - r_rejected - margin)``, mean.
- ``policy``: the clipped PPO/GRPO surrogate; returns ``(loss, clip_fraction)``.
- ``value``: the clipped value loss ``max((v-R)^2, (v_clip-R)^2) / 2``, masked mean.
- ``kd``: knowledge distillation, ``T^2 * KL`` (forward KL(teacher||student) or reverse
  KL(student||teacher)) at temperature ``T``, averaged over the masked-in tokens.

Masks are 1 for positions that count and 0 for the rest; a masked mean over zero
positions is 0 (not NaN), so an empty batch cannot poison training.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simtune.config import ConfigError


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


class SFTLoss(nn.Module):
    """Mean token cross-entropy over labels != ``ignore_index``."""

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100, shift: bool = True):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"sft loss: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing, self.ignore_index, self.shift = label_smoothing, ignore_index, shift

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.shift:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        logits = logits.reshape(-1, logits.size(-1)).float()
        labels = labels.reshape(-1).to(logits.device)
        if not (labels != self.ignore_index).any():
            return logits.sum() * 0.0  # keeps the graph, no NaN
        return F.cross_entropy(logits, labels, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)


class PairwiseLoss(nn.Module):
    """Bradley-Terry reward loss: ``-logsigmoid(r_chosen - r_rejected - margin)``, mean over pairs."""

    def __init__(self, margin: float = 0.0):
        super().__init__()
        self.margin = margin

    def forward(self, r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float | None = None):
        m = self.margin if margin is None else margin
        return -F.logsigmoid(r_chosen - r_rejected - m).mean()


class PolicyLoss(nn.Module):
    """Clipped surrogate: ``-min(ratio*A, clip(ratio, 1-eps_low, 1+eps_high)*A)``, masked mean.

    ``forward(logp, old_logp, advantages, mask=None) -> (loss, clip_fraction)``; advantages
    of shape (B,) are broadcast over tokens. clip_fraction is the share of counted tokens
    whose clipped term was active (ratio beyond the range in the direction of A, so the
    token gets no gradient).
    """

    def __init__(self, epsilon: float = 0.2, epsilon_high: float | None = None):
        super().__init__()
        self.eps_low = epsilon
        self.eps_high = epsilon if epsilon_high is None else epsilon_high

    def forward(self, logp, old_logp, advantages, mask=None):
        if advantages.dim() == logp.dim() - 1:
            advantages = advantages.unsqueeze(-1)
        ratio = torch.exp(logp - old_logp)
        clipped = torch.clamp(ratio, 1 - self.eps_low, 1 + self.eps_high)
        per_token = -torch.min(ratio * advantages, clipped * advantages)
        loss = masked_mean(per_token, mask)
        with torch.no_grad():
            active = ((ratio < 1 - self.eps_low) & (advantages < 0)) | ((ratio > 1 + self.eps_high) & (advantages > 0))
            clip_fraction = masked_mean(active.to(per_token.dtype), mask)
        return loss, clip_fraction


class ValueLoss(nn.Module):
    """Clipped value loss: ``max((v-R)^2, (v_clip-R)^2) / 2`` with
    ``v_clip = old_v + clip(v - old_v, -eps, eps)``, masked mean."""

    def __init__(self, clip_eps: float = 0.2):
        super().__init__()
        self.clip_eps = clip_eps

    def forward(self, values, old_values, returns, mask=None):
        v_clip = old_values + torch.clamp(values - old_values, -self.clip_eps, self.clip_eps)
        per = torch.max((values - returns) ** 2, (v_clip - returns) ** 2) / 2
        return masked_mean(per, mask)


class KDLoss(nn.Module):
    """``T^2 * KL`` between teacher and student token distributions at temperature T.

    forward: KL(teacher || student) = sum p_t (log p_t - log p_s) (mode-covering);
    reverse: KL(student || teacher) = sum p_s (log p_s - log p_t) (mode-seeking).
    ``forward(student_logits, teacher_logits, mask=None)``: logits (..., V), mask (...).
    """

    def __init__(self, temperature: float = 1.0, direction: str = "forward"):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"kd loss: temperature must be > 0, got {temperature}")
        if direction not in ("forward", "reverse"):
            raise ConfigError(f"kd loss: direction must be 'forward' or 'reverse', got {direction!r}")
        self.temperature, self.direction = temperature, direction

    def per_token(self, student_logits, teacher_logits):
        t = self.temperature
        log_ps = F.log_softmax(student_logits.float() / t, dim=-1)
        log_pt = F.log_softmax(teacher_logits.float() / t, dim=-1)
        if self.direction == "forward":
            kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
        else:
            kl = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
        return kl * t * t

    def forward(self, student_logits, teacher_logits, mask=None):
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"kd loss: student logits {tuple(student_logits.shape)} and teacher logits "
                             f"{tuple(teacher_logits.shape)} differ in shape")
        return masked_mean(self.per_token(student_logits, teacher_logits), mask)


LOSSES: dict[str, type[nn.Module]] = {
    "sft": SFTLoss,
    "pairwise": PairwiseLoss,
    "policy": PolicyLoss,
    "value": ValueLoss,
    "kd": KDLoss,
}


def create_loss(name: str, **kw: Any) -> nn.Module:
    """``create_loss("kd", temperature=2.0, direction="reverse")`` -> an ``nn.Module``."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; available: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kw)
    except TypeError as e:
        raise ConfigError(f"loss '{name}': {e}") from None
