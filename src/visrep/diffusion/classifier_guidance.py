"""Classifier guidance (Dhariwal & Nichol 2021) with the noise-aware guide, for a v-prediction model.

ADM's DDIM form shifts the noise prediction along the guide's gradient:
ε' = ε − s·√(1 − ᾱ)·∇ₓ log p(y | x_t, t). Our model predicts v, and ε = √ᾱ·v + √(1 − ᾱ)·x_t, so the
same shift is v' = v − s·√(1 − ᾱ)/√ᾱ · ∇ₓ log p(y | x_t, t). At the noisiest step √ᾱ → 0; ᾱ is
floored at ``ALPHA_BAR_FLOOR`` there (the samplers clip the resulting x₀ prediction to [−1, 1] anyway).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALPHA_BAR_FLOOR = 1e-3  # √ᾱ ≥ 0.032: a finite push at pure noise


def guide_gradient(guide: nn.Module, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
    """∇ₓ Σ log p(labels | x, t) under the guide, float32, same shape as ``x``."""
    with torch.enable_grad():
        x = x.detach().float().requires_grad_(True)
        log_probs = F.log_softmax(guide(x, t).float(), dim=1)
        chosen = log_probs.gather(1, labels.view(-1, 1)).sum()
        return torch.autograd.grad(chosen, x)[0]


def guided_velocity(velocity: Tensor, gradient: Tensor, alpha_bar: float, scale: float) -> Tensor:
    """v' = v − s·√(1 − ᾱ)/√ᾱ · ∇ log p (ᾱ floored)."""
    alpha_bar = max(float(alpha_bar), ALPHA_BAR_FLOOR)
    return velocity - scale * ((1 - alpha_bar) ** 0.5 / alpha_bar ** 0.5) * gradient
