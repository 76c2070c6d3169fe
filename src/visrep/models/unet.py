"""The diffusion model's denoiser: a small ADM-style U-Net for 8–128 px images (sized for 16–64).

Shape: ``levels = len(multipliers)`` resolutions, each with ``blocks`` residual blocks, a stride-2
convolution down between levels and nearest-neighbour upsampling + convolution back up, skip
connections concatenated on the way up, and one self-attention block in the middle (at the lowest
resolution, where it is cheap: 7×7 tokens for MNIST; at least 4×4 is required). Going up, the convolution runs before the
nearest-neighbour upsampling and narrows to the next level's width: at 28 px that is 8× fewer
operations than convolving the upsampled map (measured, benchmarks/notes). The image side must halve cleanly
``levels − 1`` times.

How time and condition enter (ADM, Dhariwal & Nichol 2021; RCG, Li et al. 2024): the timestep's
sinusoidal features go through an MLP to a vector ``e`` (N, 4·width); the condition is mapped to the
same size — a table row per class (N(0, 1) rows, as in ADM), or a **zero-initialised** linear
projection of the classifier embedding, so that a fresh embedding-conditional model starts as an
unconditional one (RCG) — and *added* to ``e``. Every residual
block applies ``e`` by scale-shift normalisation: ``GroupNorm(h) · (1 + s) + b``.

Classifier-free guidance needs an unconditional branch: ``drop`` (N,) bool replaces a row's
condition by a learned null vector (condition dropout in training; the second half of the
guidance batch at sampling).

``forward(..., features=True)`` also returns the middle block's map (N, C, h, w): the feature that
the REPA loss aligns with the frozen classifier's features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import UserError
from visrep.models.conditioning import CONDITIONING_MODES
from visrep.models.registry import register_model


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)  # 32 groups where the width allows (widths are multiples of 8)


def _zeroed(layer: nn.Module) -> nn.Module:
    for parameter in layer.parameters():
        nn.init.zeros_(parameter)
    return layer


def timestep_features(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """(N,) timesteps (any scale, here 0..999) → (N, dim) sinusoidal features (Transformer / ADM)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResidualBlock(nn.Module):
    """norm-SiLU-conv, scale-shift by the time/condition vector, SiLU-dropout-conv (zero-initialised), + skip."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.dropout(F.silu(h)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions of a map, as a residual (output zero-initialised)."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        wanted = max(1, channels // head_dim)  # heads of ~head_dim channels, as many as divide the width evenly
        self.heads = max(h for h in range(1, wanted + 1) if channels % h == 0)
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zeroed(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        attended = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(attended.transpose(-1, -2).reshape(n, c, h, w))


class DenoiserCondition(nn.Module):
    """Condition → (N, emb_dim) vector added to the time embedding; ``drop`` rows get the learned null vector."""

    def __init__(self, mode: str, emb_dim: int, num_classes: int, embedding_dim: int):
        super().__init__()
        self.mode = mode
        null = None
        if mode == "class":  # rows ~ N(0, 1) as in ADM: a zeroed table took > 600 steps to start telling classes apart
            self.table = nn.Embedding(num_classes, emb_dim)
            null = torch.randn(emb_dim)  # the "no class" row, drawn like the others
        elif mode == "embedding":  # zero-initialised (RCG): the model starts unconditional and learns the embedding in
            self.projection = _zeroed(nn.Linear(embedding_dim, emb_dim))
            null = torch.zeros(emb_dim)
        self.null = nn.Parameter(null) if null is not None else None

    def forward(self, condition: Tensor | None, drop: Tensor | None, like: Tensor) -> Tensor:
        if self.mode == "none":
            return torch.zeros_like(like)
        vector = self.table(condition) if self.mode == "class" else self.projection(condition.to(like.dtype))
        if drop is None:
            return vector
        return torch.where(drop[:, None], self.null.to(vector.dtype).expand_as(vector), vector)


class UNet(nn.Module):
    def __init__(self, image_size: int, channels: int, mode: str, num_classes: int = 0, embedding_dim: int = 0,
                 width: int = 64, multipliers: tuple[int, ...] = (1, 2, 2), blocks: int = 1, dropout: float = 0.0,
                 attention: bool = True, patch: int = 1):
        super().__init__()
        _check_sizes(image_size, channels, mode, multipliers, blocks, width, patch)
        self.patch = patch
        self.mode, self.image_shape = mode, (channels, image_size, image_size)
        self.width = width
        emb_dim = 4 * width
        self.time = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.condition = DenoiserCondition(mode, emb_dim, num_classes, embedding_dim)
        # patch p > 1: p×p pixels → p²·C channels first, and back at the end (pixel (un)shuffle)
        self.stem = nn.Conv2d(channels * patch * patch, width, 3, padding=1)
        widths = [width * m for m in multipliers]
        self.down, self.downsample, skips, current = nn.ModuleList(), nn.ModuleList(), [width], width
        for level, level_width in enumerate(widths):
            for _ in range(blocks):
                self.down.append(ResidualBlock(current, level_width, emb_dim, dropout))
                current = level_width
                skips.append(current)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skips.append(current)
        self.middle = nn.ModuleList([ResidualBlock(current, current, emb_dim, dropout),
                                     ResidualBlock(current, current, emb_dim, dropout)])
        self.attention = SelfAttention(current) if attention else nn.Identity()
        self.feature_channels = current
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, level_width in reversed(list(enumerate(widths))):
            for _ in range(blocks + 1):
                self.up.append(ResidualBlock(current + skips.pop(), level_width, emb_dim, dropout))
                current = level_width
            if level > 0:  # conv at the low resolution, then upsample: a quarter of the cost of the reverse
                self.upsample.append(nn.Conv2d(current, widths[level - 1], 3, padding=1))
                current = widths[level - 1]
        self.out_norm = _group_norm(current)
        self.out_conv = _zeroed(nn.Conv2d(current, channels * patch * patch, 3, padding=1))
        self.levels, self.blocks = len(widths), blocks

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None, drop: Tensor | None = None,
                features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x (N, C, S, S) noisy images, t (N,) timesteps → (N, C, S, S) prediction [, middle map]."""
        emb = self.time(timestep_features(t, self.width).to(x.dtype))
        emb = emb + self.condition(condition, drop, emb)
        h = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        skips, blocks = [h], iter(self.down)
        for level in range(self.levels):
            for _ in range(self.blocks):
                h = next(blocks)(h, emb)
                skips.append(h)
            if level < self.levels - 1:
                h = self.downsample[level](h)
                skips.append(h)
        h = self.middle[0](h, emb)
        h = self.attention(h)
        h = self.middle[1](h, emb)
        middle = h
        blocks, upsamples = iter(self.up), iter(self.upsample)
        for level in reversed(range(self.levels)):
            for _ in range(self.blocks + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], dim=1), emb)
            if level > 0:
                h = F.interpolate(next(upsamples)(h), scale_factor=2, mode="nearest")
        out = self.out_conv(F.silu(self.out_norm(h)))
        out = F.pixel_shuffle(out, self.patch) if self.patch > 1 else out
        return (out, middle) if features else out


