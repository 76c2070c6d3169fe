"""Cosine nearest neighbours among stored embeddings, exact and chunked.

Cosine similarity = dot product of L2-normalised vectors. Queries are processed in chunks so the
(chunk, N_bank) similarity block stays ≈ 100 MB even for a 50k-image bank.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.embeddings.store import EmbeddingSet
from visrep.errors import UserError

# float32 similarity entries per block: 2^25 · 4 bytes = 128 MB
_BLOCK_ENTRIES = 2 ** 25


def as_matrix(features) -> Tensor:
    """An EmbeddingSet, tensor or array of N embeddings (any trailing shape) → (N, D) float32 tensor."""
    if isinstance(features, EmbeddingSet):
        features = features.flat()
    features = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features)
    if features.ndim == 1:
        features = features.unsqueeze(0)  # a single query
    return features.reshape(len(features), -1).float()


def nearest_neighbours(queries, bank, k: int = 10, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """Top-``k`` bank rows by cosine similarity for every query.

    Args:
        queries: (Q, D) embeddings (tensor, array or EmbeddingSet).
        bank: (N, D) embeddings to search (tensor, array or EmbeddingSet).
        k: neighbours per query (≤ N, or ≤ N − 1 with ``exclude_self``).
        exclude_self: queries *are* the bank (same rows, same order): skip each row's own match,
            e.g. for IC-GAN neighbourhoods of the training set.
    Returns:
        (indices (Q, k) int64 into the bank, similarities (Q, k) float32 in [−1, 1]), best first.
    """
    queries, bank = F.normalize(as_matrix(queries), dim=1), F.normalize(as_matrix(bank), dim=1)
    if queries.shape[1] != bank.shape[1]:
        raise UserError(f"queries have {queries.shape[1]} dimensions but the bank has {bank.shape[1]}: "
                        "were they taken at the same layer with the same pooling?")
    if exclude_self and len(queries) != len(bank):
        raise UserError("exclude_self needs the queries to be the bank itself (same rows)")
    available = len(bank) - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise UserError(f"k must be between 1 and {available} (the bank has {len(bank)} embeddings); got {k}")
    chunk = max(1, _BLOCK_ENTRIES // max(len(bank), 1))
    indices, similarities = [], []
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk] @ bank.T
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = -torch.inf
        values, positions = block.topk(k, dim=1)
        indices.append(positions)
        similarities.append(values)
    return torch.cat(indices), torch.cat(similarities)
