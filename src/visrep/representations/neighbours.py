"""The one nearest-neighbour search: exact, chunked over queries and bank, cosine or Euclidean.

Every neighbour in visrep comes from here: the embedding analysis's retrieval, near-duplicate
search, a GAN's kNN neighbourhoods of the training set (IC-GAN), and the memorisation check's
nearest training image (Euclidean, in features and pixels). Queries and bank rows are processed in
blocks, so a (query chunk, bank chunk) score block stays ≈ 128 MB and a uint8 bank (pixels) is
converted to float one chunk at a time. The running top-k is merged block by block.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import UserError
from visrep.representations.store import EmbeddingSet

METRICS = ("cosine", "euclidean")
_BLOCK_ENTRIES = 2 ** 25  # float32 scores per (query, bank) block: 128 MB
_BANK_CHUNK = 8192  # bank rows converted to float at a time


def as_matrix(features) -> Tensor:
    """An EmbeddingSet, tensor or array of N embeddings (any trailing shape) → (N, D) tensor (dtype kept)."""
    if isinstance(features, EmbeddingSet):
        features = features.flat()
    features = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features)
    if features.ndim == 1:
        features = features.unsqueeze(0)  # a single query
    return features.reshape(len(features), -1)


def nearest_neighbours(queries, bank, k: int = 10, exclude_self: bool = False, metric: str = "cosine",
                       bank_chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Top-``k`` bank rows for every query, best first.

    Args:
        queries: (Q, D) embeddings (tensor, array or EmbeddingSet; uint8 pixels work with "euclidean").
        bank: (N, D) rows to search, same kinds.
        k: neighbours per query (≤ N, or ≤ N − 1 with ``exclude_self``).
        exclude_self: the queries *are* the bank (same rows, same order): skip each row's own match,
            e.g. for IC-GAN neighbourhoods of the training set.
        metric: "cosine" (rows L2-normalised first) or "euclidean".
        bank_chunk: bank rows scored at a time (default 8192; the memory of a block, not the result).
    Returns:
        (indices (Q, k) int64 into the bank, scores (Q, k) float32): cosine similarities in [−1, 1], or
        Euclidean distances from the float32 search (recompute them in float64 where rounding matters).
    """
    queries, bank = as_matrix(queries), as_matrix(bank)
    _check(queries, bank, k, exclude_self, metric)
    if metric == "cosine":
        queries, bank = F.normalize(queries.float(), dim=1), F.normalize(bank.float(), dim=1)
    bank_chunk = min(bank_chunk or _BANK_CHUNK, max(len(bank), 1))
    query_chunk = max(1, _BLOCK_ENTRIES // bank_chunk)
    indices, scores = [], []
    for start in range(0, len(queries), query_chunk):
        block = queries[start:start + query_chunk].float()
        best = _best_in_bank(block, bank, k, metric, bank_chunk, start if exclude_self else None)
        indices.append(best[0])
        scores.append(best[1])
    scores = torch.cat(scores)  # kept as "higher is nearer": −‖q − b‖² for "euclidean"
    return torch.cat(indices), scores if metric == "cosine" else (-scores).clamp_min(0).sqrt()


def _check(queries: Tensor, bank: Tensor, k: int, exclude_self: bool, metric: str) -> None:
    if metric not in METRICS:
        raise UserError(f"unknown neighbour metric '{metric}'; choose from {', '.join(METRICS)}")
    if queries.shape[1] != bank.shape[1]:
        raise UserError(f"queries have {queries.shape[1]} dimensions but the bank has {bank.shape[1]}: "
                        "were they taken at the same layer with the same pooling?")
    if exclude_self and len(queries) != len(bank):
        raise UserError("exclude_self needs the queries to be the bank itself (same rows)")
    available = len(bank) - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise UserError(f"k must be between 1 and {available} (the bank has {len(bank)} rows); got {k}")


def _best_in_bank(block: Tensor, bank: Tensor, k: int, metric: str, bank_chunk: int,
                  self_offset: int | None) -> tuple[Tensor, Tensor]:
    """(indices (B, k), scores (B, k)) of one query block, higher score = nearer (negated squared
    distances for "euclidean"), merged over the bank's chunks."""
    rows = torch.arange(len(block))
    block_norms = (block * block).sum(1, keepdim=True) if metric == "euclidean" else None
    best_scores = torch.empty(len(block), 0)
    best_indices = torch.empty(len(block), 0, dtype=torch.int64)
    for bank_start in range(0, len(bank), bank_chunk):
        chunk = bank[bank_start:bank_start + bank_chunk].float()
        scores = block @ chunk.T
        if metric == "euclidean":  # −‖q − b‖² = 2 q·b − ‖q‖² − ‖b‖²
            scores = 2 * scores - block_norms - (chunk * chunk).sum(1)[None, :]
        if self_offset is not None:
            own = rows + self_offset - bank_start  # each query's own row, where it falls in this chunk
            inside = (own >= 0) & (own < len(chunk))
            scores[rows[inside], own[inside]] = -torch.inf
        take = min(k, scores.shape[1])
        values, positions = scores.topk(take, dim=1)
        best_scores = torch.cat([best_scores, values], dim=1)
        best_indices = torch.cat([best_indices, positions + bank_start], dim=1)
        if best_scores.shape[1] > k:
            keep = best_scores.topk(k, dim=1).indices
            best_scores, best_indices = best_scores.gather(1, keep), best_indices.gather(1, keep)
    return best_indices, best_scores
