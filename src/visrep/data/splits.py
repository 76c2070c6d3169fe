"""Stratified, seeded train/val/test assignment.

Each class is shuffled with its own generator, seeded by (seed, class index), so adding images
to one class never reshuffles another. Counts per class: test = round(n·test_fraction),
val = round(n·val_fraction), each at least 1 when its fraction is non-zero; the rest is train.

Copies (files with identical pixels, ``groups``) are carved as one item: a group counts once, in
the class of its first file, and every copy takes that file's split. A copy in train and another
in val would leak the image into evaluation; dropping one afterwards would lose images and move
the fractions, so a carved split never separates copies in the first place. (Copies that the
user's own train/val/test folders separate are handled by ``visrep.data.duplicates``.) Without
copies the assignment is exactly what it was before copies were looked for.
"""

from __future__ import annotations

import numpy as np

from visrep.config import check_split_fractions
from visrep.errors import UserError

SPLITS = ("train", "val", "test")


def stratified_split(labels: np.ndarray, class_names: list[str], val_fraction: float, test_fraction: float,
                     seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Return an array of split names ('train' | 'val' | 'test'), one per label; items with equal ``groups``
    ids are copies, kept in one split (see the module docstring)."""
    check_split_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels)
    lead = group_leads(groups, len(labels))
    first = lead == np.arange(len(labels))  # the first file of each group, and every file without copies
    splits = np.full(len(labels), "train", dtype=object)
    for label, name in enumerate(class_names):
        members = np.flatnonzero((labels == label) & first)
        copies = int(np.count_nonzero((labels == label) & ~first))
        n_val, n_test = _class_counts(len(members), name, val_fraction, test_fraction, copies)
        order = np.random.default_rng([seed, label]).permutation(members)
        splits[order[:n_test]] = "test"
        splits[order[n_test:n_test + n_val]] = "val"
    return splits[lead]


def group_leads(groups: np.ndarray | None, n: int) -> np.ndarray:
    """For each item, the index of the first item with its group id (itself when it has no copies)."""
    if groups is None:
        return np.arange(n)
    _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def carve_split(splits: np.ndarray, labels: np.ndarray, class_names: list[str], target: str, fraction: float,
                seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Move a stratified ``fraction`` of the train items into ``target`` (for folders lacking that split),
    copies together."""
    splits = splits.copy()
    train = np.flatnonzero(splits == "train")
    carved = stratified_split(labels[train], class_names, fraction if target == "val" else 0.0,
                              fraction if target == "test" else 0.0, seed,
                              None if groups is None else np.asarray(groups)[train])
    splits[train[carved == target]] = target
    return splits


def _class_counts(n: int, class_name: str, val_fraction: float, test_fraction: float,
                  copies: int = 0) -> tuple[int, int]:
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        needed = 1 + int(val_fraction > 0) + int(test_fraction > 0)
        distinct = f" with distinct pixels ({copies} more are copies of these or of another class's)" if copies else ""
        raise UserError(f"class '{class_name}' has only {n} image(s){distinct}; the requested split needs at least "
                        f"{needed} (one each for train{', val' if val_fraction > 0 else ''}"
                        f"{', test' if test_fraction > 0 else ''})")
    return n_val, n_test
