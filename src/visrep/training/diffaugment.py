"""DiffAugment (Zhao et al. 2020): the same kind of random, differentiable augmentation applied to
real and generated images before the discriminator sees them.

A discriminator trained on few images memorises them and stops giving the generator a useful
signal; augmenting both sides (never only the reals, which would teach the generator to produce
augmented images) keeps it honest. Every policy is differentiable, so the generator's gradients
pass through it. Images are (N, C, H, W) in [-1, 1]; each image draws its own parameters from
torch's global RNG (saved in checkpoints, so a resumed run draws the same ones).

Policies (names as in the paper): ``color`` (brightness ±0.5, saturation ×[0, 2], contrast
×[0.5, 1.5]), ``translation`` (shift by up to 1/8 of the size, zero fill), ``cutout`` (one square
of half the size set to zero).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import UserError

POLICIES = ("color", "translation", "cutout")


def check_policies(policies: list[str] | tuple[str, ...]) -> None:
    unknown = [name for name in policies if name not in POLICIES]
    if unknown:
        raise UserError(f"unknown DiffAugment policy '{unknown[0]}'; choose from {', '.join(POLICIES)}")


def diff_augment(images: Tensor, policies: list[str] | tuple[str, ...]) -> Tensor:
    for name in policies:
        images = _APPLY[name](images)
    return images


def _color(x: Tensor) -> Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness (range 2 → ±0.25 of it)
    if x.shape[1] > 1:  # saturation: greyscale has none
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    n, _, h, w = x.shape
    max_shift = max(1, round(h * ratio))
    shifts = torch.randint(-max_shift, max_shift + 1, (2, n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + shifts[0]).clamp(-1, h)  # -1 and h: the zero border
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + shifts[1]).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))  # (N, C, H+2, W+2): index i of the image is i+1 here
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows + 1, cols + 1].permute(0, 3, 1, 2).contiguous()


def _cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    n, _, h, w = x.shape
    size_h, size_w = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = torch.randint(0, h + 1 - size_h % 2, (n, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, w + 1 - size_w % 2, (n, 1, 1), device=x.device) - size_w // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_APPLY = {"color": _color, "translation": _translation, "cutout": _cutout}
