"""Stratified, seeded train/val/test assignment.

Each class is shuffled with its own generator, seeded by (seed, class index), so adding images
to one class never reshuffles another. Counts per class: test = round(n·test_fraction),
val = round(n·val_fraction), each at least 1 when its fraction is non-zero; the rest is train.
"""

from __future__ import annotations

import numpy as np

from visrep.config import check_split_fractions
from visrep.errors import UserError

SPLITS = ("train", "val", "test")


def stratified_split(labels: np.ndarray, class_names: list[str], val_fraction: float, test_fraction: float,
                     seed: int) -> np.ndarray:
    """Return an array of split names ('train' | 'val' | 'test'), one per label."""
    check_split_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels)
    splits = np.full(len(labels), "train", dtype=object)
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        n_val, n_test = _class_counts(len(members), name, val_fraction, test_fraction)
        order = np.random.default_rng([seed, label]).permutation(members)
        splits[order[:n_test]] = "test"
        splits[order[n_test:n_test + n_val]] = "val"
    return splits


def carve_split(splits: np.ndarray, labels: np.ndarray, class_names: list[str], target: str, fraction: float,
                seed: int) -> np.ndarray:
    """Move a stratified ``fraction`` of the train items into ``target`` (for folders lacking that split)."""
    splits = splits.copy()
    train = np.flatnonzero(splits == "train")
    carved = stratified_split(labels[train], class_names, fraction if target == "val" else 0.0,
                              fraction if target == "test" else 0.0, seed)
    splits[train[carved == target]] = target
    return splits


def _class_counts(n: int, class_name: str, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        needed = 1 + int(val_fraction > 0) + int(test_fraction > 0)
        raise UserError(f"class '{class_name}' has only {n} image(s); the requested split needs at least "
                        f"{needed} (one each for train{', val' if val_fraction > 0 else ''}"
                        f"{', test' if test_fraction > 0 else ''})")
    return n_val, n_test
