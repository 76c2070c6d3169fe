"""The one autocast switch every forward pass goes through (training steps, prediction, features)."""

from __future__ import annotations

import contextlib

import torch

from visrep.hardware.precision import resolve_precision


def autocast_context(device: torch.device, precision: str):
    """bf16 or fp16 autocast on CPU or CUDA; a no-op for fp32; auto as :func:`resolve_precision` decides for
    ``device``. fp16 training needs its loss scaler (:mod:`visrep.training.loss_scale`)."""
    resolved = resolve_precision(precision, device).precision
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if resolved == "fp16" else torch.bfloat16)
