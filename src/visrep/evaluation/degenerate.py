"""Degenerate generated images that the metrics alone would let pass: constant images, and a share of
near-identical images far above the real data's (mode collapse, or a sampler fed a non-finite scale).

Near-identical is judged on a coarse signature: each image shrunk to 8×8 by area averaging, grey, and
quantised to 16 levels; images with the same signature count as near-identical. The same is measured on
the real reference images at the same N, so that a dataset with many look-alikes (digits on black)
is not flagged for being itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIGNATURE_SIDE = 8  # pixels per side of the shrunk image
SIGNATURE_LEVELS = 16  # grey levels kept
CHUNK = 1024  # images shrunk at a time: memory bounded whatever N
DUPLICATE_MARGIN = 0.10  # flag when the generated share exceeds the real share by this much ...
DUPLICATE_RATIO = 3.0  # ... and is this many times the real share


def constant_count(images: torch.Tensor) -> int:
    """How many uint8 images (N, C, S, S) hold one value in every pixel and channel."""
    count = 0
    for start in range(0, len(images), CHUNK):
        flat = images[start:start + CHUNK].flatten(1)
        count += int((flat.amax(1) == flat.amin(1)).sum())
    return count


def duplicate_share(images: torch.Tensor) -> float:
    """Share of images (N, C, S, S) whose coarse signature another image of the set shares."""
    if len(images) < 2:
        return 0.0
    signatures = np.concatenate([_signatures(images[start:start + CHUNK]) for start in range(0, len(images), CHUNK)])
    _, inverse, counts = np.unique(signatures, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def _signatures(images: torch.Tensor) -> np.ndarray:
    grey = images.float().mean(1, keepdim=True)  # (n, 1, S, S), 0..255
    small = F.adaptive_avg_pool2d(grey, SIGNATURE_SIDE)
    levels = (small / 256 * SIGNATURE_LEVELS).floor().clamp(0, SIGNATURE_LEVELS - 1)
    return levels.flatten(1).to(torch.uint8).numpy()


def degenerate_warnings(generated: torch.Tensor, real: torch.Tensor) -> list[str]:
    """Warning lines for the generated images (empty when none applies); ``real`` is the reference set."""
    warnings = []
    constant = constant_count(generated)
    if constant:
        warnings.append(f"{constant} of {len(generated)} generated images are constant (a single colour): the "
                        f"generator or its sampling settings are broken; these scores describe blank images")
    fake_share, real_share = duplicate_share(generated), duplicate_share(real)
    if fake_share > real_share + DUPLICATE_MARGIN and fake_share > DUPLICATE_RATIO * real_share:
        warnings.append(f"{fake_share:.0%} of the generated images are near-identical to another one, against "
                        f"{real_share:.0%} of the real images: mode collapse or a degenerate sampler")
    return warnings
