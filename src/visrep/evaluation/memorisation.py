"""Memorisation check: do generated images sit closer to training images than new real images do?

For each generated image: the distance to its nearest training image, in two spaces —
evaluator features (L2-normalised, so distance = √(2 − 2·cos)) and pixels (values in [0, 1]).
The same distances for held-out real images (the test split) are the reference: a generator that
samples from the data distribution should look like them; one that copies sits markedly closer.

Flag rule, per space: threshold = the ``quantile`` (default 1 %) of the reference distances; the
"close fraction" is the share of generated images at or under it (≈ ``quantile`` for a fresh real
sample). Flagged when the close fraction exceeds ``flag_fraction`` (default 5 %, five times the
expected share) in either space. Medians, their ratio and a one-sided Mann–Whitney p-value are
reported beside it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import mannwhitneyu


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor, query_chunk: int = 4096,
                       bank_chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) queries, (M, D) bank (any dtype; uint8 bank rows are converted per chunk) → (distance (N,), index (N,)).

    The search uses float32 matrix products for speed; the reported distance is then recomputed
    exactly (float64) against the neighbour found, so near-zero distances are not swamped by rounding.
    """
    best = torch.full((len(queries),), float("inf"))
    best_index = torch.zeros(len(queries), dtype=torch.int64)
    for q_start in range(0, len(queries), query_chunk):
        q = queries[q_start:q_start + query_chunk].float()
        q_sq = (q * q).sum(1, keepdim=True)
        for b_start in range(0, len(bank), bank_chunk):
            b = bank[b_start:b_start + bank_chunk].float()
            squared = q_sq + (b * b).sum(1)[None, :] - 2.0 * q @ b.T
            values, indices = squared.min(dim=1)
            rows = slice(q_start, q_start + len(q))
            better = values < best[rows]
            best[rows] = torch.where(better, values, best[rows])
            best_index[rows] = torch.where(better, indices + b_start, best_index[rows])
    exact = (queries.double() - bank[best_index].double()).norm(dim=1)
    return exact.numpy(), best_index.numpy()


def feature_space(features: np.ndarray) -> torch.Tensor:
    """(N, D) features → unit-length rows (cosine geometry), float32."""
    x = torch.as_tensor(np.asarray(features, np.float32))
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


MAX_INT8_DIM = 14000  # |scores| ≤ ~147,000·D must stay below 2^31 (a 64 px RGB image has 12,288 values)


