"""Figures written straight to PNG files (confusion matrices, reliability diagrams, training curves, image grids).

Matplotlib is switched to the non-interactive Agg backend before pyplot is
imported, so these functions work on headless machines and never open windows. pyplot is
imported on first use (:func:`_pyplot`), not with this module: it costs ~0.5 s, which every
command would pay, and the image grids need only PIL.
Every function creates its own figure, saves it, closes it (to free memory in
long runs) and returns the written path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Above this many classes the per-cell numbers become unreadable, so they are left out.
MAX_ANNOTATED_CLASSES = 20


def _pyplot():
    """matplotlib.pyplot on the Agg backend (chosen before pyplot's first import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[float]],
    class_names: Sequence[str],
    path: str | Path,
    normalised: bool,
) -> Path:
    """Heat map of a K x K confusion matrix (rows = true class, columns = predicted).

    Args:
        cm: counts, or row-normalised fractions when ``normalised`` is True.
        class_names: K names for the axis ticks.
        path: PNG file to write.
        normalised: fixes the colour scale to [0, 1] and prints cells as fractions.
    """
    matrix = np.asarray(cm, dtype=np.float64)
    num_classes = matrix.shape[0]
    side = min(4.0 + 0.4 * num_classes, 20.0)
    figure, axes = _pyplot().subplots(figsize=(side, side))
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0 if normalised else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(num_classes), labels=list(class_names), rotation=45, ha="right")
    axes.set_yticks(range(num_classes), labels=list(class_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix (row-normalised)" if normalised else "confusion matrix")
    if num_classes <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(axes, matrix, normalised)
    return _save(figure, path)


def _annotate_cells(axes, matrix: np.ndarray, normalised: bool) -> None:
    # White text on dark cells, black on light ones, so every number stays legible.
    threshold = matrix.max() / 2.0 if matrix.size else 0.0
    for row, column in np.ndindex(matrix.shape):
        value = matrix[row, column]
        text = f"{value:.2f}" if normalised else f"{int(round(value))}"
        colour = "white" if value > threshold else "black"
        axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=8)


def plot_reliability_diagram(bins: dict[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """Reliability diagram from :func:`visrep.evaluation.classification.reliability_bins`.

    Bars show accuracy per confidence bin; the hatched part is the gap to the bin's
    mean confidence; the dashed diagonal is perfect calibration. Empty bins are skipped.
    The ECE computed from the bins is shown in the legend.
    """
    edges = np.asarray(bins["bin_edges"], dtype=np.float64)
    accuracy = np.asarray(bins["accuracy"], dtype=np.float64)
    confidence = np.asarray(bins["confidence"], dtype=np.float64)
    count = np.asarray(bins["count"], dtype=np.float64)
    filled = count > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    ece = float((count * np.abs(accuracy - confidence)).sum() / max(count.sum(), 1.0))

    figure, axes = _pyplot().subplots(figsize=(5, 5))
    axes.bar(left, accuracy[filled], width=width, align="edge", edgecolor="black", label="accuracy")
    axes.bar(
        left,
        confidence[filled] - accuracy[filled],
        bottom=accuracy[filled],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        label=f"gap to confidence (ECE {ece:.3f})",
    )
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    # below the axes: inside, any corner can hide a bar (under- or over-confident bins)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False, fontsize=8)
    return _save(figure, path)


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | Path, best_epoch: int | None) -> Path:
    """Loss (left) and accuracy (right) against epoch for train and val.

    ``history`` entries need ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``,
    ``val_acc``. A dotted vertical line marks ``best_epoch`` when given. A run without a
    validation split (val entries None) is drawn with its train curves only.
    """
    entries = sorted(history, key=lambda entry: entry["epoch"])
    epochs = [entry["epoch"] for entry in entries]
    splits = ("train", "val") if all(entry["val_acc"] is not None for entry in entries) else ("train",)
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axes, accuracy_axes) = _pyplot().subplots(1, 2, figsize=(10, 4))
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "acc")):
        for split in splits:
            axes.plot(epochs, [entry[f"{split}_{metric}"] for entry in entries], marker=".", label=split)
        if best_epoch is not None:
            axes.axvline(best_epoch, color="gray", linestyle=":", label=f"best epoch {best_epoch}")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # no fractional epochs on the axis
        axes.set_ylabel("loss" if metric == "loss" else "accuracy")
        axes.legend()
        axes.grid(alpha=0.3)
    loss_axes.set_title("loss")
    accuracy_axes.set_title("accuracy")
    return _save(figure, path)