def _check_sizes(image_size: int, channels: int, mode: str, multipliers, blocks: int, width: int,
                 patch: int) -> None:
    if mode not in CONDITIONING_MODES:
        raise UserError(f"conditioning must be one of {', '.join(CONDITIONING_MODES)} (got '{mode}')")
    if not multipliers or blocks < 1 or width < 8 or width % 8:
        raise UserError(f"the U-Net needs ≥ 1 level, ≥ 1 block per level and a width that is a multiple of 8 "
                        f"(got multipliers {list(multipliers)}, blocks {blocks}, width {width})")
    if patch < 1 or image_size % patch:
        raise UserError(f"the U-Net's patch ({patch}) must be ≥ 1 and divide the image side ({image_size} px)")
    halvings = len(multipliers) - 1
    side = image_size // patch
    if side % (2 ** halvings) or side // 2 ** halvings < 4 or not 8 <= image_size <= 128:
        raise UserError(f"a {len(multipliers)}-level U-Net needs an image side between 8 and 128 px that halves "
                        f"{halvings} times and stays ≥ 4 px (got {image_size} px): change diffusion.multipliers or "
                        f"data.image_size")
    if channels not in (1, 3):
        raise UserError(f"images must have 1 or 3 channels (got {channels})")


register_model("unet", kind="denoiser")(UNet)
