"""A learning-rate range test (Smith 2017; fastai's ``lr_find``): `visrep train classifier DATA --lr-find`.

From the run's own initial model (built and initialised as training builds it, pretrained weights
included), optimizer groups (a fine-tuned backbone's slower rate included) and augmented batches, the learning rate grows
geometrically from START_LR to END_LR over at most STEPS optimizer steps (every parameter group
keeps its ratio to train.lr, as the one-cycle schedule would). The loss is smoothed (an exponential
average, bias-corrected) and the test stops once it exceeds DIVERGENCE × its lowest value. The
suggestion is the rate where the smoothed loss falls fastest against log(lr) (fastai's "steep"): a
tenth of the lowest point's rate, the older rule, over-shoots for networks with BatchNorm, whose
loss often still falls at the end of the range (digits: lowest at 8.9, steepest at 0.24, the tuned
recipe's peak 0.2). Nothing is trained for keeps:
the run folder holds lr_find.json and lr_find.png (and config.yaml, manifest.json, log.txt).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from visrep.config import ClassifierConfig
from visrep.errors import UserError
from visrep.figures import plot_lr_range
from visrep.training.classifier import init_model_from_data, prepare_classifier, training_batches
from visrep.training.context import RunContext
from visrep.training.finetune import backbone_parameters
from visrep.training.optim import build_optimizer
from visrep.training.steps import classification_backward

START_LR, END_LR, STEPS = 1e-4, 10.0, 100
SMOOTHING = 0.9  # weight of the running average per step: a 10-step memory (fastai: 0.98 over more steps)
DIVERGENCE = 4.0


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    lowest: float  # the rate at the smoothed loss's minimum
    suggestion: float  # the rate of the steepest fall of the smoothed loss against log(lr)
    stopped_early: bool


def find_lr(cfg: ClassifierConfig, progress: bool = True, steps: int = STEPS) -> Path:
    """Run the range test for a classifier config; print the suggestion; return the run folder."""
    if cfg.train.optimizer == "muon":
        raise UserError("--lr-find sweeps train.lr, but with train.optimizer=muon the filters follow train.muon_lr: "
                        "test with optimizer=sgd, or choose muon_lr by a short sweep")
    ctx, model = prepare_classifier(cfg, progress)  # as training builds it: checks, data, pretrained weights
    model = model.to(ctx.device)
    init_model_from_data(model, ctx.data, cfg.run.seed, ctx.device)  # e.g. airbench's whitening stem
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    slow = backbone_parameters(model) if cfg.model.pretrained_path else None  # fine-tuning's slower backbone
    optimizer = build_optimizer(model, cfg.train, slow, cfg.train.backbone_lr_scale)
    run = ctx.open_run("lr-find")
    test = range_test(model, training_batches(ctx), optimizer, cfg.train.lr, ctx, steps)
    run.write_json("lr_find.json", asdict(test))
    plot_lr_range(test.lrs, test.losses, test.smoothed, test.lowest, test.suggestion, run.file("lr_find.png"))
    run.logger.info("lr range test (%d steps%s): smoothed loss lowest at lr %.3g, falling fastest at %.3g: suggested "
                    "train.lr=%.3g; curve: %s", len(test.lrs), ", stopped at divergence" if test.stopped_early else "",
                    test.lowest, test.suggestion, test.suggestion, run.file("lr_find.png"))
    return run.path


def range_test(model: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, base_lr: float, ctx: RunContext,
               steps: int = STEPS) -> RangeTest:
    ratios = [group["lr"] / base_lr for group in optimizer.param_groups]  # each group keeps its share of the peak
    growth = (END_LR / START_LR) ** (1 / max(1, steps - 1))
    lrs, losses, smoothed, average, stopped = [], [], [], 0.0, False
    model.train()
    for step, (images, labels) in zip(range(steps), _cycle(loader)):
        lr = START_LR * growth ** step
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        loss, _ = classification_backward(model, optimizer, images.to(ctx.device), labels.to(ctx.device),
                                          ctx.precision.precision, ctx.cfg.train.label_smoothing)
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            stopped = True
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        lrs.append(lr)
        losses.append(value)
        smoothed.append(average / (1 - SMOOTHING ** (step + 1)))
        if step > 10 and smoothed[-1] > DIVERGENCE * min(smoothed):
            stopped = True
            break
    if not lrs:
        raise UserError(f"the range test's first step (lr {START_LR:g}) already gave a non-finite loss: check the "
                        "data (visrep data inspect) or train in fp32 (train.precision=fp32)")
    lowest = lrs[min(range(len(smoothed)), key=smoothed.__getitem__)]
    return RangeTest(lrs, losses, smoothed, lowest, steepest(lrs, smoothed), stopped)


def steepest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate where the smoothed loss falls fastest per unit of log(lr), before its lowest point (the first
    tenth of the range is left out: the average is still warming up there)."""
    end = min(range(len(smoothed)), key=smoothed.__getitem__) + 1
    start = min(len(lrs) // 10, max(0, end - 2))
    if end - start < 2:
        return lrs[start]
    slopes = np.gradient(np.asarray(smoothed[start:end]), np.log(np.asarray(lrs[start:end])))
    return float(lrs[start + int(np.argmin(slopes))])


def _cycle(loader):
    while True:
        yield from loader