def pixel_neighbours(queries_uint8: torch.Tensor, bank_uint8: torch.Tensor, query_chunk: int = 2048,
                     bank_chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) and (M, C, H, W) uint8 → (distance in [0, 1] pixel units (N,), index (N,)).

    Exact, and fast: pixels shifted to int8 (v − 128) go through an int8 matrix product with int32
    sums (``torch._int_mm``: VNNI where the CPU has it, 5x the float32 product on this project's AVX-512
    host), and ‖q − b‖² is rebuilt from it in integers, so no rounding can pick a wrong neighbour.
    Where that kernel is missing the float32 search of :func:`nearest_neighbours` is used. The bank
    stays uint8 (converted chunk by chunk), so a 50k-image training set costs no extra memory.
    """
    queries, bank = queries_uint8.reshape(len(queries_uint8), -1), bank_uint8.reshape(len(bank_uint8), -1)
    if len(queries) == 0 or len(bank) == 0 or queries.shape[1] > MAX_INT8_DIM or not _int8_products_work():
        distances, index = nearest_neighbours(queries, bank)
        return distances / 255.0, index
    best = torch.full((len(queries),), torch.iinfo(torch.int64).max, dtype=torch.int64)
    best_index = torch.zeros(len(queries), dtype=torch.int64)
    bank_terms = [_column_terms(bank[start:start + bank_chunk]) for start in range(0, len(bank), bank_chunk)]
    for q_start in range(0, len(queries), query_chunk):
        rows = slice(q_start, q_start + query_chunk)
        q8, q_row = _row_terms(queries[rows])
        for chunk, (b8, b_column) in enumerate(bank_terms):
            # ‖q − b‖² = row term + column term − 2 q8·b8 (see _row_terms); the row term does not move the argmin
            scores = b_column[None, :] - 2 * torch._int_mm(q8, b8.t())  # (c, b) int32 (D ≤ MAX_INT8_DIM)
            values, indices = scores.min(dim=1)
            values = values.long() + q_row
            better = values < best[rows]
            best[rows] = torch.where(better, values, best[rows])
            best_index[rows] = torch.where(better, indices + chunk * bank_chunk, best_index[rows])
    exact = (queries.double() - bank[best_index].double()).norm(dim=1)
    return exact.numpy() / 255.0, best_index.numpy()


def _row_terms(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (c, D) → (int8 pixels − 128, ‖q‖² − 256·Σ(q − 128) − 128²·D as int64).

    With q = q8 + 128 and b = b8 + 128: q·b = q8·b8 + 128·Σq8 + 128·Σb8 + 128²·D, so
    ‖q − b‖² = [‖q‖² − 256·Σq8 − 2·128²·D] + [‖b‖² − 256·Σb8] − 2·q8·b8 (the first bracket here,
    with half the constant; the other half is in the column term).
    """
    wide = pixels.long()
    centred = (wide - 128).to(torch.int8)
    return centred, (wide * wide).sum(1) - 256 * (wide - 128).sum(1) - 128 * 128 * pixels.shape[1]


def _column_terms(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (b, D) → (int8 pixels − 128, ‖b‖² − 256·Σ(b − 128) − 128²·D as int32)."""
    centred, term = _row_terms(pixels)
    return centred, term.to(torch.int32)


def _int8_products_work() -> bool:
    try:
        ones = torch.ones(2, 8, dtype=torch.int8)
        return bool((torch._int_mm(ones, ones.t()) == 8).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def compare_distances(generated: np.ndarray, reference: np.ndarray, quantile: float = 0.01,
                      flag_fraction: float = 0.05) -> dict:
    """Nearest-training-image distances of generated vs held-out real images, in one space."""
    threshold = float(np.quantile(reference, quantile))
    tolerance = 1e-6 * max(float(np.median(reference)), 1e-12)  # copies: equal up to rounding
    close = float(np.mean(generated <= threshold + tolerance))
    median_generated, median_reference = float(np.median(generated)), float(np.median(reference))
    p_value = float(mannwhitneyu(generated, reference, alternative="less").pvalue)
    return {"median_generated": median_generated, "median_reference": median_reference,
            "median_ratio": median_generated / median_reference if median_reference > 0 else None,
            "threshold": threshold, "quantile": quantile, "close_fraction": close,
            "reference_close_fraction": float(np.mean(reference <= threshold + tolerance)),
            "exact_copies": int(np.sum(generated <= tolerance)), "p_value_closer": p_value,
            "flagged": bool(close > flag_fraction)}


def memorisation_report(generated: dict, reference: dict, quantile: float = 0.01, flag_fraction: float = 0.05) -> dict:
    """``generated`` / ``reference``: {"features": (N,) distances, "pixels": (N,) distances}, to the training set."""
    spaces = {space: compare_distances(generated[space], reference[space], quantile, flag_fraction)
              for space in ("features", "pixels")}
    return {**spaces, "flagged": any(result["flagged"] for result in spaces.values()),
            "n_generated": int(len(generated["features"])), "n_reference": int(len(reference["features"]))}


def closest_pairs(distances: np.ndarray, neighbour_index: np.ndarray, count: int = 16) -> list[tuple[int, int]]:
    """The ``count`` generated images nearest to the training set: [(generated row, training row), ...]."""
    order = np.argsort(distances, kind="stable")[:count]
    return [(int(row), int(neighbour_index[row])) for row in order]
