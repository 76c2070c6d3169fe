"""Turn one layer's output into per-image embeddings: pooling, then optional L2 normalisation.

Shapes, for a feature map (N, C, H, W):

    avg       global average over H, W        → (N, C)
    max       global maximum over H, W        → (N, C)
    flatten   every activation, C-major order → (N, C·H·W)
    spatial   the map itself                  → (N, C, H, W)   (for generators that want locations)

A layer whose output is already (N, D) (e.g. "penultimate") is returned as is by every mode.
The result is always a fresh float32 tensor, so a later in-place op in the model (ReLU(inplace=True))
cannot change what was captured.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from visrep.errors import UserError

POOLINGS = ("avg", "max", "flatten", "spatial")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise UserError(f"unknown pooling '{pooling}'; choose from: {', '.join(POOLINGS)}")
    return pooling


def pool_features(output: Tensor, pooling: str, l2_normalize: bool = False) -> Tensor:
    """(N, C, H, W) or (N, D) layer output → float32 embeddings per ``pooling`` (see module doc)."""
    features = output.detach().float()
    if features.ndim == 4:
        if pooling == "avg":
            features = features.mean(dim=(2, 3))
        elif pooling == "max":
            features = features.amax(dim=(2, 3))
        elif pooling == "flatten":
            features = features.flatten(1)
    elif features.ndim != 2:
        raise UserError(f"cannot pool a layer output of shape {tuple(features.shape)}: "
                        "expected (N, C, H, W) or (N, D)")
    if l2_normalize:
        flat = F.normalize(features.flatten(1), dim=1)
        features = flat.view_as(features)
    # contiguous() copies a channels_last map to the standard layout; clone() guards the no-op cases.
    return features.contiguous().clone() if features.data_ptr() == output.data_ptr() else features.contiguous()
