"""Embedding consistency: does a sample conditioned on an image's embedding resemble that image?

Measured in the evaluator's space (not the conditioning CNN's, which the generator was trained to
please): cosine between each sample and its conditioning image. To read the number it sits beside
the same statistic for real pairs — two different real images of the same class (what "same kind
of thing" looks like) and two random real images (what "unrelated" looks like).
"""

from __future__ import annotations

import numpy as np


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair: (N, D), (N, D) → (N,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def real_pair_partners(labels: np.ndarray, same_class: bool, seed: int = 0) -> np.ndarray:
    """For each row i, a random partner j ≠ i (of the same class when ``same_class``); -1 if none exists."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    partners = np.full(len(labels), -1, dtype=np.int64)
    if same_class:
        groups = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    else:
        groups = [np.arange(len(labels))]
    for members in groups:
        if len(members) < 2:
            continue
        # a shift in 1..n−1 of a random permutation pairs every member with another one
        order = rng.permutation(members)
        shift = int(rng.integers(1, len(members)))
        partners[order] = np.roll(order, shift)
    return partners


def embedding_consistency(sample_features: np.ndarray, condition_features: np.ndarray, real_features: np.ndarray,
                          real_labels: np.ndarray, seed: int = 0) -> dict:
    """Mean/std cosine of (sample, its conditioning image) against real same-class and random pairs."""
    samples = row_cosines(sample_features, condition_features)
    same = real_pair_cosines(real_features, real_labels, True, seed)
    random = real_pair_cosines(real_features, real_labels, False, seed + 1)
    return {"sample_to_condition": _summary(samples), "real_same_class_pairs": _summary(same),
            "real_random_pairs": _summary(random),
            "ratio_to_same_class": float(samples.mean() / same.mean()) if len(same) and same.mean() != 0 else None}


def real_pair_cosines(features: np.ndarray, labels: np.ndarray, same_class: bool, seed: int = 0) -> np.ndarray:
    """Cosines of each real image with a random partner (same class or any): (N,) minus unpaired rows."""
    partners = real_pair_partners(labels, same_class, seed)
    valid = partners >= 0
    return row_cosines(features[valid], features[partners[valid]])


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(len(values))}
