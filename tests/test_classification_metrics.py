"""Classification metrics equal scikit-learn's; calibration, curve summaries and plots behave."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from visrep.evaluation.classification import (
    calibration_report,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax_probabilities,
)
from visrep.figures import (
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_training_curves,
    save_image_grid,
)
from visrep.training.curves import curve_summary, write_history_csv

CLASS_NAMES = ["cat", "dog", "bird", "fish", "frog"]
NEVER_PREDICTED = 4


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def logits_with_unpredicted_class() -> tuple[np.ndarray, np.ndarray]:
    """Random (300, 5) logits whose last class is never the argmax but still occurs in labels."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 5))
    logits[:, NEVER_PREDICTED] -= 10.0
    labels = rng.integers(0, 5, size=300)
    return logits, labels


def sample_calibrated(n: int, num_classes: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, K) with labels drawn from softmax(logits), so T = 1 is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n, num_classes))
    cumulative = np.cumsum(softmax_probabilities(logits), axis=1)
    draws = rng.random((n, 1))
    labels = np.minimum((draws > cumulative).sum(axis=1), num_classes - 1)
    return logits, labels


def two_class_probs(confidence: np.ndarray, accuracy: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 2) predicting class 0 with ``confidence``; correct with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    probs = np.stack([confidence, 1.0 - confidence], axis=1)
    labels = (rng.random(len(confidence)) >= accuracy).astype(np.int64)
    return probs, labels


def make_history(train_loss: list[float], val_loss: list[float], val_acc: list[float]) -> list[dict]:
    return [
        {"epoch": epoch, "train_loss": tl, "val_loss": vl, "train_acc": 1.0 - tl / 3, "val_acc": va}
        for epoch, (tl, vl, va) in enumerate(zip(train_loss, val_loss, val_acc), start=1)
    ]


# ---------------------------------------------------------------------------
# classification_metrics
# ---------------------------------------------------------------------------


def test_metrics_equal_sklearn(logits_with_unpredicted_class):
    logits, labels = logits_with_unpredicted_class
    predictions = logits.argmax(axis=1)
    assert NEVER_PREDICTED not in predictions and NEVER_PREDICTED in labels
    class_ids = list(range(5))

    metrics = classification_metrics(logits, labels, CLASS_NAMES, topk=(1, 3, 5))

    assert metrics["n"] == 300
    assert metrics["accuracy"] == accuracy_score(labels, predictions)
    assert metrics["balanced_accuracy"] == balanced_accuracy_score(labels, predictions)
    for average in ("macro", "weighted"):
        expected = precision_recall_fscore_support(
            labels, predictions, labels=class_ids, average=average, zero_division=0
        )
        got = [metrics[name][average] for name in ("precision", "recall", "f1")]
        assert got == [float(value) for value in expected[:3]]
    per_class = precision_recall_fscore_support(labels, predictions, labels=class_ids, zero_division=0)
    for position, name in enumerate(("precision", "recall", "f1")):
        assert list(metrics[name]["per_class"].values()) == per_class[position].tolist()
    assert list(metrics["support"].values()) == per_class[3].tolist()
    assert metrics["precision"]["per_class"]["frog"] == 0.0  # never predicted -> zero_division=0

    assert metrics["confusion_matrix"] == confusion_matrix(labels, predictions, labels=class_ids).tolist()
    assert set(metrics["top_k_accuracy"]) == {"top_1", "top_3"}  # top_5 == 1 trivially for K = 5
    assert metrics["top_k_accuracy"]["top_1"] == top_k_accuracy_score(labels, logits, k=1, labels=class_ids)
    assert metrics["top_k_accuracy"]["top_3"] == top_k_accuracy_score(labels, logits, k=3, labels=class_ids)


def test_metrics_are_json_serialisable_and_consistent(logits_with_unpredicted_class):
    logits, labels = logits_with_unpredicted_class
    metrics = classification_metrics(logits, labels, CLASS_NAMES)

    assert json.loads(json.dumps(metrics)) == metrics
    np.testing.assert_allclose(np.sum(metrics["confusion_matrix_normalised"], axis=1), 1.0)
    assert "frog" in metrics["report_text"] and "macro avg" in metrics["report_text"]
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=1)
    expected_nll = torch.nn.functional.nll_loss(log_probs, torch.from_numpy(labels)).item()
    assert metrics["nll"] == pytest.approx(expected_nll, rel=1e-12)


def test_class_absent_from_labels_keeps_indices():
    logits = np.eye(3)[[0, 1, 0, 1]] * 5.0
    labels = np.array([0, 1, 0, 0])
    metrics = classification_metrics(logits, labels, ["a", "b", "c"])

    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert metrics["confusion_matrix_normalised"][2] == [0.0, 0.0, 0.0]  # no NaN for the empty row
    assert metrics["support"] == {"a": 3, "b": 1, "c": 0}


def test_metrics_reject_mismatched_class_names():
    with pytest.raises(ValueError, match="class names"):
        classification_metrics(np.zeros((2, 3)), np.array([0, 1]), ["a", "b"])


# ---------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------


def test_ece_near_zero_when_perfectly_calibrated():
    confidence = np.random.default_rng(1).uniform(0.5, 1.0, size=40_000)
    probs, labels = two_class_probs(confidence, accuracy=confidence, seed=2)
    assert expected_calibration_error(probs, labels) < 0.02


def test_ece_large_when_overconfident():
    confidence = np.random.default_rng(3).uniform(0.9, 1.0, size=5_000)
    probs, labels = two_class_probs(confidence, accuracy=np.full_like(confidence, 0.5), seed=4)
    assert expected_calibration_error(probs, labels) > 0.35


