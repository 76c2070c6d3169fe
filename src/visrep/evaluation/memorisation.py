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

from visrep.representations.neighbours import nearest_neighbours


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) queries, (M, D) bank (any dtype; a uint8 bank is converted per chunk) → (distance (N,), index (N,)).

    The neighbour comes from the one chunked search (float32 products, for speed); its distance is then
    recomputed exactly (float64), so near-zero distances are not swamped by rounding."""
    index = nearest_neighbours(queries, bank, k=1, metric="euclidean")[0][:, 0]
    exact = (queries.double() - bank[index].double()).norm(dim=1)
    return exact.numpy(), index.numpy()


def feature_space(features: np.ndarray) -> torch.Tensor:
    """(N, D) features → unit-length rows (cosine geometry), float32."""
    x = torch.as_tensor(np.asarray(features, np.float32))
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


MAX_INT8_DIM = 40000  # |‖b8‖² − 2·q8·b8| ≤ 49,152·D must stay below 2^31 (a 64 px RGB image has 12,288 values)


def pixel_neighbours(queries_uint8: torch.Tensor, bank_uint8: torch.Tensor, query_chunk: int = 2048,
                     bank_chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) and (M, C, H, W) uint8 → (distance in [0, 1] pixel units (N,), index (N,)).

    Exact, and fast: distances do not change when every pixel is shifted by −128, and v − 128 fits
    int8, so ‖q − b‖² = ‖q8‖² + ‖b8‖² − 2·q8·b8 with the product from an int8 matrix multiply with
    int32 sums (``torch._int_mm``: VNNI where the CPU has it, 5x the float32 product on this project's
    AVX-512 host). All in integers, so no rounding can pick a wrong neighbour. Where that kernel is
    missing the float32 search of :func:`nearest_distances` is used. The bank stays uint8 and is
    converted chunk by chunk: memory O(chunk · D) beside the inputs.
    """
    queries = queries_uint8.cpu().reshape(len(queries_uint8), -1)
    bank = bank_uint8.cpu().reshape(len(bank_uint8), -1)
    if len(queries) == 0 or len(bank) == 0 or queries.shape[1] > MAX_INT8_DIM or not _int8_products_work():
        distances, index = nearest_distances(queries, bank)
        return distances / 255.0, index
    best = torch.full((len(queries),), torch.iinfo(torch.int64).max, dtype=torch.int64)
    best_index = torch.zeros(len(queries), dtype=torch.int64)
    for q_start in range(0, len(queries), query_chunk):
        rows = slice(q_start, q_start + query_chunk)
        q8 = _centred(queries[rows])
        q_norms = _squared_norms(q8).long()
        for b_start in range(0, len(bank), bank_chunk):
            b8 = _centred(bank[b_start:b_start + bank_chunk])
            # ‖q8‖² does not move the argmin over the bank: add it after
            scores = _squared_norms(b8)[None, :] - 2 * torch._int_mm(q8, b8.t())  # (c, b) int32
            values, indices = scores.min(dim=1)
            values = values.long() + q_norms
            better = values < best[rows]
            best[rows] = torch.where(better, values, best[rows])
            best_index[rows] = torch.where(better, indices + b_start, best_index[rows])
    exact = (queries.double() - bank[best_index].double()).norm(dim=1)
    return exact.numpy() / 255.0, best_index.numpy()


def _centred(pixels_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 v → int8 v − 128, without a wider copy (flipping the top bit is exactly that shift)."""
    return (pixels_uint8 ^ 128).view(torch.int8)


def _squared_norms(centred: torch.Tensor) -> torch.Tensor:
    """(c, D) int8 → (c,) int32 sums of squares (≤ 16,384·D)."""
    return centred.to(torch.int32).pow_(2).sum(1, dtype=torch.int32)


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
