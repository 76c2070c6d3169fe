"""Classifier-free guidance (Ho & Salimans 2022): u + s·(c − u), both branches in one batch.

s = 0 is the unconditional prediction, s = 1 the conditional one, s > 1 pushes past it towards the
condition. The batch is doubled once (conditions twice, the second half with ``drop`` set) rather
than run as two forwards: one larger batch keeps the 2 cores busier than two small ones.
"""

from __future__ import annotations

import torch
from torch import Tensor


def combine(unconditional: Tensor, conditional: Tensor, scale: float) -> Tensor:
    if scale == 1.0:
        return conditional
    if scale == 0.0:
        return unconditional
    return unconditional + scale * (conditional - unconditional)


def guided_prediction(model, x: Tensor, t: Tensor, condition: Tensor | None, scale: float) -> Tensor:
    """The denoiser's prediction at (x, t) under guidance ``scale``; a plain forward when guidance has no
    effect (unconditional model, or s = 1)."""
    if condition is None or scale == 1.0:
        return model(x, t, condition)
    if scale == 0.0:
        return model(x, t, condition, torch.ones(len(x), dtype=torch.bool, device=x.device))
    n = len(x)
    drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([condition, condition]), drop)
    conditional, unconditional = both[:n], both[n:]
    return combine(unconditional, conditional, scale)
