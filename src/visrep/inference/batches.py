"""The one way inference walks a tensor of images: fixed-size slices along dim 0, optionally with a
progress bar. Used by the evaluator's features, new images' embeddings and CAS's predictions (data loaders
batch themselves)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor
from tqdm import tqdm


def batched(images: Tensor, batch_size: int, progress: bool = False, description: str = "") -> Iterator[Tensor]:
    """Consecutive (≤ batch_size, ...) slices of ``images`` (views, no copies), in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 (got {batch_size})")
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=description, leave=False, disable=not progress or None, mininterval=1.0):
        yield images[start:start + batch_size]
