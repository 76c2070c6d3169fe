"""Optimizers and learning-rate schedules for the training loops."""

from __future__ import annotations

import math

import torch

from visrep.errors import UserError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")


def check_optim_config(train_cfg) -> None:
    if train_cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)} (got '{train_cfg.optimizer}')")
    if train_cfg.schedule not in SCHEDULES:
        raise UserError(f"train.schedule must be one of {', '.join(SCHEDULES)} (got '{train_cfg.schedule}')")


def build_optimizer(model: torch.nn.Module, train_cfg) -> torch.optim.Optimizer:
    """Weight decay on weights only: BN scales/shifts and biases are not decayed."""
    check_optim_config(train_cfg)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.momentum, 0.999))


def build_schedule(optimizer: torch.optim.Optimizer, train_cfg, total_steps: int):
    check_optim_config(train_cfg)
    warmup = max(1, round(train_cfg.warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, train_cfg.schedule))


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
    if schedule == "constant":
        return 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "onecycle":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
