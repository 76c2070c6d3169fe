"""Figures for one layer: a 2-D map coloured by class, a retrieval grid, and near-duplicate pairs.

Written straight to PNG (Agg backend, never opens a window).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from visrep.figures import save_image_grid  # noqa: E402

# t-SNE first reduces to this many PCA components (standard practice: faster, less noise).
TSNE_PCA_DIMS = 50
QUERY_FRAME, WRONG_FRAME = (40, 90, 220), (220, 30, 30)  # RGB frames: the query, a neighbour of another class
# Grid cells are enlarged (nearest neighbour) to at least this many pixels, so 8 px digits stay visible.
MIN_CELL_PIXELS = 32
PAIR_CELL_PIXELS = 64  # near-duplicate pairs are judged by eye: larger cells than the retrieval grid


def map_coordinates(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """2-D coordinates of (N, D) points: {"PCA": (N, 2), "t-SNE": (N, 2), "UMAP": (N, 2) if umap-learn is installed}."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    maps = {"PCA": _pca(centred, 2)}
    if len(x) >= 5:
        maps["t-SNE"] = _tsne(_pca(centred, TSNE_PCA_DIMS), seed)
    if importlib.util.find_spec("umap") is not None and len(x) >= 10:
        import umap

        maps["UMAP"] = umap.UMAP(random_state=seed).fit_transform(x)
    return maps


def _pca(centred: np.ndarray, dims: int) -> np.ndarray:
    dims = min(dims, *centred.shape)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coordinates = u[:, :dims] * s[:dims]
    if coordinates.shape[1] < 2:  # a 1-D layer still gets a 2-D plot
        coordinates = np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))
    return coordinates


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, (len(x) - 1) / 3))
    # One OpenMP thread: torch and scikit-learn ship separate OpenMP runtimes whose spinning threads
    # fight over the cores, so one thread is faster than the default
    # (benchmarks/notes/measurements-behind-code-choices.md).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        warnings.simplefilter("ignore", FutureWarning)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_maps(maps: dict[str, np.ndarray], labels: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    """One scatter panel per map, points coloured by class, axes named, one legend under the panels
    (up to 20 classes). Dots grow as points get fewer, so a few hundred points stay visible."""
    figure, axes = plt.subplots(1, len(maps), figsize=(5 * len(maps), 5.0), squeeze=False)
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20" if len(class_names) <= 20 else "viridis")
    size = float(np.clip(12000 / max(len(labels), 1), 6, 40))  # marker area in points²
    for panel, (name, coordinates) in zip(axes[0], maps.items()):
        for k, class_name in enumerate(class_names):
            rows = labels == k
            if rows.any():
                colour = colours(k if len(class_names) <= 20 else k / max(len(class_names) - 1, 1))
                panel.scatter(coordinates[rows, 0], coordinates[rows, 1], s=size, color=colour, label=class_name,
                              alpha=0.7, linewidths=0)
        panel.set_title(f"{name} ({len(labels)} points)")
        panel.set_xlabel(f"{name} 1")
        panel.set_ylabel(f"{name} 2")
        panel.set_xticks([])
        panel.set_yticks([])
    if len(class_names) <= 20:
        handles, names = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, -0.01), ncol=min(10, len(names)),
                      markerscale=max(1.0, 30 / size) ** 0.5, fontsize=9, frameon=False)
        figure.subplots_adjust(bottom=0.16)
    figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path


def save_retrieval_grid(query_images: torch.Tensor, neighbour_images: torch.Tensor, row_labels: list[str],
                        path: Path, correct: torch.Tensor | None = None) -> Path:
    """Rows of [query | its k neighbours, nearest first] under a header row ("query", "1" ... "k"):
    ``query_images`` (Q, C, H, W) uint8, ``neighbour_images`` (Q, k, C, H, W) uint8, ``row_labels``
    one per query, ``correct`` (Q, k) bool: a neighbour of another class gets a red frame, the query
    a blue one."""
    rows = torch.cat([query_images.unsqueeze(1), neighbour_images], dim=1)  # (Q, 1 + k, C, H, W)
    queries, per_row = rows.shape[:2]
    images = _enlarge(rows.flatten(0, 1))
    frames = [[QUERY_FRAME] + [None if correct is None or bool(correct[q, j]) else WRONG_FRAME
                               for j in range(per_row - 1)] for q in range(queries)]
    header = ["query", *(str(j) for j in range(1, per_row))]
    return save_image_grid(images, path, nrow=per_row, row_labels=row_labels, column_labels=header,
                           frames=[colour for row in frames for colour in row])


def save_pair_grid(left: torch.Tensor, right: torch.Tensor, row_labels: list[str], column_labels: list[str],
                   path: Path, differ: list[bool] | None = None) -> Path:
    """One row per pair, ``left[i]`` beside ``right[i]`` (both (P, C, H, W) uint8), labelled in the margin;
    ``differ[i]`` frames a pair in red (e.g. the two images carry different classes)."""
    images = _enlarge(torch.stack([left, right], dim=1).flatten(0, 1), PAIR_CELL_PIXELS)
    frames = None
    if differ is not None and any(differ):
        frames = [WRONG_FRAME if flag else None for flag in differ for _ in range(2)]
    return save_image_grid(images, path, nrow=2, row_labels=row_labels, column_labels=column_labels, frames=frames)


def _enlarge(images: torch.Tensor, cell: int = MIN_CELL_PIXELS) -> torch.Tensor:
    factor = max(1, -(-cell // images.shape[-1]))
    return images.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
