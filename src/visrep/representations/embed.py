"""Embeddings of new images, computed exactly as the embeddings stage computes a split's.

The one encoder class is :class:`visrep.inference.encoder.FrozenEncoder`; this module gives it the
stage's inference path (the training normalisation of uint8 pixels, the classifier's layout, one
forward per batch with every requested layer pooled in the forward: :func:`forward_batch`), so that
the same images in batches of the stage's size give the stored values bit for bit. Inputs may be
tensors, arrays or PIL images (:mod:`visrep.representations.inputs`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.inference.batches import batched
from visrep.representations.extract import forward_batch, resolve_layers
from visrep.representations.inputs import as_nchw, to_model_input
from visrep.representations.pooling import check_pooling

EXTRACTION_BATCH = 512  # the embeddings stage's default embed.batch_size: the same batches give the same bits


@torch.no_grad()
def embed(encoder, images, layers: str | list[str] = "penultimate", pooling: str = "avg", l2_normalize: bool = False,
          batch_size: int = EXTRACTION_BATCH, convert: bool = False) -> Tensor | dict[str, Tensor]:
    """Embeddings of ``images`` by a FrozenEncoder: a float32 tensor (N, D) (or (N, C, H, W) for
    pooling="spatial") for one layer name, or {layer: tensor} for a list, "all" or "stages"."""
    check_pooling(pooling)
    model = encoder.classifier
    names = resolve_layers(model, [layers] if isinstance(layers, str) else layers)
    device = encoder.scale.device
    collected: dict[str, list[Tensor]] = {name: [] for name in names}
    for raw in batched(as_nchw(images), batch_size):  # converted batch by batch: memory stays small
        batch = to_model_input(raw, encoder.image_shape, encoder.normalization, convert)
        if encoder.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        pooled = forward_batch(model, batch, device, encoder.precision, names, pooling, l2_normalize)[1]
        for name in names:
            collected[name].append(pooled[name].cpu())
    result = {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in collected.items()}
    return result[names[0]] if isinstance(layers, str) and layers not in ("all", "stages") else result


def embed_conditions(encoder, images: Tensor, layer: str) -> Tensor:
    """uint8 images (N, C, S, S) → the unit-length embedding conditions (N, D) float32 at ``layer``: average-
    pooled, then L2-normalised, as the generators' training conditions are."""
    if len(images) == 0:
        return torch.zeros(0, encoder.embedding_dim)
    return F.normalize(embed(encoder, images, layer, "avg").reshape(len(images), -1).float(), dim=1)
