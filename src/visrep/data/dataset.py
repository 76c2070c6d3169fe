"""Datasets and the fast batch loader.

``ImageSplit`` is a plain ``torch.utils.data.Dataset`` (works with any ``DataLoader``).
``BatchLoader`` is the fast path over the same data: it gathers whole batches of uint8 images
with one indexing op, augments them as a batch and normalises them in one fused op.
Images stay uint8 until the last step (4× less memory traffic than float32).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from visrep.data.transforms import Normalization, augment_batch, normalize_uint8


class ImageSplit(Dataset):
    """One split: uint8 images (N, C, H, W) in memory or memory-mapped from the cache on disk.

    ``__getitem__`` returns (normalised float32 image (C, H, W), label). A memory-mapped split
    reopens its file lazily in each DataLoader worker rather than pickling the data.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray, ids: list[str], class_names: list[str],
                 normalization: Normalization, name: str = "train", cache_file: Path | None = None,
                 row_index: np.ndarray | None = None):
        self.name, self.ids, self.class_names, self.normalization = name, list(ids), list(class_names), normalization
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        # numpy, not torch: numpy's fancy indexing gathers a uint8 batch much faster on CPU
        # (benchmarks/notes/measurements-behind-code-choices.md)
        self._images = images.numpy() if isinstance(images, torch.Tensor) else images
        self._cache_file, self._row_index = cache_file, row_index

    @property
    def in_memory(self) -> bool:
        return self._cache_file is None

    @property
    def images(self) -> np.ndarray:
        """(N, C, H, W) uint8 — an array in memory, or a lazily opened memmap of the cache file."""
        if self._images is None:
            self._images = np.load(self._cache_file, mmap_mode="r")
        return self._images

    def __getstate__(self):
        state = self.__dict__.copy()
        if not self.in_memory:
            state["_images"] = None  # reopen the memmap in the worker
        return state

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # (C, H, W)

    def uint8_batch(self, indices: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 for dataset positions ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.in_memory:
            return torch.from_numpy(self.images[indices])
        rows = self._row_index[indices] if self._row_index is not None else indices
        order = np.argsort(rows)  # sorted reads are sequential on disk
        gathered = np.asarray(self.images[rows[order]])
        return torch.from_numpy(gathered[np.argsort(order)])

    def __getitem__(self, index: int):
        image = normalize_uint8(self.uint8_batch(np.array([index])), self.normalization)[0]
        return image, int(self.labels[index])


class BatchLoader:
    """Iterate (images float (B, C, H, W), labels (B,)) over an ImageSplit, fast.

    - shuffle with a torch.Generator seeded by (seed, epoch) → the same order on every run;
    - ``rank``/``world_size`` give each DistributedDataParallel process its own shard;
    - ``set_epoch(e)`` as with DistributedSampler.
    """

    def __init__(self, split: ImageSplit, batch_size: int, shuffle: bool = False, flip: bool = False,
                 translate: int = 0, drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 dtype: torch.dtype = torch.float32, channels_last: bool = False, alternate_flip: bool = False,
                 low_res: tuple[int, int] | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")
        self.split, self.batch_size, self.shuffle, self.drop_last = split, batch_size, shuffle, drop_last
        self.flip, self.translate, self.seed = flip, translate, seed
        # alternate flip (airbench): image i is mirrored in epoch e iff first_flip[i] XOR (e odd), so every
        # image is seen both ways in any two consecutive epochs, where a coin per epoch can repeat a side
        self.first_flip = (torch.rand(len(split), generator=torch.Generator().manual_seed(seed * 65_537 + 1)) < 0.5
                           if flip and alternate_flip else None)
        self.rank, self.world_size, self.dtype, self.channels_last = rank, world_size, dtype, channels_last
        self.low_res = low_res  # (size, epochs): batches of the first `epochs` epochs downscaled to size x size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.split)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(n)
        per_rank = math.ceil(n / self.world_size) if not self.drop_last else n // self.world_size
        if self.world_size > 1 and not self.drop_last:
            order = torch.cat([order, order[: per_rank * self.world_size - n]])  # pad like DistributedSampler
        return order[self.rank * per_rank:(self.rank + 1) * per_rank] if self.world_size > 1 else order

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        indices = self._indices()
        augment_rng = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank + 1)
        for batch_no in range(len(self)):
            chosen = indices[batch_no * self.batch_size:(batch_no + 1) * self.batch_size]
            images = self.split.uint8_batch(chosen.numpy())
            if self.flip or self.translate:
                mirrored = None if self.first_flip is None else self.first_flip[chosen] ^ bool(self.epoch % 2)
                images = augment_batch(images, self.flip, self.translate, augment_rng, mirrored)
            images = normalize_uint8(images, self.split.normalization, self.dtype)
            if self.low_res is not None and self.epoch < self.low_res[1]:
                # antialiased: a plain bilinear downscale would alias high frequencies the net never sees later
                images = F.interpolate(images, size=(self.low_res[0],) * 2, mode="bilinear", antialias=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.split.labels[chosen]