def plot_lr_range(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float], lowest: float,
                  suggestion: float, path: str | Path) -> Path:
    """Training loss against learning rate (log axis) from a range test: raw, smoothed, and two markers
    (the smoothed loss's lowest point and the suggested rate, where it falls fastest)."""
    figure, axes = _pyplot().subplots(figsize=(6, 4))
    axes.plot(lrs, losses, color="lightgray", label="loss per step")
    axes.plot(lrs, smoothed, label="smoothed")
    axes.axvline(lowest, color="gray", linestyle=":", label=f"lowest at {lowest:.3g}")
    axes.axvline(suggestion, color="tab:green", linestyle="--", label=f"suggested train.lr {suggestion:.3g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (peak of the one-cycle schedule)")
    axes.set_ylabel("training loss")
    top = max(smoothed[: max(1, len(smoothed) // 5)])  # the divergent tail would flatten the interesting part
    axes.set_ylim(min(smoothed) * 0.9, top * 1.5)
    axes.legend()
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _as_uint8_nchw(images: Any) -> np.ndarray:
    """Torch tensor or numpy array (N, C, H, W) uint8 with C in {1, 3} -> numpy array."""
    if hasattr(images, "detach"):  # torch.Tensor, without importing torch here
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("no images to draw")
    return images


def save_image_grid(
    images_uint8: Any,
    path: str | Path,
    nrow: int,
    row_labels: Sequence[str] | None = None,
    padding: int = 2,
    column_labels: Sequence[str] | None = None,
    frames: Sequence[tuple[int, int, int] | None] | None = None,
) -> Path:
    """Tile images into one PNG grid at native resolution.

    Args:
        images_uint8: uint8 torch tensor or numpy array (N, C, H, W), C = 1 (grayscale)
            or 3 (RGB).
        path: PNG file to write.
        nrow: images per row (as in ``torchvision.utils.make_grid``); the grid has
            ceil(N / nrow) rows.
        row_labels: optional text per grid row, drawn in a left margin.
        padding: white pixels between and around images.
        column_labels: optional text per grid column, drawn in a header band.
        frames: optional RGB colour (or None) per image, drawn as a frame around it (the grid
            becomes RGB when any is given).
    """
    images = _as_uint8_nchw(images_uint8)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    count, channels, height, width = images.shape
    rows = -(-count // nrow)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} grid rows")

    font = ImageFont.load_default()
    margin = _label_margin(row_labels, font, padding)
    header = 14 if column_labels is not None else 0
    framed = frames is not None and any(colour is not None for colour in frames)
    padding = max(padding, 3) if framed else padding  # room for a frame between cells
    mode = "L" if channels == 1 and not framed else "RGB"
    white = 255 if mode == "L" else (255, 255, 255)
    canvas = Image.new(
        mode,
        (margin + nrow * (width + padding) + padding, header + rows * (height + padding) + padding),
        white,
    )
    draw = ImageDraw.Draw(canvas)
    for index, image in enumerate(images):
        row, column = divmod(index, nrow)
        pixels = image[0] if channels == 1 else image.transpose(1, 2, 0)
        corner = (margin + padding + column * (width + padding), header + padding + row * (height + padding))
        canvas.paste(Image.fromarray(np.ascontiguousarray(pixels)).convert(mode), corner)
        if framed and frames[index] is not None:
            draw.rectangle([corner[0] - 2, corner[1] - 2, corner[0] + width + 1, corner[1] + height + 1],
                           outline=tuple(frames[index]), width=2)
    if row_labels is not None:
        _draw_row_labels(canvas, row_labels, font, height, padding, header)
    if column_labels is not None:
        black = 0 if mode == "L" else (0, 0, 0)
        for column, label in enumerate(column_labels):
            draw.text((margin + padding + column * (width + padding), 1), str(label), fill=black, font=font)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _label_margin(row_labels: Sequence[str] | None, font: ImageFont.ImageFont, padding: int) -> int:
    """Width in pixels of the left margin that fits the widest row label (0 without labels)."""
    if not row_labels:
        return 0
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    widest = max(probe.textbbox((0, 0), str(label), font=font)[2] for label in row_labels)
    return int(widest) + 2 * padding


def _draw_row_labels(
    canvas: Image.Image,
    row_labels: Sequence[str],
    font: ImageFont.ImageFont,
    height: int,
    padding: int,
    top: int = 0,
) -> None:
    draw = ImageDraw.Draw(canvas)
    black = 0 if canvas.mode == "L" else (0, 0, 0)
    for row, label in enumerate(row_labels):
        # Centre vertically by measuring the text (bitmap fonts do not support anchors).
        top, bottom = draw.textbbox((0, 0), str(label), font=font)[1::2]
        centre_y = top + padding + row * (height + padding) + height / 2
        draw.text((padding, centre_y - (top + bottom) / 2), str(label), fill=black, font=font)
