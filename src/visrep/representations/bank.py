"""The condition bank: what sampled embedding conditions are drawn from (RCG, Li et al. 2024),
fitted on the unit-length training embeddings at one layer.

The embeddings stage fits it beside the embeddings it stores (``<layer>/bank.safetensors``) and a
generator reads that one when it conditions on the same weights, data and layer with the same
k-means settings; otherwise the generator fits it with this same code.

* ``gaussian``: a class drawn with its training frequency, then an embedding from that class's
  Gaussian (mean, covariance shrunk 10 % towards its average variance so that a class with fewer
  images than dimensions still has one), renormalised. The class is known, so GAN-test applies.
* ``kmeans``: one of the k-means centres (sized by their clusters), plus Gaussian noise with that
  cluster's per-dimension spread, renormalised.

Everything is fitted in float64 and stored as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import UserError
from visrep.representations.store import write_safetensors
from visrep.storage import read_safetensors as read_tensor_file

SAMPLING_METHODS = ("gaussian", "kmeans")
SHRINKAGE = 0.1  # covariance → (1 − s)·Σ + s·(tr Σ / D)·I
BANK_FILE = "bank.safetensors"  # beside a layer's stored embeddings


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
        """Fitted on unit-length ``embeddings`` (N, D) with ``labels`` (N,): ``clusters`` k-means centres
        (capped at N) from k-means++ with ``seed``."""
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

    def save(self, path: Path, metadata: dict | None = None) -> Path:
        """Atomically, with ``metadata`` (text values: what it was fitted on, e.g. layer, clusters, seed)."""
        tensors = {name: getattr(self, name).contiguous() for name in self.__dataclass_fields__}
        return write_safetensors(Path(path), tensors, metadata or {})

    @classmethod
    def load(cls, path: Path) -> ConditionBank:
        return cls.from_tensors(read_bank(path)[0], path)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], path: Path) -> ConditionBank:
        """A bank from a saved file's tensors (``path``: named in the error line when one is missing)."""
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


def read_bank(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata: text values) of a saved bank; one UserError line when missing or unreadable."""
    return read_tensor_file(Path(path), "condition bank")