def test_reliability_bins_hand_computed():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.35, 0.65]])
    labels = np.array([0, 1, 0, 1])
    bins = reliability_bins(probs, labels, n_bins=10)

    assert bins["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert bins["accuracy"][9] == 0.5 and bins["confidence"][9] == pytest.approx(0.95)
    assert bins["accuracy"][6] == 1.0 and bins["confidence"][6] == pytest.approx(0.65)
    # ECE = (2/4)|0.5 - 0.95| + (1/4)|1 - 0.55| + (1/4)|1 - 0.65|
    expected = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.35
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)


def test_temperature_scaling_undoes_overconfidence():
    calibrated_logits, labels = sample_calibrated(n=16_000, num_classes=5, scale=1.5, seed=5)
    overconfident = 5.0 * calibrated_logits
    val, test = slice(0, 8_000), slice(8_000, None)

    temperature = fit_temperature(overconfident[val], labels[val])
    report = calibration_report(overconfident[test], labels[test], temperature)

    assert temperature == pytest.approx(5.0, rel=0.10)
    assert report["temperature"] == temperature
    assert report["nll_after"] < report["nll_before"]
    assert report["ece_after"] < report["ece_before"]
    assert report["ece_after"] < 0.03
    assert report["nll_before"] == negative_log_likelihood(overconfident[test], labels[test])


def test_fit_temperature_is_deterministic():
    logits, labels = sample_calibrated(n=2_000, num_classes=4, scale=3.0, seed=6)
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)


# ---------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------


def test_curve_summary_flags_overfitting():
    history = make_history(
        train_loss=[2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2],
        val_loss=[2.1, 1.6, 1.2, 1.0, 1.1, 1.2, 1.3],
        val_acc=[0.3, 0.5, 0.6, 0.7, 0.7, 0.68, 0.66],
    )
    summary = curve_summary(history)

    assert summary["best_epoch"] == 4  # tie at 0.7 with epoch 5 -> earliest
    assert summary["min_val_loss_epoch"] == 4
    assert summary["overfitting"] is True
    assert "train_loss kept falling" in summary["overfitting_reason"]


def test_curve_summary_healthy_run_not_flagged():
    history = make_history(
        train_loss=[2.0, 1.4, 1.0, 0.8, 0.7],
        val_loss=[2.1, 1.5, 1.1, 1.0, 1.02],
        val_acc=[0.3, 0.5, 0.6, 0.65, 0.66],
    )
    summary = curve_summary(history)
    assert summary["best_epoch"] == 5
    assert summary["overfitting"] is False
    assert json.loads(json.dumps(summary)) == summary


def test_curve_summary_ignores_divergence_without_falling_train_loss():
    history = make_history(
        train_loss=[2.0, 1.0, 1.5, 2.5],
        val_loss=[2.0, 1.0, 1.6, 2.6],
        val_acc=[0.3, 0.6, 0.4, 0.2],
    )
    assert curve_summary(history)["overfitting"] is False


def test_write_history_csv_round_trips(tmp_path):
    history = make_history([1.0, 0.5], [1.1, 0.9], [0.4, 0.6])
    path = write_history_csv(history, tmp_path / "run" / "history.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert float(rows[1]["val_acc"]) == 0.6
    assert list(rows[0])[:5] == ["epoch", "train_loss", "val_loss", "train_acc", "val_acc"]


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def assert_png(path) -> Image.Image:
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    image = Image.open(path)
    assert image.format == "PNG"
    return image


def test_plot_confusion_matrix_writes_png(tmp_path, logits_with_unpredicted_class):
    metrics = classification_metrics(*logits_with_unpredicted_class, CLASS_NAMES)
    assert_png(plot_confusion_matrix(metrics["confusion_matrix"], CLASS_NAMES, tmp_path / "cm.png", normalised=False))
    normalised = plot_confusion_matrix(
        metrics["confusion_matrix_normalised"], CLASS_NAMES, tmp_path / "cm_norm.png", normalised=True
    )
    assert_png(normalised)


def test_plot_reliability_diagram_writes_png(tmp_path):
    logits, labels = sample_calibrated(n=500, num_classes=3, scale=2.0, seed=7)
    bins = reliability_bins(softmax_probabilities(logits), labels, n_bins=10)
    assert_png(plot_reliability_diagram(bins, tmp_path / "reliability.png", title="test"))


def test_plot_training_curves_writes_png(tmp_path):
    history = make_history([1.0, 0.6, 0.4], [1.1, 0.8, 0.9], [0.4, 0.6, 0.55])
    assert_png(plot_training_curves(history, tmp_path / "curves.png", best_epoch=2))


def test_save_image_grid_grayscale_numpy(tmp_path):
    images = np.random.default_rng(8).integers(0, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    image = assert_png(save_image_grid(images, tmp_path / "gray.png", nrow=3, padding=2))
    assert image.mode == "L"
    assert image.size == (3 * 10 + 2, 2 * 10 + 2)  # 3 columns x 2 rows of 8 px + 2 px padding


def test_save_image_grid_rgb_torch_with_row_labels(tmp_path):
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    image = assert_png(save_image_grid(images, tmp_path / "rgb.png", nrow=3, row_labels=["real", "generated"]))
    assert image.mode == "RGB"
    assert image.size[0] > 3 * 18 + 2  # the label margin widens the grid
    assert image.size[1] == 2 * 18 + 2


def test_save_image_grid_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_image_grid(np.zeros((2, 1, 4, 4), dtype=np.float32), tmp_path / "x.png", nrow=2)
