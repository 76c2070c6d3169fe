"""Training curves: the per-epoch history a training loop logs → best epoch, an overfitting check,
curves.csv and curves.png. Written by the training loops at the end of a run and again by the
classifier evaluation (which reads metrics.jsonl).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrep.figures import plot_training_curves

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")


def write_curve_artefacts(history: list[dict], folder: Path) -> dict:
    """curves.csv + curves.png (best epoch marked) in ``folder``; returns the curve summary."""
    summary = curve_summary(history)
    write_history_csv(history, folder / "curves.csv")
    plot_training_curves(history, folder / "curves.png", summary["best_epoch"])
    return summary


def _sorted_history(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not history:
        raise ValueError("history is empty")
    for entry in history:
        missing = [column for column in HISTORY_COLUMNS if column not in entry]
        if missing:
            raise ValueError(f"history entry {entry} lacks {missing}")
    return sorted(history, key=lambda entry: entry["epoch"])


def curve_summary(history: Sequence[dict[str, Any]], tolerance: float = 0.10) -> dict[str, Any]:
    """Best epoch and an overfitting check from per-epoch training history.

    Each entry needs ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``.
    Entries are ordered by epoch before analysis.

    Best epoch: the epoch with the highest ``val_acc``; the earliest one on ties.

    Overfitting rule: let m be the (earliest) epoch of minimum ``val_loss``. The run is
    flagged when both
      * ``val_loss`` at the last epoch > (1 + tolerance) * ``val_loss`` at m
        (default: more than 10% above its minimum; losses are assumed positive), and
      * ``train_loss`` at the last epoch < ``train_loss`` at m, i.e. training loss kept
        falling after the validation loss bottomed out.
    Rising validation loss with non-falling training loss points to unstable
    optimisation rather than overfitting, so it is not flagged.

    A run without a validation split logs ``val_loss``/``val_acc`` as None: then every val entry of
    the summary and ``overfitting`` are None (nothing to judge them by).

    Returns:
        ``{"best_epoch", "best_val_acc", "min_val_loss_epoch", "min_val_loss",
        "final_val_loss", "overfitting": bool | None, "overfitting_reason": str}``.
    """
    entries = _sorted_history(history)
    if any(entry["val_acc"] is None or entry["val_loss"] is None for entry in entries):
        summary = dict.fromkeys(("best_epoch", "best_val_acc", "min_val_loss_epoch", "min_val_loss",
                                 "final_val_loss", "overfitting"))
        summary["overfitting_reason"] = "not judged: the run has no validation split"
        return summary
    epochs = [entry["epoch"] for entry in entries]
    val_acc = np.array([entry["val_acc"] for entry in entries], dtype=np.float64)
    val_loss = np.array([entry["val_loss"] for entry in entries], dtype=np.float64)
    train_loss = np.array([entry["train_loss"] for entry in entries], dtype=np.float64)

    best = int(np.argmax(val_acc))  # argmax returns the first maximum: earliest epoch on ties
    minimum = int(np.argmin(val_loss))
    overfitting, reason = _overfitting_verdict(val_loss, train_loss, minimum, epochs, tolerance)
    return {
        "best_epoch": epochs[best],
        "best_val_acc": float(val_acc[best]),
        "min_val_loss_epoch": epochs[minimum],
        "min_val_loss": float(val_loss[minimum]),
        "final_val_loss": float(val_loss[-1]),
        "overfitting": overfitting,
        "overfitting_reason": reason,
    }


def _overfitting_verdict(
    val_loss: np.ndarray,
    train_loss: np.ndarray,
    minimum: int,
    epochs: list[Any],
    tolerance: float,
) -> tuple[bool, str]:
    """Apply the rule documented in :func:`curve_summary`; return (flag, human-readable reason)."""
    rise = val_loss[-1] / val_loss[minimum] - 1.0 if val_loss[minimum] > 0 else 0.0
    val_rose = val_loss[-1] > (1.0 + tolerance) * val_loss[minimum]
    train_fell = train_loss[-1] < train_loss[minimum]
    where = f"val_loss is {rise:.1%} above its minimum at epoch {epochs[minimum]}"
    if val_rose and train_fell:
        return True, f"{where} while train_loss kept falling ({train_loss[minimum]:.4g} -> {train_loss[-1]:.4g})"
    if val_rose:
        return False, f"{where}, but train_loss did not fall after it (unstable training, not overfitting)"
    return False, f"{where} (within the {tolerance:.0%} tolerance)"


def write_history_csv(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the per-epoch history to CSV, one row per epoch, ordered by epoch.

    Columns: ``epoch, train_loss, val_loss, train_acc, val_acc`` first, then any
    extra keys in order of first appearance. Parent folders are created.
    Returns the written path.
    """
    entries = _sorted_history(history)
    columns = list(HISTORY_COLUMNS)
    for entry in entries:
        columns.extend(key for key in entry if key not in columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(entries)
    return path
