"""Lookahead with a cubic ramp, as in airbench94: every k steps the slow weights move toward the fast
weights, and the fast weights restart from the slow ones.

At step t of T the slow copy keeps ``decay^k · (t/T)^3`` of itself: early in training (small t) it
simply follows the fast weights, late in training it averages over the last few syncs, which
smooths the end of a short, high-lr run. Float buffers (BatchNorm statistics) are averaged too.
"""

from __future__ import annotations

import torch


class Lookahead:
    def __init__(self, model: torch.nn.Module, every: int, decay: float, total_steps: int):
        if every < 1:
            raise ValueError("lookahead every must be ≥ 1")
        self.every, self.decay, self.total_steps = every, decay, max(1, total_steps)
        self.slow = {name: tensor.detach().clone() for name, tensor in _float_state(model).items()}

    @torch.no_grad()
    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """Call after optimizer step ``step`` (1-based); syncs on every k-th step and on the last."""
        if step >= self.total_steps:
            self._sync(model, keep=1.0)  # the run ends on the slow weights
        elif step % self.every == 0:
            self._sync(model, keep=self.decay ** self.every * (step / self.total_steps) ** 3)

    def _sync(self, model: torch.nn.Module, keep: float) -> None:
        current = _float_state(model)
        for name, slow in self.slow.items():
            slow.lerp_(current[name], 1.0 - keep)
            current[name].copy_(slow)

    def state_dict(self) -> dict:
        return {"every": self.every, "decay": self.decay, "total_steps": self.total_steps, "slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        self.every, self.decay, self.total_steps = state["every"], state["decay"], state["total_steps"]
        for name, tensor in state["slow"].items():
            self.slow[name].copy_(tensor)


def _float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating-point buffers by name (not the integer batch counters)."""
    return {name: tensor for name, tensor in model.state_dict(keep_vars=True).items()
            if tensor.is_floating_point()}
