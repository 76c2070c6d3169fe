"""The classification training step every loop shares (the classifier and evaluator loop, CAS, the
benchmarks and ``visrep doctor``'s measurement), so that what is timed is what trains."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visrep.inference.autocast import autocast_context


def classification_backward(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                            labels: torch.Tensor, precision: str, label_smoothing: float = 0.0,
                            scaler=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward under the precision's autocast, cross-entropy on float32 logits, fresh gradients
    (through ``scaler.backward``, fp16's loss scaling, when given).

    Returns (loss (), logits (N, K)). The optimizer step is the caller's: a loop may check the
    gradients first (the non-finite guard) and skip the batch."""
    with autocast_context(images.device, precision):
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.backward(loss)
    else:
        loss.backward()
    return loss, logits
