"""Run a classifier over a loader and collect logits (inference only, no gradients)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader, device: torch.device, precision: str = "bf16",
                   tta_flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return (logits (N, K) float32, labels (N,) int64); ``tta_flip`` averages with the mirrored image."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        with autocast_context(device, precision):
            logits = model(images).float()
            if tta_flip:
                logits = 0.5 * (logits + model(images.flip(3)).float())
        all_logits.append(logits.cpu())
        all_labels.append(labels)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()
