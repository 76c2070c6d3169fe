"""Distances between two sets of feature vectors: FID, KID and precision/recall/density/coverage.

All statistics are float64. Inputs are (N, D) and (M, D) arrays of features from the same network.

* FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to each set. The matrix square
  root goes through symmetric eigendecompositions (tr √(Σ₁Σ₂) = Σ √λ(√Σ₁ Σ₂ √Σ₁)), which stays real
  and stable where a general ``sqrtm`` returns small imaginary parts.
* KID (Bińkowski et al. 2018): unbiased MMD² with the kernel (x·y/D + 1)³ over all pairs, with its
  standard error; unbiased, so it is usable at small N where FID is biased upwards.
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


def kid(real: np.ndarray, fake: np.ndarray, chunk: int = 2048) -> dict:
    """KID over the whole sets: {"value", "std_error", "n_real", "n_fake"}.

    value: the unbiased MMD² of (m, D) ``real`` and (n, D) ``fake`` with the kernel (x·y/D + 1)³, over
    every pair (Bińkowski et al. average the same unbiased estimate over random subsets of 1000; both
    estimate the same quantity, the whole-set one with less variance and no random draw).
    std_error: the first-order (Hájek) standard error of that U-statistic, √(4·Var f_x/m + 4·Var f_y/n)
    with f_x(xᵢ) = mean_j k(xᵢ, xⱼ) − mean_j k(xᵢ, yⱼ) and f_y alike. It errs on the safe side: the
    row means carry their own sampling noise (1.2x the spread of fresh draws in the tests). Where the
    two distributions are equal the first-order term vanishes in theory; the estimate then measures
    the second-order noise, still of the right size (1.45x). Float64; memory O(chunk · (m + n)).
    """
    x, y = torch.as_tensor(np.asarray(real, np.float64)), torch.as_tensor(np.asarray(fake, np.float64))
    m, n = len(x), len(y)
    if min(m, n) < 2:
        raise ValueError("KID needs at least 2 feature vectors per set")
    x_within, x_cross, cross_column_sums = _kernel_row_means(x, x, y, chunk)
    y_within, _, _ = _kernel_row_means(y, y, None, chunk)
    f_x = x_within - x_cross  # (m,)
    f_y = y_within - cross_column_sums / m  # (n,)
    value = x_within.mean() + y_within.mean() - 2 * x_cross.mean()
    variance = 4 * f_x.var() / m + 4 * f_y.var() / n  # torch's var is the unbiased (n − 1) one
    return {"value": float(value), "std_error": float(variance.sqrt()), "n_real": int(m), "n_fake": int(n)}


def _kernel_row_means(a: torch.Tensor, same: torch.Tensor, other: torch.Tensor | None, chunk: int
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per row of ``a``: the mean kernel value with the other rows of ``same`` (itself excluded) and the
    mean with the rows of ``other``; plus the column sums of the (len(a), len(other)) kernel matrix."""
    size = len(a)
    within = torch.empty(size, dtype=torch.float64)
    cross = torch.empty(size, dtype=torch.float64) if other is not None else None
    column_sums = torch.zeros(len(other), dtype=torch.float64) if other is not None else None
    for start in range(0, size, chunk):
        rows = slice(start, start + chunk)
        block = _cubic_kernel(a[rows], same)  # (c, len(same))
        diagonal = block.diagonal(offset=start)  # k(aᵢ, aᵢ): the row's own entry, left out
        within[rows] = (block.sum(dim=1) - diagonal) / (len(same) - 1)
        if other is not None:
            block = _cubic_kernel(a[rows], other)
            cross[rows] = block.mean(dim=1)
            column_sums += block.sum(dim=0)
    return within, cross, column_sums


def _cubic_kernel(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(p·q/D + 1)³ for (c, D) and (r, D) float64 → (c, r), in place on the product (no temporaries)."""
    return (p @ q.T).div_(p.shape[1]).add_(1.0).pow_(3)


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
