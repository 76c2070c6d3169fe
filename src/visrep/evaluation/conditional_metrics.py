"""Metrics that use the class each image was meant to show: GAN-test and per-class KID.

GAN-test (Shmelkov et al. 2018): the evaluator's accuracy on generated images w.r.t. their intended
class. High means the samples are recognisable as that class (it says nothing about diversity; a
generator that draws one perfect image per class scores 1.0, which is why it sits beside recall,
coverage and CAS). Per-class KID compares each class's samples with that class's real images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visrep.evaluation.distribution_metrics import kid


def gan_test(logits: np.ndarray, intended: np.ndarray, class_names: Sequence[str]) -> dict:
    """Evaluator logits (N, K) and intended labels (N,) → overall and per-class accuracy.

    Classes without samples get ``None`` (not 0: absent is not wrong).
    """
    predicted = np.asarray(logits).argmax(axis=1)
    intended = np.asarray(intended)
    correct = predicted == intended
    per_class = {}
    for index, name in enumerate(class_names):
        members = intended == index
        per_class[name] = float(correct[members].mean()) if members.any() else None
    return {"accuracy": float(correct.mean()), "per_class": per_class, "n": int(len(intended)),
            "chance": 1.0 / len(class_names)}


def per_class_kid(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                  class_names: Sequence[str]) -> dict:
    """KID between real and generated features of each class; {"per_class": {name: kid | None}, "mean": float}.

    A class with fewer than 2 images on either side gets ``None`` (no pair to compare); "mean"
    averages the others.
    """
    results = {}
    for index, name in enumerate(class_names):
        real_c, fake_c = real[np.asarray(real_labels) == index], fake[np.asarray(fake_labels) == index]
        results[name] = kid(real_c, fake_c) if min(len(real_c), len(fake_c)) >= 2 else None
    values = [value["value"] for value in results.values() if value is not None]
    return {"per_class": results, "mean": float(np.mean(values)) if values else None}
