"""The embedding condition, differentiably (a generator's guidance loss), and the embedding-space
neighbourhoods of instance conditioning.

An *embedding condition* is the conditioning classifier's feature of a real image at one layer
(penultimate by default), average-pooled if the layer is a map, then L2-normalised: on the unit
sphere a cosine is a dot product, the kNN neighbourhoods (IC-GAN, Casanova et al. 2021) are
cosine neighbourhoods, and the generator never sees the arbitrary scale of a feature.

Embeddings of given images are :func:`visrep.representations.embed.embed_conditions`; sampled ones
come from the condition bank fitted on the training split's (:mod:`visrep.representations.bank`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.errors import UserError
from visrep.representations.neighbours import nearest_neighbours


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
