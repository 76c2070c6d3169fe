"""Muon (Jordan et al. 2024): momentum SGD whose update for a conv filter bank is orthogonalised.

For a weight of shape (out, in, k, k) the Nesterov momentum update is reshaped to a matrix
G (out, in·k²) and replaced by the nearest semi-orthogonal matrix U·Vᵀ (G = U·S·Vᵀ), computed
approximately by a few Newton–Schulz iterations: every direction of the update gets the same
step size, whatever the gradient's scale. As in airbench94_muon, each filter bank is also
rescaled to Frobenius norm √out before its step, so its scale is fixed and weight decay has
nothing to do there; the lr is then a step size relative to the weight.

Parameter groups with ``muon=False`` get plain SGD with Nesterov momentum and coupled L2 weight
decay (the same update as ``torch.optim.SGD(nesterov=True)``), so one optimizer object — one
state dict, one lr schedule — drives the whole network.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Quintic Newton–Schulz coefficients from Jordan's Muon write-up: chosen to push every singular value
# of a matrix of spectral norm ≤ 1 into roughly [0.7, 1.2] in few steps (not to converge exactly to 1).
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 3  # airbench94_muon's count; more steps cost matmuls and barely change accuracy


def orthogonalise(matrix: Tensor, steps: int = NEWTON_SCHULZ_STEPS, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximately U·Vᵀ for ``matrix`` (m, n) = U·S·Vᵀ, in ``dtype`` (bf16 matmuls: AMX on CPU, tensor cores on GPU)."""
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalise expects a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.to(dtype)
    x = x / (x.norm() + 1e-7)  # Frobenius norm ≥ spectral norm, so every singular value starts ≤ 1
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T  # iterate on the smaller Gram matrix x·xᵀ
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Groups need ``muon`` (bool); muon groups take ``lr`` and ``momentum``, the others SGD's
    ``lr``, ``momentum`` and ``weight_decay``. Nesterov momentum everywhere."""

    def __init__(self, params, lr: float, momentum: float = 0.6, weight_decay: float = 0.0) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"Muon needs lr > 0, momentum in [0, 1) and weight_decay ≥ 0 "
                             f"(got {lr}, {momentum}, {weight_decay})")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "muon": False})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    update = self._muon_update if group["muon"] else self._sgd_update
                    update(param, group)
        return loss

    def _nesterov(self, param: Tensor, direction: Tensor, momentum: float) -> Tensor:
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = direction.clone()  # as torch's SGD: the first step's buffer is the gradient
        else:
            state["momentum_buffer"].mul_(momentum).add_(direction)
        return direction.add(state["momentum_buffer"], alpha=momentum)

    def _sgd_update(self, param: Tensor, group: dict) -> None:
        direction = param.grad.add(param, alpha=group["weight_decay"]) if group["weight_decay"] else param.grad
        param.add_(self._nesterov(param, direction, group["momentum"]), alpha=-group["lr"])

    def _muon_update(self, param: Tensor, group: dict) -> None:
        if param.ndim < 2:
            raise ValueError("Muon's orthogonalised update needs a parameter with ≥ 2 dimensions")
        direction = self._nesterov(param, param.grad, group["momentum"])
        rows = param.shape[0]
        param.mul_(rows ** 0.5 / (param.norm() + 1e-12))  # filter bank at Frobenius norm √out
        param.add_(orthogonalise(direction.reshape(rows, -1)).view_as(param), alpha=-group["lr"])
