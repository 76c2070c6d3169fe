"""Summaries of the train embeddings that the generators condition on.

* ``ClassStats``: per-class mean, variance, count and (for D ≤ a limit) full covariance, so a
  generator can draw "a new cat embedding" from N(μ_cat, Σ_cat) ("draw me a cat" without a photo).
* ``KMeansCentres``: centres of k-means over all train embeddings, with their size and majority
  class: "draw anything" samples a centre (or a stored embedding), as in IC-GAN / RCG.

Everything is computed in float64 and stored as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visrep.representations.store import read_safetensors, write_safetensors


@dataclass
class ClassStats:
    means: Tensor  # (K, D)
    variances: Tensor  # (K, D), population variance (ddof 0)
    counts: Tensor  # (K,) int64
    covariances: Tensor | None  # (K, D, D), or None when D was above the size limit
    class_names: list[str]
    layer: str

    def sample(self, labels: Tensor, generator: torch.Generator | None = None, shrinkage: float = 1e-4) -> Tensor:
        """Draw one embedding (D,) per entry of ``labels`` (B,) from that class's Gaussian → (B, D).

        Uses the full covariance when stored (plus ``shrinkage``·mean variance on the diagonal, so a
        rank-deficient Σ still factorises), else the diagonal variances.
        """
        labels = torch.as_tensor(labels, dtype=torch.int64)
        noise = torch.randn((len(labels), self.means.shape[1]), generator=generator, dtype=torch.float64)
        means = self.means[labels].double()
        if self.covariances is None:
            return (means + noise * self.variances[labels].double().sqrt()).float()
        samples = means.clone()
        for k in labels.unique().tolist():
            rows = labels == k
            samples[rows] += noise[rows] @ self._cholesky(k, shrinkage).T
        return samples.float()

    def _cholesky(self, k: int, shrinkage: float) -> Tensor:
        covariance = self.covariances[k].double()
        jitter = shrinkage * float(covariance.diagonal().mean().clamp_min(1e-12))
        return torch.linalg.cholesky(covariance + jitter * torch.eye(len(covariance), dtype=torch.float64))


@dataclass
class KMeansCentres:
    centres: Tensor  # (M, D)
    sizes: Tensor  # (M,) int64 train points per centre
    majority_label: Tensor  # (M,) int64 most frequent class among those points
    layer: str


def class_statistics(features: Tensor, labels: Tensor, class_names: list[str], layer: str,
                     covariance_max_dim: int = 2048) -> ClassStats:
    """Per-class moments of ``features`` (N, D) with ``labels`` (N,); empty classes get zeros."""
    x = features.reshape(len(features), -1).double()
    num_classes, dim = len(class_names), x.shape[1]
    means, variances = torch.zeros(num_classes, dim, dtype=torch.float64), torch.zeros(num_classes, dim, dtype=torch.float64)
    counts = torch.bincount(labels, minlength=num_classes)
    keep_covariance = dim <= covariance_max_dim
    covariances = torch.zeros(num_classes, dim, dim, dtype=torch.float64) if keep_covariance else None
    for k in range(num_classes):
        rows = x[labels == k]
        if len(rows) == 0:
            continue
        means[k] = rows.mean(0)
        centred = rows - means[k]
        variances[k] = (centred ** 2).mean(0)
        if keep_covariance:
            covariances[k] = centred.T @ centred / len(rows)
    return ClassStats(means.float(), variances.float(), counts, None if covariances is None else covariances.float(),
                      list(class_names), layer)


def kmeans_centres(features: Tensor, labels: Tensor, clusters: int, layer: str, seed: int = 0) -> KMeansCentres:
    """k-means (k-means++ init, one run, fixed seed → reproducible) over ``features`` (N, D)."""
    from sklearn.cluster import KMeans

    x = features.reshape(len(features), -1).double().numpy()
    clusters = max(1, min(clusters, len(x)))
    model = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(x)
    assignment = torch.from_numpy(model.labels_.astype(np.int64))
    sizes = torch.bincount(assignment, minlength=clusters)
    majority = torch.tensor([int(torch.bincount(labels[assignment == c]).argmax()) if sizes[c] else -1
                             for c in range(clusters)], dtype=torch.int64)
    return KMeansCentres(torch.from_numpy(model.cluster_centers_).float(), sizes, majority, layer)


def save_class_stats(path: Path, stats: ClassStats, metadata: dict) -> Path:
    tensors = {"means": stats.means, "variances": stats.variances, "counts": stats.counts}
    if stats.covariances is not None:
        tensors["covariances"] = stats.covariances
    return write_safetensors(path, tensors, {**metadata, "layer": stats.layer, "class_names": stats.class_names})


def read_class_stats(path: Path) -> ClassStats:
    tensors, metadata = read_safetensors(path)
    return ClassStats(tensors["means"], tensors["variances"], tensors["counts"], tensors.get("covariances"),
                      metadata["class_names"], metadata["layer"])


def save_kmeans(path: Path, centres: KMeansCentres, metadata: dict) -> Path:
    tensors = {"centres": centres.centres, "sizes": centres.sizes, "majority_label": centres.majority_label}
    return write_safetensors(path, tensors, {**metadata, "layer": centres.layer})


def read_kmeans(path: Path) -> KMeansCentres:
    tensors, metadata = read_safetensors(path)
    return KMeansCentres(tensors["centres"], tensors["sizes"], tensors["majority_label"], metadata["layer"])
