"""Guards shared by every training loop: non-finite loss/gradients, and memory estimates.

A NaN/Inf stops the run naming the stage and step (the checkpoints written so far are left
untouched, so ``--resume`` restarts from the last good state); ``allowed_bad_batches`` lets a
run skip a few isolated bad batches instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from visrep.errors import TrainingDiverged, UserError
from visrep.hardware.distributed import DistInfo, any_rank


class NonFiniteGuard:
    def __init__(self, stage: str, allowed_bad_batches: int = 0, logger=None, dist: DistInfo | None = None):
        """``dist``: under DDP every rank takes the same decision (a NaN loss on one rank skips the step on all)."""
        self.stage, self.allowed, self.logger = stage, allowed_bad_batches, logger
        self.dist = dist or DistInfo()
        self.skipped = 0

    def batch_is_usable(self, loss: torch.Tensor, parameters, step: int, epoch: int) -> bool:
        """True when loss and all gradients are finite (on every rank); False to skip the batch; raises when
        over budget."""
        problem = _non_finite_problem(loss, parameters)
        if any_rank(problem is not None, self.dist) and problem is None:
            problem = "another process's loss or gradients are non-finite"
        if problem is None:
            return True
        if self.skipped < self.allowed:
            self.skipped += 1
            if self.logger is not None:
                self.logger.warning("%s: %s at step %d (epoch %d); batch skipped (%d of %d allowed)", self.stage,
                                    problem, step, epoch, self.skipped, self.allowed)
            return False
        raise TrainingDiverged(f"{self.stage} training stopped: {problem} at step {step} (epoch {epoch}); the last "
                               f"good checkpoint is kept — resume with a lower learning rate, or allow isolated bad "
                               f"batches with train.skip_bad_batches")


def _non_finite_problem(loss: torch.Tensor, parameters) -> str | None:
    if not bool(torch.isfinite(loss.detach()).all()):
        return f"loss is {loss.detach().float().item()}"
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        # Largest |entry| per tensor, not the L2 norm: squaring overflows fp32 for finite gradients
        # above ~1e19 (scale-invariant layers after BatchNorm can have them), which is not divergence.
        largest = torch.stack([g.float() for g in torch._foreach_norm(grads, ord=float("inf"))]).max()
        if not bool(torch.isfinite(largest)):
            return "gradient is NaN/Inf"
    return None


def available_memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_training_bytes(model: torch.nn.Module, sample: torch.Tensor, batch_size: int) -> int:
    """Rough peak memory of one training step at ``batch_size``.

    Activations are measured on a small ``sample`` batch (every module output is kept for
    backward) and scaled linearly; gradients, optimizer state and weights add ~4× the weights.
    """
    activation_bytes = 0

    def count(module, inputs, output):
        nonlocal activation_bytes
        if isinstance(output, torch.Tensor):
            activation_bytes += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    per_image = activation_bytes / sample.shape[0]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(2 * per_image * batch_size + 4 * weights)  # ×2: saved activations + their gradients


def check_batch_fits(model: torch.nn.Module, sample: torch.Tensor, batch_size: int, device: torch.device,
                     stage: str) -> None:
    """Fail early, with an estimate and a suggestion, when a batch size cannot fit in memory."""
    available = available_memory_bytes(device)
    if available is None:
        return
    needed = estimate_training_bytes(model, sample, batch_size)
    if needed > 0.9 * available:
        per_image = max(1.0, needed / batch_size)
        suggestion = max(1, 2 ** int(math.log2(max(1.0, 0.5 * available / per_image))))
        raise UserError(f"{stage}: data.batch_size={batch_size} needs about {needed / 2**30:.1f} GiB but only "
                        f"{available / 2**30:.1f} GiB is available on {device}; try data.batch_size={suggestion}")
