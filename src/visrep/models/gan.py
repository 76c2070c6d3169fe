"""GAN networks for 8-64 px images: a residual generator with conditional BatchNorm, a projection
discriminator, and a discriminator head on a frozen classifier's features.

The recipe is the one with the longest track record at this scale (SNGAN, Miyato et al. 2018;
cGANs with projection discriminator, Miyato & Koyama 2018; BigGAN, Brock et al. 2019):

* Generator: z (+ condition vector) → linear → (width, b, b) → residual up-blocks (×2 each, nearest
  upsampling) whose BatchNorms are conditional on ``style = [z, c]`` → BN → ReLU → 3×3 conv → tanh.
  b is the image size halved while it stays even and ≥ 4 (8 → 4, 28 → 7, 32 → 4, 64 → 4).
* Discriminator: residual down-blocks (the first one "optimised", as in SNGAN) to b × b, one more
  block, ReLU and a sum over space → φ (N, width); logit = w·φ + ⟨V c, φ⟩, the projection term
  with the class embedding (``class``) or a linear map of the classifier embedding (``embedding``).
* Spectral norm on the convolutions and linear layers of both networks (BigGAN: in G too); the
  conditional BatchNorm's gain and bias maps and the condition encoder have none.
* :class:`ProjectedHead`: the same projection discriminator, small, reading a frozen classifier's
  intermediate feature map at the classifier's own resolution (Projected GAN, Sauer et al. 2021).

All networks take images in [-1, 1], (N, C, S, S), and a condition that is (N,) int64 class ids,
(N, D) float embeddings or None (``none`` mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from visrep.errors import UserError
from visrep.models.conditioning import ConditionalBatchNorm2d, ConditionEncoder
from visrep.models.registry import register_model

MIN_SIZE, MAX_SIZE = 8, 128  # pixels: below 8 there is no up-block; above 128 these widths are too small


def base_resolution(image_size: int) -> tuple[int, int]:
    """(b, number of ×2 up-blocks): ``image_size`` halved while it stays even and ≥ 4."""
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise UserError(f"the GAN supports images of {MIN_SIZE}-{MAX_SIZE} px (got {image_size})")
    base, blocks = image_size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base, blocks = base // 2, blocks + 1
    if base > 8:  # an odd size (33, 127) would leave no up-block and a stem as large as the image
        raise UserError(f"the GAN needs image_size = b·2^k with 4 ≤ b ≤ 8 (8, 12, 16, 24, 28, 32, 48, 56, 64, ...); "
                        f"got {image_size}: set data.image_size")
    return base, blocks


def discriminator_halvings(image_size: int) -> int:
    """How many times a discriminator halves the image: as many as the generator doubles, at least one."""
    return max(1, base_resolution(image_size)[1])


def sn_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Module:
    """A spectrally normalised conv; ``(kernel - 1) // 2`` padding keeps S (stride 1) or halves it (stride 2)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2)
    return spectral_norm(initialised(conv))


def _sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    return spectral_norm(initialised(nn.Linear(in_features, out_features, bias=bias)))


def initialised(layer: nn.Module) -> nn.Module:
    """Xavier-uniform weights and zero biases (SNGAN, BigGAN). PyTorch's default bias, U(±1/√fan_in), is
    U(±1) for a 1×1 conv on a greyscale image: spectral norm scales the weights, never the biases, so
    such a bias drowns the image the discriminator is meant to judge."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class GeneratorBlock(nn.Module):
    """(N, c_in, H, W), style (N, s) → (N, c_out, 2H, 2W): CBN-ReLU-up-conv-CBN-ReLU-conv + up(conv1×1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_channels, style_dim)
        self.conv1 = sn_conv(in_channels, out_channels, 3)
        self.norm2 = ConditionalBatchNorm2d(out_channels, style_dim)
        self.conv2 = sn_conv(out_channels, out_channels, 3)
        self.shortcut = sn_conv(in_channels, out_channels, 1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, style)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), style)))
        # conv then upsample: the same as upsample then conv for a 1×1 kernel, at a quarter of the cost
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class Generator(nn.Module):
    def __init__(self, image_size: int, channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 latent_dim: int = 128, width: int = 128, condition_dim: int = 128):
        super().__init__()
        self.base, blocks = base_resolution(image_size)
        self.mode, self.latent_dim, self.width = mode, latent_dim, width
        self.image_shape = (channels, image_size, image_size)
        self.condition = ConditionEncoder(mode, condition_dim, num_classes, embedding_dim)
        style_dim = latent_dim + self.condition.output_dim
        self.stem = _sn_linear(style_dim, width * self.base * self.base)
        self.blocks = nn.ModuleList(GeneratorBlock(width, width, style_dim) for _ in range(blocks))
        self.out_norm = nn.BatchNorm2d(width)
        self.out_conv = sn_conv(width, channels, 3)

    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """z (N, latent_dim), condition → images (N, C, S, S) in [-1, 1]."""
        style = self.condition.style(z, condition)
        h = self.stem(style).view(z.shape[0], self.width, self.base, self.base)
        for block in self.blocks:
            h = block(h, style)
        return self.out_conv(F.relu(self.out_norm(h))).tanh()


