"""Classification metrics, calibration and learning-curve summaries over numpy arrays.

Everything here is a pure function of ``logits`` (float, shape ``(N, K)``) and
``labels`` (int, shape ``(N,)``, values in ``0..K-1``); no model code. Metric
values are computed by scikit-learn itself (with ``labels=range(K)`` and
``zero_division=0``) so that they equal scikit-learn's numbers exactly, and all
returned dicts contain only JSON-serialisable builtins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)


# ---------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------


def _validated(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(logits as float64 (N, K), labels as int64 (N,))`` or raise ValueError."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"expected scores of shape (N, K), got {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels shape {labels.shape} does not match scores shape {logits.shape}")
    if logits.shape[0] == 0:
        raise ValueError("cannot evaluate on zero samples")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{labels.min()}, {labels.max()}]")
    return logits, labels.astype(np.int64)


def softmax_probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` (N, K) -> probabilities (N, K), numerically stable."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=1)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy in nats of ``logits`` (N, K) against integer ``labels`` (N,)."""
    logits, labels = _validated(logits, labels)
    # log_softmax avoids the underflow of log(softmax(x)) for confident wrong predictions.
    log_probs = log_softmax(logits, axis=1)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


# ---------------------------------------------------------------------------
# Classification metrics
# ---------------------------------------------------------------------------


