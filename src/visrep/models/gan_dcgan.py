"""DCGAN-style GAN networks ("standard CNN" of SNGAN, Miyato et al. 2018): plain convolutions, no
residual blocks, channels doubling as the resolution halves (``gan.architecture: dcgan``). At width 32
they take about a third of the multiply-adds per 28 px image of the residual networks at width 64
(:mod:`visrep.models.gan`). On a 2-core CPU the measured gain in images/s was smaller (+11 %), but
their samples were better at equal training time (benchmarks/notes/2026-12-01-gan-dcgan.md).

* Generator: style = [z, c] → linear → (4w, b, b) for 28 px (w · 2^k at b × b for k up-steps) →
  k × [conditional BatchNorm → ReLU → 4×4 transposed conv, stride 2, channels halved] → conditional
  BatchNorm → ReLU → 3×3 conv → tanh. No spectral norm (SNGAN normalises D only); BatchNorm keeps G
  in range.
* Discriminator: 3×3 conv (w) → per halving, a 4×4 stride-2 conv that doubles the channels and a 3×3
  conv → minibatch standard deviation → 3×3 conv → LeakyReLU(0.1) → sum over space → φ → the same
  projection output as the residual discriminator. Spectral norm on every layer.

Same interface as the residual networks: images in [-1, 1], (N, C, S, S); the condition is (N,)
int64 class ids, (N, D) float embeddings or None.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from visrep.models.conditioning import ConditionalBatchNorm2d, ConditionEncoder
from visrep.models.gan import (ProjectionOutput, base_resolution, discriminator_halvings, initialised,
                              minibatch_stddev, sn_conv)
from visrep.models.registry import register_model

SLOPE = 0.1  # LeakyReLU slope of SNGAN's standard CNN discriminator


class UpStep(nn.Module):
    """(N, c_in, H, W), style (N, s) → (N, c_out, 2H, 2W): CBN → ReLU → 4×4 transposed conv, stride 2."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int):
        super().__init__()
        self.norm = ConditionalBatchNorm2d(in_channels, style_dim)
        self.conv = initialised(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.conv(F.relu(self.norm(x, style)))


class DcganGenerator(nn.Module):
    def __init__(self, image_size: int, channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 latent_dim: int = 128, width: int = 32, condition_dim: int = 128):
        super().__init__()
        self.base, steps = base_resolution(image_size)
        self.mode, self.latent_dim = mode, latent_dim
        self.top = width * 2 ** steps  # channels at b × b; halved by each up-step down to ``width``
        self.image_shape = (channels, image_size, image_size)
        self.condition = ConditionEncoder(mode, condition_dim, num_classes, embedding_dim)
        style_dim = latent_dim + self.condition.output_dim
        self.stem = initialised(nn.Linear(style_dim, self.top * self.base * self.base))
        self.steps = nn.ModuleList(UpStep(width * 2 ** (i + 1), width * 2 ** i, style_dim)
                                   for i in reversed(range(steps)))
        self.out_norm = ConditionalBatchNorm2d(width, style_dim)
        self.out_conv = initialised(nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """z (N, latent_dim), condition → images (N, C, S, S) in [-1, 1]."""
        style = self.condition.style(z, condition)
        h = self.stem(style).view(z.shape[0], self.top, self.base, self.base)
        for step in self.steps:
            h = step(h, style)
        return self.out_conv(F.relu(self.out_norm(h, style))).tanh()


class DcganDiscriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 width: int = 32, minibatch_std: bool = True):
        super().__init__()
        downs = discriminator_halvings(image_size)
        layers: list[nn.Module] = [sn_conv(channels, width, 3)]
        for i in range(downs):  # (width · 2^i, S / 2^i) → (width · 2^(i+1), S / 2^(i+1))
            wide = width * 2 ** (i + 1)
            layers += [sn_conv(wide // 2, wide, 4, stride=2), sn_conv(wide, wide, 3)]
        self.layers = nn.ModuleList(layers)
        self.minibatch_std = minibatch_std
        top = width * 2 ** downs
        self.last = sn_conv(top + int(minibatch_std), top, 3)
        self.output = ProjectionOutput(top, mode, num_classes, embedding_dim)

    def forward(self, images: Tensor, condition: Tensor | None = None) -> Tensor:
        """images (N, C, S, S) in [-1, 1] → logits (N,) float32 (real > 0 > fake under the hinge loss)."""
        h = images
        for layer in self.layers:
            h = F.leaky_relu(layer(h), SLOPE)
        if self.minibatch_std:
            h = minibatch_stddev(h)
        features = F.leaky_relu(self.last(h), SLOPE).sum(dim=(2, 3))
        return self.output(features.float(), condition)


register_model("dcgan_generator", kind="generator")(DcganGenerator)
register_model("dcgan_discriminator", kind="discriminator")(DcganDiscriminator)
