"""The noise-aware classifier that classifier guidance needs: the project's classifier, reading the
diffusion timestep too, fine-tuned on noised images.

A clean classifier's gradients on a noisy image x_t are meaningless (it never saw one), so guidance
uses a copy fine-tuned on x_t at every noise level (Dhariwal & Nichol 2021, whose guide is a
time-conditioned U-Net encoder). Here the copy keeps its own architecture — any registered
classifier — and reads the timestep through FiLM on its penultimate features:
``head(f · (1 + s(t)) + b(t))``, with (s, b) from an MLP of the timestep's sinusoidal features,
zero-initialised so that fine-tuning starts from the clean classifier exactly.

Inputs are in the diffusion model's space (pixels mapped to [-1, 1], plus noise), (N, C, S, S);
the classifier's own input normalisation is kept as buffers, so the module is self-contained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visrep.models.registry import create_model, register_model
from visrep.models.unet import timestep_features


class NoiseAwareClassifier(nn.Module):
    def __init__(self, backbone: dict, mean: list[float], std: list[float], time_dim: int = 128):
        super().__init__()
        self.backbone = create_model(**backbone)
        self.time_dim = time_dim
        width = self.backbone.embedding_dim
        self.film = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, 2 * width))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x (N, C, S, S) in diffusion space, t (N,) timesteps → logits (N, K)."""
        pixels = (x.float() + 1) / 2  # [-1, 1] → [0, 1], noise included
        normalized = ((pixels - self.mean) / self.std).to(x.dtype)
        _, features = self.backbone.forward_intermediates(normalized, ["penultimate"])
        penultimate = features["penultimate"]
        scale, shift = self.film(timestep_features(t, self.time_dim).to(penultimate.dtype)).chunk(2, dim=1)
        return self.backbone.head(penultimate * (1 + scale) + shift) * self.backbone.logit_scale


register_model("noise_aware_classifier", kind="guide")(NoiseAwareClassifier)
