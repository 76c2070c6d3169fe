"""New images → the normalised batch a classifier expects.

Accepted input (the classifier expects (C, S, S) images; C and S come from its run):

* a uint8 or float tensor / NumPy array of shape (N, C, H, W), (N, H, W, C) or (N, H, W) (grey);
  uint8 is 0–255, float is unnormalised [0, 1] (already-normalised floats are refused: they
  would be normalised twice);
* a PIL image or a list of PIL images.

Mismatched channels or size are an error by default. With ``convert=True`` they are converted:
RGB → grey by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), grey → RGB by repetition, RGBA →
RGB by dropping alpha; other sizes are centre-cropped to a square and resized (bilinear,
antialiased) to S × S — the same geometry as the data pipeline's default ``resize: crop``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.data.transforms import Normalization, normalize_uint8
from visrep.errors import UserError

LUMA = (0.299, 0.587, 0.114)


def to_model_input(images, expected: tuple[int, int, int], normalization: Normalization,
                   convert: bool = False) -> Tensor:
    """Any accepted input (see module doc) → normalised float32 (N, C, S, S) for ``expected`` = (C, S, S)."""
    batch = as_nchw(images)
    scaled = _to_0_255(batch)
    channels, height, width = expected
    if scaled.shape[1] != channels or tuple(scaled.shape[2:]) != (height, width):
        if not convert:
            raise UserError(f"the classifier expects images of shape (N, {channels}, {height}, {width}); got "
                            f"{tuple(batch.shape)}. Pass convert=True to convert channels and resize")
        scaled = _resize(_convert_channels(scaled, channels), (height, width))
    return normalize_uint8(scaled, normalization)  # float input in 0..255 takes the same fused path as uint8


def as_nchw(images) -> Tensor:
    """Any accepted input → an (N, C, H, W) tensor of its own dtype (uint8 stays compact)."""
    if _is_pil(images) or (isinstance(images, (list, tuple)) and images and all(_is_pil(i) for i in images)):
        images = np.stack([np.asarray(image) for image in ([images] if _is_pil(images) else images)])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, Tensor):
        raise UserError(f"images must be a tensor, a NumPy array or PIL images (got {type(images).__name__})")
    if images.ndim == 3:  # (N, H, W) grey
        return images.unsqueeze(1)
    if images.ndim != 4:
        raise UserError(f"images must be a batch (N, C, H, W), (N, H, W, C) or (N, H, W); got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3, 4) and images.shape[-1] in (1, 3, 4):  # channels-last array, e.g. from PIL
        images = images.permute(0, 3, 1, 2)
    if images.shape[1] not in (1, 3, 4):
        raise UserError(f"images must have 1, 3 or 4 channels; got shape {tuple(images.shape)}")
    return images


def _is_pil(image) -> bool:
    return type(image).__module__.startswith("PIL.")


def _to_0_255(batch: Tensor) -> Tensor:
    """uint8 → float32 0..255 (exact); float [0, 1] → float32 0..255."""
    if batch.dtype == torch.uint8:
        return batch.float()
    if not batch.is_floating_point():
        raise UserError(f"images must be uint8 (0–255) or float (0–1); got {batch.dtype}")
    low, high = (float(batch.min()), float(batch.max())) if batch.numel() else (0.0, 0.0)
    if low < -1e-3 or high > 1 + 1e-3:
        raise UserError(f"float images must be unnormalised, in [0, 1]; got values in [{low:.3g}, {high:.3g}] "
                        "(pass uint8 0–255, or undo the normalisation)")
    return batch.float() * 255.0


def _convert_channels(batch: Tensor, channels: int) -> Tensor:
    if batch.shape[1] == 4:
        batch = batch[:, :3]  # drop alpha
    if batch.shape[1] == channels:
        return batch
    if channels == 1:
        weights = torch.tensor(LUMA, dtype=batch.dtype).view(1, 3, 1, 1)
        return (batch * weights).sum(1, keepdim=True)
    if channels == 3:
        return batch.expand(-1, 3, -1, -1)
    raise UserError(f"cannot convert {batch.shape[1]}-channel images to {channels} channels")


def _resize(batch: Tensor, size: tuple[int, int]) -> Tensor:
    height, width = batch.shape[2:]
    if (height, width) == size:
        return batch
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = batch[:, :, top:top + side, left:left + side]
    return F.interpolate(square, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 255)
