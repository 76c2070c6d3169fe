"""Seeding and deterministic mode: same seed + config → same numbers on CPU."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where torch has them (a warning for the few ops that have none)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)  # e.g. CUDA max-pool backward has no deterministic kernel: warn, do not stop
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled
