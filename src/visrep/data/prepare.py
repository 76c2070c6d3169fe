"""From a data config to ready splits: source → split assignment (copies kept together) → copies across
given splits handled (data.duplicates) → manifest → normalisation → datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visrep.data.dataset import BatchLoader, ImageSplit
from visrep.data.duplicates import announcement, group_ids, resolve_duplicates
from visrep.data.findings import decode_record
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
    groups = group_ids(source.pixel_hashes)  # folders only: the built-in sets are taken as published
    splits = assign_splits(source, data_cfg, groups)
    keep, duplicates = resolve_duplicates(groups, splits, source.ids, source.labels, source.class_names,
                                          data_cfg.duplicates)
    for line in announcement(duplicates):
        print(line)  # stdout, like the other lines about the data; stderr is kept for the one `error:` line
    splits = np.where(keep, splits, "removed")  # in no split: never batched, and absent from the manifest
    fractions = {"val": data_cfg.val_fraction, "test": data_cfg.test_fraction}
    about_files = {**({"duplicates": duplicates} if duplicates else {}), **_decode_record(source, keep)}
    manifest = build_manifest(source.description, source.class_names, *_kept(source, splits, keep),
                              source.skipped, data_cfg.seed, fractions, extra=about_files)
    train_rows = np.flatnonzero(splits == "train")
    normalization = compute_normalization(_rows(source.images, train_rows))
    keep_in_memory = _keep_in_memory(source.images, data_cfg)
    datasets = {name: _make_split(source, np.flatnonzero(splits == name), name, normalization, keep_in_memory)
                for name in SPLITS}
    return PreparedData(manifest, datasets, normalization, source)


def assign_splits(source: SourceData, data_cfg, groups: np.ndarray | None = None) -> np.ndarray:
    """Given splits are respected; a missing val (or test) split is carved, stratified, from train. Items with
    equal ``groups`` ids (identical pixels) are carved together."""
    if source.given_splits is None:
        return stratified_split(source.labels, source.class_names, data_cfg.val_fraction, data_cfg.test_fraction,
                                data_cfg.seed, groups)
    splits = np.asarray(source.given_splits, dtype=object)
    if not (splits == "val").any() and data_cfg.val_fraction > 0:
        splits = carve_split(splits, source.labels, source.class_names, "val", data_cfg.val_fraction, data_cfg.seed,
                             groups)
    if not (splits == "test").any() and data_cfg.test_fraction > 0:
        splits = carve_split(splits, source.labels, source.class_names, "test", data_cfg.test_fraction,
                             data_cfg.seed + 1, groups)
    return splits


def _kept(source: SourceData, splits: np.ndarray, keep: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, labels, splits) of the items kept, in the source's order."""
    rows = np.flatnonzero(keep)
    return [source.ids[i] for i in rows], source.labels[rows], splits[rows]


def _decode_record(source: SourceData, keep: np.ndarray) -> dict:
    """The manifest's record of rotated, animated and EXIF-damaged files among the kept items."""
    rows = np.flatnonzero(keep)

    def subset(values):
        return None if values is None else np.asarray(values)[rows]
    return decode_record([source.ids[i] for i in rows], source.labels[rows], source.class_names,
                         subset(source.orientations), subset(source.frames), source.exif_problems)


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
