"""Fine-tuning a pretrained classifier (``model.pretrained_path``): the new head first, then everything.

For ``train.head_epochs`` epochs only the head trains, on the frozen backbone's features (its
BatchNorm statistics frozen too): a randomly initialised head would otherwise send large, random
gradients into the pretrained weights and undo part of what they learnt. Then the whole network
trains, the backbone at ``train.backbone_lr_scale`` times the head's rate (the usual 10x lower).
"""

from __future__ import annotations

import torch

from visrep.models.pretrained import freeze_backbone, head_parameters

HEAD_SHARE = 5  # unset head_epochs: a fifth of the run (at least one epoch) trains the head alone


def fill_head_epochs(train_cfg, pretrained: bool, say=print) -> None:
    """Fill an unset train.head_epochs: 0 from scratch; with pretrained weights, a fifth of the epochs."""
    if train_cfg.head_epochs is not None:
        return
    train_cfg.head_epochs = max(1, train_cfg.epochs // HEAD_SHARE) if pretrained else 0
    if pretrained:
        say(f"train.head_epochs not given: {train_cfg.head_epochs} (the new head alone first, then the whole "
            f"network with the backbone at {train_cfg.backbone_lr_scale:g}x the rate; set train.head_epochs to choose)")


def backbone_parameters(model: torch.nn.Module) -> set[int]:
    """ids of every parameter but the head's: what trains at ``train.backbone_lr_scale`` (build_optimizer's
    ``slow``)."""
    head = head_parameters(model)
    return {id(parameter) for parameter in model.parameters() if id(parameter) not in head}


def set_phase(model: torch.nn.Module, epoch: int, head_epochs: int) -> None:
    """Epoch ``epoch`` (0-based) trains the head alone while epoch < ``head_epochs``, else everything.
    Called after ``model.train()`` at the start of each epoch (which would thaw frozen BatchNorm)."""
    if head_epochs > 0:
        freeze_backbone(model, epoch < head_epochs)