def _per_class(values: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    return {name: float(value) for name, value in zip(class_names, values)}


def _averaged_scores(labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Precision, recall and F1 (macro, weighted, per class) plus per-class support."""
    class_ids = list(range(len(class_names)))
    per_class = precision_recall_fscore_support(
        labels, predictions, labels=class_ids, average=None, zero_division=0
    )
    macro = precision_recall_fscore_support(labels, predictions, labels=class_ids, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(
        labels, predictions, labels=class_ids, average="weighted", zero_division=0
    )
    scores: dict[str, Any] = {}
    for position, metric in enumerate(("precision", "recall", "f1")):
        scores[metric] = {
            "macro": float(macro[position]),
            "weighted": float(weighted[position]),
            "per_class": _per_class(per_class[position], class_names),
        }
    scores["support"] = {name: int(count) for name, count in zip(class_names, per_class[3])}
    return scores


def _top_k_accuracies(logits: np.ndarray, labels: np.ndarray, topk: Sequence[int]) -> dict[str, float]:
    """Top-k accuracy for every requested ``k < K``; keys are ``"top_<k>"``.

    k >= K is skipped because it is trivially 1.0. Top-1 is plain accuracy of the
    argmax (sklearn's top-k scorer rejects two-column scores for K == 2).
    """
    num_classes = logits.shape[1]
    accuracies: dict[str, float] = {}
    for k in sorted(set(int(k) for k in topk)):
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        if k >= num_classes:
            continue
        if k == 1:
            accuracies["top_1"] = float(accuracy_score(labels, logits.argmax(axis=1)))
        else:
            accuracies[f"top_{k}"] = float(
                top_k_accuracy_score(labels, logits, k=k, labels=list(range(num_classes)))
            )
    return accuracies


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Divide each row of a confusion matrix by its sum; rows with no samples stay all zero."""
    matrix = np.asarray(matrix, dtype=np.float64)
    row_sums = matrix.sum(axis=1, keepdims=True)
    # Zero rows (a class absent from the labels) would give NaN, which is not valid JSON.
    return np.divide(matrix, row_sums, out=np.zeros_like(matrix), where=row_sums > 0)


def classification_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    topk: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """All standard classification metrics for one evaluation split.

    Args:
        logits: float array (N, K) of unnormalised class scores.
        labels: int array (N,) with values in ``0..K-1``.
        class_names: K unique names; index i names class i.
        topk: which top-k accuracies to report; only k < K are kept.

    Returns:
        A JSON-serialisable dict with keys ``n``, ``accuracy``, ``top_k_accuracy``
        (``{"top_1": ..., "top_3": ...}``), ``precision`` / ``recall`` / ``f1`` (each
        ``{"macro", "weighted", "per_class": {name: value}}``), ``support``
        (``{name: count}``), ``balanced_accuracy``, ``confusion_matrix`` (K x K counts,
        rows = true class, columns = predicted), ``confusion_matrix_normalised``
        (rows sum to 1, or 0 for absent classes), ``nll`` (mean cross-entropy, nats)
        and ``report_text`` (sklearn's ``classification_report``).
        Values equal scikit-learn's with ``labels=range(K)`` and ``zero_division=0``;
        ``balanced_accuracy`` is sklearn's, which averages recall over the classes
        present in ``labels`` only.
    """
    logits, labels = _validated(logits, labels)
    class_names = [str(name) for name in class_names]
    if len(class_names) != logits.shape[1]:
        raise ValueError(f"got {len(class_names)} class names for {logits.shape[1]} logit columns")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class names must be unique: they key the per-class results")

    class_ids = list(range(len(class_names)))
    predictions = logits.argmax(axis=1)
    counts = confusion_matrix(labels, predictions, labels=class_ids)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "top_k_accuracy": _top_k_accuracies(logits, labels, topk),
        **_averaged_scores(labels, predictions, class_names),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
        "confusion_matrix": counts.astype(int).tolist(),
        "confusion_matrix_normalised": row_normalised(counts).tolist(),
        "nll": negative_log_likelihood(logits, labels),
        "report_text": classification_report(
            labels, predictions, labels=class_ids, target_names=class_names, digits=4, zero_division=0
        ),
    }


# ---------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, list]:
    """Bin predictions by confidence for a reliability diagram.

    Confidence is the top-class probability. Bins are equal-width on [0, 1];
    bin i holds confidences in ``(i/n_bins, (i+1)/n_bins]`` (the first bin also holds 0).

    Args:
        probs: float array (N, K) of class probabilities (rows sum to 1).
        labels: int array (N,).
        n_bins: number of bins.

    Returns:
        ``{"bin_edges": n_bins + 1 floats, "confidence": mean confidence per bin,
        "accuracy": fraction correct per bin, "count": samples per bin}``.
        Empty bins report confidence and accuracy 0.0 with count 0.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs, labels = _validated(probs, labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # ceil(c * n) - 1 maps (i/n, (i+1)/n] to bin i; clip puts c == 0 in bin 0.
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    nonempty = count > 0
    mean_confidence = np.divide(confidence_sum, count, out=np.zeros(n_bins), where=nonempty)
    mean_accuracy = np.divide(correct_sum, count, out=np.zeros(n_bins), where=nonempty)
    return {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "confidence": mean_confidence.tolist(),
        "accuracy": mean_accuracy.tolist(),
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (bin count / N) * |accuracy - confidence|.

    Uses the equal-width confidence bins of :func:`reliability_bins`. Result is in
    [0, 1]; 0 means confidence matches accuracy in every bin.
    """
    bins = reliability_bins(probs, labels, n_bins)
    count = np.asarray(bins["count"], dtype=np.float64)
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((count * gap).sum() / count.sum())


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled logits ``logits / T`` (N, K); T > 1 softens, T < 1 sharpens."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return np.asarray(logits, dtype=np.float64) / temperature


def fit_temperature(
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    min_temperature: float = 1e-2,
    max_temperature: float = 1e2,
) -> float:
    """Fit one scalar temperature T > 0 that minimises the NLL of ``softmax(logits / T)``.

    Fit on the validation split only, then apply the returned T to the test logits
    (:func:`apply_temperature` / :func:`calibration_report`); fitting on test data
    would leak the labels you report on.

    The search is over log T with scipy's bounded scalar minimiser, which is
    deterministic. NLL is convex in 1/T, hence unimodal in log T, so the 1-D search
    finds the global minimum inside ``[min_temperature, max_temperature]``. If the
    validation set is perfectly separated the optimum is T -> 0 and the lower bound
    is returned.

    Args:
        val_logits: float array (N, K).
        val_labels: int array (N,).

    Returns:
        The temperature as a Python float.
    """
    logits, labels = _validated(val_logits, val_labels)

    def nll_at(log_temperature: float) -> float:
        return negative_log_likelihood(logits / np.exp(log_temperature), labels)

    result = minimize_scalar(
        nll_at,
        bounds=(np.log(min_temperature), np.log(max_temperature)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def calibration_report(
    logits: np.ndarray,
    labels: np.ndarray,
    temperature: float | None,
    n_bins: int = 15,
) -> dict[str, float | None]:
    """ECE and NLL of ``logits`` (N, K) before and after dividing by ``temperature``.

    ``temperature`` should come from :func:`fit_temperature` on a validation split;
    ``logits``/``labels`` are the split being reported (usually test). None (a run without a
    validation split: nothing to fit it on) reports the "before" figures only, the others None.

    Returns:
        ``{"temperature", "ece_before", "ece_after", "nll_before", "nll_after"}`` as floats
        (ECE in [0, 1], NLL in nats); temperature and the ``*_after`` values None without a temperature.
    """
    logits, labels = _validated(logits, labels)
    report = {
        "temperature": None if temperature is None else float(temperature),
        "ece_before": expected_calibration_error(softmax_probabilities(logits), labels, n_bins),
        "ece_after": None,
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": None,
    }
    if temperature is not None:
        scaled = apply_temperature(logits, temperature)
        report["ece_after"] = expected_calibration_error(softmax_probabilities(scaled), labels, n_bins)
        report["nll_after"] = negative_log_likelihood(scaled, labels)
    return report


# ---------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------
