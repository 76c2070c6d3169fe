"""From a data config to ready splits: source → split assignment → manifest → normalisation → datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visrep.data.dataset import BatchLoader, ImageSplit
from visrep.data.manifest import build_manifest
from visrep.data.sources import SourceData, load_source
from visrep.data.splits import SPLITS, carve_split, stratified_split
from visrep.data.transforms import Normalization, compute_normalization


@dataclass
class PreparedData:
    manifest: dict
    splits: dict[str, ImageSplit]  # "train" | "val" | "test"
    normalization: Normalization
    source: SourceData

    @property
    def class_names(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.splits["train"].image_shape

    def loader(self, split: str, batch_size: int, train: bool = False, augment=None, **kwargs) -> BatchLoader:
        """Fast batch loader; ``train=True`` shuffles and applies ``augment`` (an AugmentConfig)."""
        flip = bool(train and augment is not None and augment.flip)
        translate = int(augment.translate) if train and augment is not None else 0
        alternate = bool(flip and augment.alternate_flip)
        low_res = (int(augment.low_res_size), int(augment.low_res_epochs)) \
            if train and augment is not None and augment.low_res_size > 0 else None
        return BatchLoader(self.splits[split], batch_size, shuffle=train, flip=flip, translate=translate,
                           alternate_flip=alternate, low_res=low_res, **kwargs)


def prepare_data(data_cfg, progress: bool = True) -> PreparedData:
    source = load_source(data_cfg, progress=progress)
    splits = assign_splits(source, data_cfg)
    fractions = {"val": data_cfg.val_fraction, "test": data_cfg.test_fraction}
    manifest = build_manifest(source.description, source.class_names, source.ids, source.labels, splits,
                              source.skipped, data_cfg.seed, fractions)
    train_rows = np.flatnonzero(splits == "train")
    normalization = compute_normalization(_rows(source.images, train_rows))
    keep_in_memory = _keep_in_memory(source.images, data_cfg)
    datasets = {name: _make_split(source, np.flatnonzero(splits == name), name, normalization, keep_in_memory)
                for name in SPLITS}
    return PreparedData(manifest, datasets, normalization, source)


def assign_splits(source: SourceData, data_cfg) -> np.ndarray:
    """Given splits are respected; a missing val (or test) split is carved, stratified, from train."""
    if source.given_splits is None:
        return stratified_split(source.labels, source.class_names, data_cfg.val_fraction, data_cfg.test_fraction,
                                data_cfg.seed)
    splits = np.asarray(source.given_splits, dtype=object)
    if not (splits == "val").any() and data_cfg.val_fraction > 0:
        splits = carve_split(splits, source.labels, source.class_names, "val", data_cfg.val_fraction, data_cfg.seed)
    if not (splits == "test").any() and data_cfg.test_fraction > 0:
        splits = carve_split(splits, source.labels, source.class_names, "test", data_cfg.test_fraction,
                             data_cfg.seed + 1)
    return splits


def _keep_in_memory(images: np.ndarray, data_cfg) -> bool:
    if not isinstance(images, np.memmap):
        return True  # already in memory (digits, torchvision sets)
    if data_cfg.in_memory is not None:
        return bool(data_cfg.in_memory)
    return images.nbytes < data_cfg.memory_limit_gb * 2**30


def _rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(images[rows]) if len(rows) else np.empty((0, *images.shape[1:]), dtype=np.uint8)


def _make_split(source: SourceData, rows: np.ndarray, name: str, norm: Normalization, in_memory: bool) -> ImageSplit:
    labels, ids = source.labels[rows], [source.ids[i] for i in rows]
    if in_memory:
        return ImageSplit(_rows(source.images, rows), labels, ids, source.class_names, norm, name)
    return ImageSplit(source.images, labels, ids, source.class_names, norm, name,
                      cache_file=source.images.filename, row_index=rows)
