"""Batched extraction of several feature layers in one forward pass per batch.

Forward hooks sit on the modules named by ``model.feature_layers`` (the model's public, stable
layer names); each hook pools its output at once, so a batch never keeps more than the pooled
embeddings of every tapped layer. The same pass yields the logits, which gives the classifier's
own accuracy on the split for free (the reference line of the analysis table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from visrep.representations.pooling import check_pooling, pool_features
from visrep.errors import UserError
from visrep.inference.autocast import autocast_context
from visrep.hardware.precision import check_precision


def resolve_layers(model: nn.Module, requested: list[str] | str) -> list[str]:
    """Expand "all" / "stages", check every name, keep the model's order and drop repeats.

    Raises UserError listing the valid names when a name is unknown.
    """
    valid = list(model.feature_layers)
    names = [part.strip() for part in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [name for name in names if name]
    if not names:
        raise UserError(f"no layers given; choose from: {', '.join(valid)} (or 'stages', 'all')")
    chosen: set[str] = set()
    for name in names:
        if name == "all":
            chosen.update(valid)
        elif name == "stages":
            chosen.update(layer for layer in valid if layer.startswith("stage"))
        elif name in valid:
            chosen.add(name)
        else:
            raise UserError(f"unknown layer '{name}' for model {getattr(model, 'config', {}).get('name', type(model).__name__)}; "
                            f"valid layers: {', '.join(valid)} (or 'stages', 'all')")
    return [layer for layer in valid if layer in chosen]


@dataclass
class Extraction:
    """Embeddings of one split: ``features[layer]`` is (N, ...) float32 in loader order."""

    features: dict[str, Tensor]
    labels: Tensor  # (N,) int64
    head_accuracy: float  # the classifier's own top-1 accuracy on these images
    seconds: float  # wall time of the whole pass, data loading included
    raw_shapes: dict[str, tuple[int, ...]]  # per-image layer output shape before pooling, e.g. (C, H, W)

    @property
    def images_per_s(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")


@torch.no_grad()
def extract_features(model: nn.Module, loader, layers: list[str], pooling: str = "avg", l2_normalize: bool = False,
                     precision: str = "auto", device: torch.device | None = None, progress: bool = True,
                     description: str = "embed") -> Extraction:
    """Run ``model`` (eval mode) over ``loader`` batches (images (B, C, H, W), labels (B,)) and collect
    the pooled outputs of ``layers``. Deterministic: same weights, inputs and batch size → same bits."""
    check_pooling(pooling)
    check_precision(precision)
    device = device or next(model.parameters()).device
    model.eval()
    outputs: dict[str, Tensor] = {}
    labels_seen, correct, filled = [], 0, 0
    total = len(loader.split) if hasattr(loader, "split") else None
    started = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not progress or None, mininterval=1.0)
    raw_shapes: dict[str, tuple[int, ...]] = {}
    for images, labels in bar:
        logits, pooled, raw_shapes = forward_batch(model, images, device, precision, layers, pooling, l2_normalize)
        correct += int((logits.argmax(1).cpu() == labels).sum())
        for name in layers:
            _store(outputs, name, pooled[name].cpu(), filled, total)
        filled += len(labels)
        labels_seen.append(labels)
    seconds = time.perf_counter() - started
    features = {name: tensor[:filled] for name, tensor in outputs.items()}
    labels = torch.cat(labels_seen) if labels_seen else torch.empty(0, dtype=torch.int64)
    return Extraction(features, labels, correct / max(filled, 1), seconds, raw_shapes)


def forward_batch(model: nn.Module, images: Tensor, device: torch.device, precision: str, layers: list[str],
                  pooling: str, l2_normalize: bool) -> tuple[Tensor, dict[str, Tensor], dict[str, tuple[int, ...]]]:
    """One inference forward of (B, C, H, W) normalised images through the classifier's
    ``forward_intermediates`` → (logits (B, K), {layer: pooled embeddings}, {layer: unpooled per-image shape})."""
    shapes: dict[str, tuple[int, ...]] = {}

    def pool(name: str, output: Tensor) -> Tensor:  # in the forward: one full map at a time in memory
        shapes[name] = tuple(output.shape[1:])
        return pool_features(output, pooling, l2_normalize)

    with torch.no_grad(), autocast_context(device, precision):
        logits, pooled = model.forward_intermediates(images.to(device, non_blocking=True), layers, reduce=pool)
    return logits, pooled, shapes


def _store(outputs: dict[str, Tensor], name: str, batch: Tensor, start: int, total: int | None) -> None:
    """Write a batch into one preallocated (total, ...) tensor (no list of batches + cat: half the peak memory)."""
    if name not in outputs:
        rows = total if total is not None else start + len(batch)
        outputs[name] = torch.empty((rows, *batch.shape[1:]), dtype=batch.dtype)
    target = outputs[name]
    if start + len(batch) > len(target):  # a loader longer than announced: grow (rare path)
        target = outputs[name] = torch.cat([target, torch.empty((start + len(batch) - len(target), *batch.shape[1:]))])
    target[start:start + len(batch)] = batch
