"""How a condition reaches a generator: condition → vector → modulation of the normalisation layers.

Three conditioning modes, shared by every generator (GAN and diffusion):

* ``class``: a class index → a learned table row (BigGAN's shared class embedding);
* ``embedding``: a classifier embedding (N, D), L2-normalised → a linear map (IC-GAN, RCG);
* ``none``: no condition; the generator modulates its BatchNorms with the latent alone
  (self-modulation, Chen et al. 2019), so all three modes share one architecture.

:class:`ConditionalBatchNorm2d` turns a vector into per-channel gain and bias (de Vries et al. 2017,
BigGAN): BatchNorm without its own affine, then ``x̂ · (1 + γ(c)) + β(c)``. γ and β start at zero,
so a fresh layer is a plain BatchNorm and the condition's influence is learned from there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CONDITIONING_MODES = ("class", "embedding", "none")


class ConditionEncoder(nn.Module):
    """Condition → (N, condition_dim) vector; ``none`` → an empty (N, 0) vector."""

    def __init__(self, mode: str, condition_dim: int, num_classes: int = 0, embedding_dim: int = 0):
        super().__init__()
        if mode not in CONDITIONING_MODES:
            raise ValueError(f"conditioning mode must be one of {CONDITIONING_MODES} (got {mode!r})")
        self.mode = mode
        self.output_dim = 0 if mode == "none" else condition_dim
        if mode == "class":
            self.table = nn.Embedding(num_classes, condition_dim)
        elif mode == "embedding":
            self.linear = nn.Linear(embedding_dim, condition_dim)

    def forward(self, condition: Tensor | None, batch: int) -> Tensor:
        """``condition``: (N,) int64 class ids | (N, D) float embeddings | None → (N, output_dim)."""
        if self.mode == "class":
            return self.table(condition)
        if self.mode == "embedding":
            return self.linear(condition.float())
        return torch.zeros(batch, 0, device=self._device())

    def style(self, z: Tensor, condition: Tensor | None) -> Tensor:
        """[z, condition vector] (N, latent_dim + output_dim): what a generator's normalisations are conditional on."""
        vector = self(condition, z.shape[0])
        return torch.cat([z, vector.to(z.dtype)], 1) if vector.shape[1] else z

    def _device(self) -> torch.device:
        return next(self.parameters(), torch.empty(0)).device


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d whose gain and bias are linear functions of a style vector (N, style_dim)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(style_dim, channels)
        self.bias = nn.Linear(style_dim, channels)
        for layer in (self.gain, self.bias):  # start as a plain BatchNorm: γ = 1, β = 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        gain = 1.0 + self.gain(style)
        return self.norm(x) * gain[:, :, None, None] + self.bias(style)[:, :, None, None]
