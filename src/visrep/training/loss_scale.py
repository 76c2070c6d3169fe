"""fp16's loss scaling for every training loop; a pass-through in bf16 and fp32.

fp16 gradients underflow to zero unless the loss is multiplied up before backward
(torch.amp.GradScaler). The scaler divides them back before the step (and before any clipping),
skips a step whose gradients overflowed, and adapts the scale; an overflow is its business, not
divergence, so under fp16 the non-finite guard checks the loss only (:meth:`LossScaler.guarded`).
Its state is checkpointed with the loop's, so a resumed fp16 run continues with the same scale.
"""

from __future__ import annotations

import torch


class LossScaler:
    def __init__(self, device: torch.device, precision: str):
        """``precision``: the resolved one (fp32 | bf16 | fp16); only fp16 scales."""
        self.enabled = precision == "fp16"
        self.scaler = torch.amp.GradScaler(torch.device(device).type, enabled=self.enabled)
        self._stepped = False

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """True gradients in ``.grad`` (before clipping or a look at them)."""
        if self.enabled:
            self.scaler.unscale_(optimizer)

    def guarded(self, parameters):
        """What the non-finite guard checks besides the loss: nothing under fp16 (the scaler handles overflow)."""
        return [] if self.enabled else parameters

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(), skipped under fp16 when the gradients overflowed."""
        self.scaler.step(optimizer)
        self._stepped = True

    def update(self) -> None:
        """After each optimizer step: the next scale."""
        if self._stepped:
            self.scaler.update()
        self._stepped = False

    def skip(self) -> None:
        """A batch the non-finite guard skips after :meth:`unscale`: the scaler's per-step state is reset
        (the next unscale would fail otherwise), and the scale backs off as after an overflow."""
        if self.enabled:
            self.scaler.update()
        self._stepped = False

    def finish_step(self, optimizer: torch.optim.Optimizer, usable: bool) -> None:
        """After the non-finite guard's verdict: the step and the next scale, or :meth:`skip`."""
        if usable:
            self.step(optimizer)
            self.update()
        else:
            self.skip()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scaler.load_state_dict(state)

    def checkpointed(self) -> "LossScaler | None":
        """Itself when it has state worth saving (fp16), else None (the checkpointer leaves None out)."""
        return self if self.enabled else None
