"""Distances between two sets of feature vectors: FID, KID and precision/recall/density/coverage.

All statistics are float64. Inputs are (N, D) and (M, D) arrays of features from the same network.

* FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to each set. The matrix square
  root goes through symmetric eigendecompositions (tr √(Σ₁Σ₂) = Σ √λ(√Σ₁ Σ₂ √Σ₁)), which stays real
  and stable where a general ``sqrtm`` returns small imaginary parts.
* KID (Bińkowski et al. 2018): unbiased MMD² with the kernel (x·y/D + 1)³, mean ± std over random
  subsets; unbiased, so it is usable at small N where FID is biased upwards.
* PRDC (Naeem et al. 2020): k-nearest-neighbour manifolds; the four numbers are always reported
  together because each alone is easy to game.
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) → (mean (D,), unbiased covariance (D, D)), float64."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("FID needs at least 2 feature vectors per set")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂) for symmetric positive semi-definite Σ (float64)."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict:
    """{"mean", "std", "subsets", "subset_size"} of unbiased MMD² over random subsets (without replacement).

    std is the spread over subsets (ddof=1): how much one estimate at that size moves. ``subset_size``
    is capped at half the smaller set, because subsets holding a whole set are all the same set and
    would report a spread of 0.
    """
    x, y = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    smaller = min(len(x), len(y))
    size = min(subset_size, smaller if subsets == 1 or smaller < 4 else smaller // 2)
    if size < 2:
        raise ValueError("KID needs at least 2 feature vectors per set")
    rng = np.random.default_rng(seed)
    values = np.array([_mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                      y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if subsets > 1 else 0.0,
            "subsets": int(subsets), "subset_size": int(size)}


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two (m, D) sets with the cubic polynomial kernel."""
    m, dim = len(x), x.shape[1]
    kernel = lambda a, b: (a @ b.T / dim + 1.0) ** 3  # noqa: E731
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 1024,
         real_radii: np.ndarray | None = None) -> dict:
    """Precision, recall, density and coverage with k-NN radii (strict "<", as Naeem et al.'s code).

    precision: fraction of fake points inside some real point's k-NN ball;
    recall: fraction of real points inside some fake point's k-NN ball;
    density: mean number of real balls holding each fake point, divided by k;
    coverage: fraction of real points whose ball holds at least one fake point.
    Memory is O(chunk · N): the full N x M distance matrix is never held. ``real_radii`` (from
    :func:`knn_radii`) saves recomputing the real set's radii when it is compared with several sets.
    """
    r, f = torch.as_tensor(np.asarray(real, np.float64)), torch.as_tensor(np.asarray(fake, np.float64))
    if len(r) <= k or len(f) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} points per set")
    real_radii = _kth_neighbour_distance(r, k, chunk) if real_radii is None else torch.as_tensor(real_radii)
    fake_radii = _kth_neighbour_distance(f, k, chunk)
    inside_real = torch.zeros(len(f), dtype=torch.bool)
    balls_per_fake = torch.zeros(len(f), dtype=torch.float64)
    real_recalled = torch.zeros(len(r), dtype=torch.bool)
    nearest_fake = torch.full((len(r),), float("inf"), dtype=torch.float64)
    for start in range(0, len(f), chunk):
        rows = slice(start, start + chunk)
        distances = _distances(f[rows], r)  # (c, N_real)
        in_real_ball = distances < real_radii[None, :]
        inside_real[rows] = in_real_ball.any(dim=1)
        balls_per_fake[rows] = in_real_ball.sum(dim=1).double()
        real_recalled |= (distances < fake_radii[rows, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, distances.min(dim=0).values)
    return {"precision": float(inside_real.double().mean()), "recall": float(real_recalled.double().mean()),
            "density": float(balls_per_fake.mean() / k), "coverage": float((nearest_fake < real_radii).double().mean()),
            "k": int(k)}


def knn_radii(features: np.ndarray, k: int = 5, chunk: int = 1024) -> np.ndarray:
    """(N,) distance from each point to its k-th nearest other point, float64."""
    return _kth_neighbour_distance(torch.as_tensor(np.asarray(features, np.float64)), k, chunk).numpy()


def _kth_neighbour_distance(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest other point (the point itself is the 0th)."""
    radii = [torch.kthvalue(_distances(x[start:start + chunk], x), k + 1, dim=1).values
             for start in range(0, len(x), chunk)]
    return torch.cat(radii)


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) via ‖a‖² + ‖b‖² − 2ab (float64 keeps the cancellation harmless)."""
    squared = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return squared.clamp_min_(0).sqrt_()
