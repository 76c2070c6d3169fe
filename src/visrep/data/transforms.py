"""Normalisation statistics and augmentation applied to whole batches of uint8 tensors.

Batch-level augmentation (as airbench does on GPU) costs a few tensor ops per batch instead of
a Python call per image, which is what lets a 2-core CPU feed a model at >50k images/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(tuple(data["mean"]), tuple(data["std"]))


def compute_normalization(images: np.ndarray, chunk: int = 8192) -> Normalization:
    """Per-channel mean/std of (N, C, H, W) uint8 images (use the train split only), in float64."""
    channels = images.shape[1]
    total, total_sq, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(images), chunk):
        batch = np.asarray(images[start:start + chunk], dtype=np.float64) / 255.0
        total += batch.sum(axis=(0, 2, 3))
        total_sq += (batch ** 2).sum(axis=(0, 2, 3))
        count += batch.shape[0] * batch.shape[2] * batch.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean ** 2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel: leave its scale alone
    return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def normalize_uint8(batch: torch.Tensor, norm: Normalization, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, C, H, W) uint8 → float ``(x/255 − mean) / std`` in one fused scale and shift."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in norm.std], dtype=dtype).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(norm.mean, norm.std)], dtype=dtype).view(1, -1, 1, 1)
    return torch.addcmul(shift, batch.to(dtype), scale)


def denormalize_to_uint8(batch: torch.Tensor, norm: Normalization) -> torch.Tensor:
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)
    return ((batch.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)


def random_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the (N, C, H, W) batch left-right."""
    return augment_batch(batch, True, 0, generator)


def random_translate(batch: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by an independent random (dx, dy) ∈ [−pixels, pixels]², reflect-padded."""
    return augment_batch(batch, False, pixels, generator)


def augment_batch(batch: torch.Tensor, flip: bool, translate: int, generator: torch.Generator,
                  mirrored: torch.Tensor | None = None) -> torch.Tensor:
    """Random flip then random translation of each image, as a single gather over the batch.

    ``mirrored`` (N,) bool, when given, says which images to flip instead of drawing it at random.

    Each output pixel (i, j) of image n reads input pixel (reflect(i + dy_n), reflect(j' + dx_n)),
    where j' = W−1−j for flipped images. One index computation and one ``gather`` replace a
    pad, a flip and per-shift slicing (≈6× faster on a 2-core CPU, works on uint8).
    """
    if not flip and translate <= 0 and mirrored is None:
        return batch
    n, channels, height, width = batch.shape
    dy = torch.randint(-translate, translate + 1, (n, 1), generator=generator) if translate > 0 else 0
    dx = torch.randint(-translate, translate + 1, (n, 1), generator=generator) if translate > 0 else 0
    columns = torch.arange(width).expand(n, width)
    if flip and mirrored is None:
        mirrored = torch.rand(n, generator=generator) < 0.5
    if mirrored is not None:
        columns = torch.where(mirrored[:, None], width - 1 - columns, columns)
    rows = _reflect(torch.arange(height).expand(n, height) + dy, height)  # (N, H)
    columns = _reflect(columns + dx, width)  # (N, W)
    flat = (rows[:, :, None] * width + columns[:, None, :]).view(n, 1, height * width).expand(n, channels, -1)
    return batch.reshape(n, channels, height * width).gather(2, flat).view(n, channels, height, width)


def _reflect(index: torch.Tensor, length: int) -> torch.Tensor:
    """Reflect out-of-range indices back into [0, length) (edge pixel not repeated, like F.pad 'reflect')."""
    index = index.abs()
    return torch.where(index >= length, 2 * (length - 1) - index, index)