class DiscriminatorBlock(nn.Module):
    """(N, c_in, H, W) → (N, c_out, H/2 or H, ...): [ReLU]-conv-ReLU-conv-[pool] + conv1×1-[pool] shortcut."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, first: bool):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = sn_conv(in_channels, out_channels, 3)
        self.conv2 = sn_conv(out_channels, out_channels, 3)
        self.shortcut = sn_conv(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.first else F.relu(x))  # the first block sees images: no ReLU on them
        h = self.conv2(F.relu(h))
        skip = x
        if self.down:
            h, skip = F.avg_pool2d(h, 2), (F.avg_pool2d(x, 2) if self.first else skip)
        skip = self.shortcut(skip)  # the first block pools before its 1×1 conv (SNGAN's optimised block)
        if self.down and not self.first:
            skip = F.avg_pool2d(skip, 2)
        return h + skip


class ProjectionOutput(nn.Module):
    """φ (N, width) and the condition → logit (N,) = w·φ + b + ⟨V c, φ⟩ (projection discriminator)."""

    def __init__(self, width: int, mode: str, num_classes: int = 0, embedding_dim: int = 0):
        super().__init__()
        self.mode = mode
        self.linear = _sn_linear(width, 1)
        if mode == "class":
            table = nn.Embedding(num_classes, width)
            nn.init.xavier_uniform_(table.weight)
            self.projection = spectral_norm(table)
        elif mode == "embedding":
            self.projection = _sn_linear(embedding_dim, width, bias=False)

    def forward(self, features: Tensor, condition: Tensor | None) -> Tensor:
        logit = self.linear(features).squeeze(1)
        if self.mode == "class":
            logit = logit + (self.projection(condition) * features).sum(1)
        elif self.mode == "embedding":
            logit = logit + (self.projection(condition.to(features.dtype)) * features).sum(1)
        return logit


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """(N, C, H, W) → (N, C + 1, H, W): the last channel is the average standard deviation of the features
    across each group of ``group`` images (ProGAN, Karras et al. 2018). A generator that gives one image
    for every z shows the discriminator a near-zero value here, so mode collapse becomes visible to it."""
    n, c, h, w = x.shape
    group = next(g for g in range(min(group, n), 0, -1) if n % g == 0)
    grouped = x.float().view(group, n // group, c, h, w)
    # the variance written out: Tensor.var over the leading dim was an order of magnitude slower on a CPU,
    # forward + backward (benchmarks/notes/measurements-behind-code-choices.md)
    centred = grouped - grouped.mean(dim=0)
    spread = (centred.square().mean(dim=0) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (N / group,)
    channel = spread.repeat(group).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, channel], dim=1)


class Discriminator(nn.Module):
    def __init__(self, image_size: int, channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 width: int = 128, minibatch_std: bool = True):
        super().__init__()
        downs = discriminator_halvings(image_size)
        blocks = [DiscriminatorBlock(channels, width, down=True, first=True)]
        blocks += [DiscriminatorBlock(width, width, down=True, first=False) for _ in range(downs - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.minibatch_std = minibatch_std
        self.last = DiscriminatorBlock(width + int(minibatch_std), width, down=False, first=False)
        self.output = ProjectionOutput(width, mode, num_classes, embedding_dim)

    def forward(self, images: Tensor, condition: Tensor | None = None) -> Tensor:
        """images (N, C, S, S) in [-1, 1] → logits (N,) float32 (real > 0 > fake under the hinge loss)."""
        h = self.blocks(images)
        if self.minibatch_std:
            h = minibatch_stddev(h)
        features = F.relu(self.last(h)).sum(dim=(2, 3))
        return self.output(features.float(), condition)


class ProjectedHead(nn.Module):
    """A small projection discriminator on a frozen classifier's feature map (N, C_f, H, W) or vector (N, D)."""

    def __init__(self, feature_channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 width: int = 128):
        super().__init__()
        self.mix = sn_conv(feature_channels, width, 1)  # channels mixed first, as Projected GAN's CCM does
        self.conv = sn_conv(width, width, 3)
        self.output = ProjectionOutput(width, mode, num_classes, embedding_dim)

    def forward(self, features: Tensor, condition: Tensor | None = None) -> Tensor:
        x = features.float()
        if x.dim() == 2:  # a pooled layer (penultimate): a 1×1 map
            x = x[:, :, None, None]
        h = F.leaky_relu(self.mix(x), 0.2)
        h = F.leaky_relu(self.conv(h), 0.2)
        return self.output(h.sum(dim=(2, 3)), condition)


# registered as classes: create_model checks the options against their signatures, and
# model.config (saved beside the weights) rebuilds them
register_model("gan_generator", kind="generator")(Generator)
register_model("gan_discriminator", kind="discriminator")(Discriminator)
register_model("projected_head", kind="discriminator")(ProjectedHead)
