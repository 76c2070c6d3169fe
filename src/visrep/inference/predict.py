"""Run a classifier over a loader and collect logits (inference only, no gradients)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from visrep.inference.autocast import autocast_context


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader, device: torch.device, precision: str = "auto",
                   tta_flip: bool = False, tta_translate: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (logits (N, K) float32, labels (N,) int64).

    ``tta_flip`` averages each view with its mirror; ``tta_translate`` = t adds the views shifted by
    (−t, −t) and (+t, +t) pixels (reflect-padded), weighted ¼ each against ½ for the unshifted view
    (airbench94's test-time augmentation: 6 forward passes with both).
    """
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        with autocast_context(device, precision):
            logits = _view_logits(model, images, tta_flip)
            if tta_translate > 0:
                shifted = [_view_logits(model, _shift(images, tta_translate, sign), tta_flip) for sign in (-1, 1)]
                logits = 0.5 * logits + 0.25 * (shifted[0] + shifted[1])
        all_logits.append(logits.cpu())
        all_labels.append(labels)
    if not all_logits:  # an empty split: nothing to predict
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


def _view_logits(model: torch.nn.Module, images: torch.Tensor, tta_flip: bool) -> torch.Tensor:
    logits = model(images).float()
    return 0.5 * (logits + model(images.flip(3)).float()) if tta_flip else logits


def _shift(images: torch.Tensor, pixels: int, sign: int) -> torch.Tensor:
    """(N, C, H, W) content moved by sign·pixels down and right, the uncovered border reflected."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (pixels,) * 4, mode="reflect")
    start = pixels - sign * pixels
    return padded[:, :, start:start + height, start:start + width]
