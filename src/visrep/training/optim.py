"""Optimizers and learning-rate schedules for the training loops."""

from __future__ import annotations

import math

import torch

from visrep.errors import UserError
from visrep.training.muon import Muon

OPTIMIZERS = ("sgd", "adamw", "muon")
SCHEDULES = ("onecycle", "cosine", "constant")
NORM_LAYERS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def check_optim_config(train_cfg) -> None:
    if train_cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)} (got '{train_cfg.optimizer}')")
    if train_cfg.schedule not in SCHEDULES:
        raise UserError(f"train.schedule must be one of {', '.join(SCHEDULES)} (got '{train_cfg.schedule}')")
    for key in ("warmup_start_factor", "final_lr_factor"):
        if not 0 <= getattr(train_cfg, key) <= 1:
            raise UserError(f"train.{key} must be in [0, 1] (got {getattr(train_cfg, key)})")
    if train_cfg.bias_lr_scale <= 0:
        raise UserError(f"train.bias_lr_scale must be > 0 (got {train_cfg.bias_lr_scale})")
    if train_cfg.muon_lr <= 0 or not 0 <= train_cfg.muon_momentum < 1:
        raise UserError(f"train.muon_lr must be > 0 and train.muon_momentum in [0, 1) "
                        f"(got {train_cfg.muon_lr}, {train_cfg.muon_momentum})")


def build_optimizer(model: torch.nn.Module, train_cfg, slow: set[int] | None = None,
                    slow_scale: float = 1.0) -> torch.optim.Optimizer:
    """Three groups: weights (decayed), other biases, normalisation-layer parameters (lr × ``bias_lr_scale``:
    airbench raises it 64x, a BN shift needs large steps to matter).

    Biases and norm parameters are not decayed unless ``decay_biases``; then each loses the same fraction
    per step as the weights (lr · wd), so the norm group's coefficient is divided by its lr scale.

    ``muon`` adds a fourth group, last: the conv filter banks (≥ 3-D weights) move by Muon's orthogonalised
    update at ``muon_lr`` / ``muon_momentum`` without decay (their norm is held fixed); linear weights
    (the head), biases and norms keep the SGD groups, as in airbench94_muon.

    ``slow``: ids of parameters that train at ``slow_scale`` × their group's rate (a pretrained backbone
    under a new head, :mod:`visrep.training.finetune`); each group is split in two."""
    check_optim_config(train_cfg)
    norm_ids = {id(p) for module in model.modules() if isinstance(module, NORM_LAYERS) for p in module.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    filters = [p for p in trainable if p.ndim > 2 and id(p) not in norm_ids] if train_cfg.optimizer == "muon" else []
    filter_ids = {id(p) for p in filters}
    weights = [p for p in trainable if p.ndim > 1 and id(p) not in norm_ids and id(p) not in filter_ids]
    biases = [p for p in trainable if p.ndim <= 1 and id(p) not in norm_ids]
    norms = [p for p in trainable if id(p) in norm_ids]
    decay = train_cfg.weight_decay
    bias_decay = decay if train_cfg.decay_biases else 0.0
    groups = [{"params": weights, "weight_decay": decay},
              {"params": biases, "weight_decay": bias_decay},
              {"params": norms, "weight_decay": bias_decay / train_cfg.bias_lr_scale,
               "lr": train_cfg.lr * train_cfg.bias_lr_scale}]
    if train_cfg.optimizer == "muon":
        groups.append({"params": filters, "muon": True, "lr": train_cfg.muon_lr, "momentum": train_cfg.muon_momentum,
                       "weight_decay": 0.0})
    if slow:
        groups = _split_slow(groups, slow, slow_scale, train_cfg.lr)
    if train_cfg.optimizer == "muon":
        return Muon(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum,
                               nesterov=train_cfg.momentum > 0)  # torch refuses Nesterov without momentum
    return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.momentum, 0.999))


def _split_slow(groups: list[dict], slow: set[int], scale: float, lr: float) -> list[dict]:
    """Each group as its fast part (as it was) and its slow part (lr × ``scale``); empty parts dropped."""
    split = []
    for group in groups:
        options = {key: value for key, value in group.items() if key != "params"}
        split.append({**options, "params": [p for p in group["params"] if id(p) not in slow]})
        split.append({**options, "params": [p for p in group["params"] if id(p) in slow],
                      "lr": options.get("lr", lr) * scale})
    return [group for group in split if group["params"]]


def build_schedule(optimizer: torch.optim.Optimizer, train_cfg, total_steps: int):
    check_optim_config(train_cfg)
    warmup = max(1, round(train_cfg.warmup_fraction * total_steps))
    start, final = train_cfg.warmup_start_factor, train_cfg.final_lr_factor
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, train_cfg.schedule, start, final))


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, start: float = 0.0,
              final: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warmup from ``start``,
    then a linear (onecycle) or cosine decay to ``final`` at the last step."""
    if schedule == "constant":
        return 1.0
    if step < warmup_steps:
        return start + (1.0 - start) * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "onecycle":
        return max(0.0, 1.0 - (1.0 - final) * progress)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_warmup_lr(optimizer: torch.optim.Optimizer, base_lr: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps`` steps (``step`` counts from 0), then constant;
    returns the learning rate set."""
    lr = base_lr * (min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
