"""Conditions shared by every generator: class ids, embeddings of given images, sampled embeddings,
and the embedding-space neighbourhoods of instance conditioning.

An *embedding condition* is the conditioning classifier's feature of a real image at one layer
(penultimate by default), average-pooled if the layer is a map, then L2-normalised: on the unit
sphere a cosine is a dot product, the kNN neighbourhoods (IC-GAN, Casanova et al. 2021) are
cosine neighbourhoods, and the generator never sees the arbitrary scale of a feature.

Unconditional generation with a conditional model samples embeddings (RCG, Li et al. 2024) from a
:class:`ConditionBank` fitted on the training split:

* ``gaussian``: a class drawn with its training frequency, then an embedding from that class's
  Gaussian (mean, covariance shrunk 10 % towards its average variance so that a class with fewer
  images than dimensions still has one), renormalised. The class is known, so GAN-test applies.
* ``kmeans``: one of the k-means centres (sized by their clusters), plus Gaussian noise with that
  cluster's per-dimension spread, renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from visrep.errors import UserError
from visrep.representations.neighbours import nearest_neighbours
from visrep.storage import atomic_write, read_safetensors

SAMPLING_METHODS = ("gaussian", "kmeans")
SHRINKAGE = 0.1  # covariance → (1 − s)·Σ + s·(tr Σ / D)·I


@torch.no_grad()
def embed_images(encoder, images: Tensor, layer: str, batch_size: int = 500) -> Tensor:
    """uint8 images (N, C, S, S) → unit-length embeddings (N, D) float32 at ``layer`` (maps average-pooled)."""
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size].to(encoder.scale.device)
        parts.append(pooled_embedding(encoder.forward_intermediates(chunk, [layer])[1][layer]))
    return torch.cat(parts).cpu() if parts else torch.zeros(0, encoder.embedding_dim)


def pooled_embedding(features: Tensor) -> Tensor:
    """A layer's output (N, D) or (N, C, H, W) → unit-length (N, D | C) float32; differentiable."""
    vectors = features.float().mean(dim=(2, 3)) if features.dim() == 4 else features.float()
    return F.normalize(vectors, dim=1)


def neighbourhoods(embeddings: Tensor, k: int) -> Tensor:
    """(N, k) int64: each row itself (first), then its k − 1 nearest other rows by cosine."""
    if not 1 <= k <= len(embeddings):
        raise UserError(f"neighbourhood size k={k} must be in [1, {len(embeddings)}] (the training images)")
    own = torch.arange(len(embeddings)).unsqueeze(1)
    if k == 1:
        return own
    others = nearest_neighbours(embeddings, embeddings, k - 1, exclude_self=True)[0]
    return torch.cat([own, others], dim=1)


@dataclass
class ConditionBank:
    """What sampled embeddings are drawn from, fitted on the training split's embeddings."""
    class_means: Tensor  # (K, D)
    class_cholesky: Tensor  # (K, D, D): lower factors of the shrunk class covariances
    class_counts: Tensor  # (K,) training images per class
    centres: Tensor  # (M, D) k-means centres
    centre_spread: Tensor  # (M, D) per-dimension standard deviation within each cluster
    centre_counts: Tensor  # (M,)

    @classmethod
    def fit(cls, embeddings: Tensor, labels: Tensor, num_classes: int, clusters: int = 100,
            seed: int = 0) -> ConditionBank:
        embeddings, labels = embeddings.double(), labels.long()
        means, factors, counts = [], [], []
        for label in range(num_classes):
            members = embeddings[labels == label]
            if len(members) < 2:
                raise UserError(f"class {label} has {len(members)} training image(s): a class Gaussian needs ≥ 2")
            means.append(members.mean(0))
            factors.append(torch.linalg.cholesky(_shrunk_covariance(members)))
            counts.append(len(members))
        centres, spread, sizes = _kmeans(embeddings.numpy(), min(clusters, len(embeddings)), seed)
        return cls(torch.stack(means).float(), torch.stack(factors).float(), torch.tensor(counts),
                   centres, spread, sizes)

    @property
    def dim(self) -> int:
        return self.class_means.shape[1]

    def sample(self, n: int, method: str = "gaussian", labels: Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """(unit embeddings (n, D), their classes (n,) for ``gaussian``, else None)."""
        if method == "gaussian":
            if labels is None:
                labels = torch.multinomial(self.class_counts.float(), n, replacement=True, generator=generator)
            noise = torch.randn(n, self.dim, generator=generator)
            draws = self.class_means[labels].clone()
            for label in labels.unique():  # per class, not (n, D, D) factors: memory stays O(n·D)
                rows = labels == label
                draws[rows] += noise[rows] @ self.class_cholesky[label].T
            return F.normalize(draws, dim=1), labels
        if method == "kmeans":
            picks = torch.multinomial(self.centre_counts.float(), n, replacement=True, generator=generator)
            draws = self.centres[picks] + self.centre_spread[picks] * torch.randn(n, self.dim, generator=generator)
            return F.normalize(draws, dim=1), None
        raise UserError(f"unknown embedding sampler '{method}'; choose from {', '.join(SAMPLING_METHODS)}")

    def save(self, path: Path) -> Path:
        tensors = {name: getattr(self, name).contiguous() for name in self.__dataclass_fields__}
        return atomic_write(Path(path), lambda temp: save_file(tensors, temp))

    @classmethod
    def load(cls, path: Path) -> ConditionBank:
        tensors, _ = read_safetensors(Path(path), "condition bank")
        missing = [name for name in cls.__dataclass_fields__ if name not in tensors]
        if missing:
            raise UserError(f"condition bank {path} lacks {', '.join(missing)}: it is damaged or from another "
                            f"version; train the run again")
        return cls(**{name: tensors[name] for name in cls.__dataclass_fields__})


def _shrunk_covariance(members: Tensor) -> Tensor:
    centred = members - members.mean(0)
    covariance = centred.T @ centred / (len(members) - 1)
    dim = covariance.shape[0]
    average_variance = covariance.diagonal().mean().clamp_min(1e-8)
    return (1 - SHRINKAGE) * covariance + SHRINKAGE * average_variance * torch.eye(dim, dtype=covariance.dtype)


def _kmeans(points: np.ndarray, clusters: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(points)
    assignment = model.labels_
    centres = model.cluster_centers_
    spread = np.stack([points[assignment == c].std(0) if (assignment == c).sum() > 1 else np.zeros(points.shape[1])
                       for c in range(clusters)])
    sizes = np.bincount(assignment, minlength=clusters)
    return (torch.from_numpy(centres).float(), torch.from_numpy(spread).float(),
            torch.from_numpy(sizes).long())
