"""How transferable is a layer? Label-efficiency and geometry measures of its embeddings.

All functions take (N, D) float arrays/tensors and integer labels (N,):

* ``knn_accuracy``: cosine k-nearest-neighbour vote, bank = train split (no training at all);
* ``linear_probe``: logistic regression fitted on train (standardised features), scored elsewhere;
* ``silhouette``: class separation in cosine distance, in [−1, 1] (higher = tighter, more apart);
* ``dimensionality``: PCA components for 95 % of the variance, and the participation ratio
  (Σλ)² / Σλ² — an "effective number of dimensions" that needs no threshold.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from visrep.representations.neighbours import as_matrix, nearest_neighbours


def knn_accuracy(train_x, train_y, eval_x, eval_y, k: int = 10) -> float:
    """Fraction of ``eval`` points whose k cosine-nearest train points vote for the right class.

    Ties are broken by the summed similarity of the tied classes' voters (so k = 1 behaviour is exact).
    """
    if len(eval_y) == 0:
        return float("nan")
    k = min(k, len(train_y))
    neighbours, similarities = nearest_neighbours(eval_x, train_x, k)
    train_y = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    votes_for = train_y[neighbours]  # (Q, k)
    num_classes = int(train_y.max()) + 1
    counts = torch.zeros(len(votes_for), num_classes, dtype=torch.float64)
    counts.scatter_add_(1, votes_for, torch.ones_like(votes_for, dtype=torch.float64))
    strength = torch.zeros_like(counts).scatter_add_(1, votes_for, similarities.double())
    # A count wins outright; within equal counts, similarity (≤ k in total, scaled below 1) decides.
    scores = counts + strength / (2 * k + 1)
    predicted = scores.argmax(1)
    return float((predicted == torch.as_tensor(np.asarray(eval_y), dtype=torch.int64)).double().mean())


def linear_probe(train_x, train_y, eval_sets: dict, c: float = 1.0, max_iter: int = 1000, seed: int = 0) -> dict:
    """Fit multinomial logistic regression on train, return {name: accuracy} for each eval set.

    ``eval_sets`` maps a split name to (x, y). Features are standardised with train statistics
    (the probe's L2 penalty ``c`` then means the same for every layer). Also returns
    ``converged`` and ``fit_seconds``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_numpy(train_x))
    probe = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(scaler.transform(_numpy(train_x)), np.asarray(train_y))
    result = {name: float(probe.score(scaler.transform(_numpy(x)), np.asarray(y))) if len(y) else float("nan")
              for name, (x, y) in eval_sets.items()}
    result["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    result["fit_seconds"] = time.perf_counter() - started
    return result


def silhouette(x, labels) -> float:
    """Mean silhouette coefficient with cosine distance (NaN if fewer than two classes are present)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return float("nan")
    return float(silhouette_score(_numpy(x), labels, metric="cosine"))


def dimensionality(x, variance: float = 0.95) -> dict:
    """{"pca_dims_95": components reaching ``variance`` of the total, "participation_ratio": (Σλ)²/Σλ²}."""
    centred = _numpy(x).astype(np.float64)
    centred -= centred.mean(0)
    singular = np.linalg.svd(centred, compute_uv=False)
    eigenvalues = singular ** 2
    total = eigenvalues.sum()
    if total <= 0:
        return {"pca_dims_95": 0, "participation_ratio": 0.0}
    reached = np.searchsorted(np.cumsum(eigenvalues) / total, variance) + 1
    return {"pca_dims_95": int(min(reached, len(eigenvalues))),
            "participation_ratio": float(total ** 2 / (eigenvalues ** 2).sum())}


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted random positions (≤ ``limit`` of ``n``), the same for the same seed."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _numpy(x) -> np.ndarray:
    return as_matrix(x).numpy()
