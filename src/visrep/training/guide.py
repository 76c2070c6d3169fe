"""The noise-aware guide: a copy of the classifier fine-tuned on noised images, for classifier guidance.

``visrep train guide --config configs/guide_<dataset>.yaml`` (``guide.conditioning_run``: the classifier
run the diffusion model is conditioned on). The copy (:class:`visrep.models.noise_aware.NoiseAwareClassifier`)
starts from the classifier's weights, reads the timestep through FiLM on its penultimate features, and
is trained with cross-entropy on x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε, t uniform over the diffusion schedule
(:mod:`visrep.diffusion.loss`), so that its gradient ∇ log p(y | x_t, t) means something at every
noise level. At the end its validation accuracy is measured per quarter of the schedule: it must fall
as the noise grows and stay above chance where guidance acts.

Run directory: ``guide.safetensors`` (+ .json: the model config, normalisation included), metrics.jsonl,
checkpoints, and metrics.json (last) with the accuracy by noise level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.config import GuideConfig
from visrep.data.prepare import PreparedData
from visrep.diffusion.loss import noise_batch
from visrep.diffusion.schedule import TRAIN_TIMESTEPS, alphas_cumprod
from visrep.generate.generator_run import GUIDE_WEIGHTS
from visrep.hardware.precision import check_precision
from visrep.inference.autocast import autocast_context
from visrep.models import create_model
from visrep.storage import read_json, save_weights
from visrep.training.checkpointer import Checkpointer
from visrep.training.conditioning_run import check_same_data, load_conditioning
from visrep.training.context import RunContext
from visrep.training.guards import NonFiniteGuard
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger
from visrep.training.optim import set_warmup_lr
from visrep.training.step_loop import StepLoop, train_or_resume

NOISE_BANDS = 4  # validation accuracy reported per quarter of the timesteps


@dataclass(kw_only=True)
class GuideLoop(StepLoop):
    model: nn.Module
    optimizer: torch.optim.Optimizer
    alphas_cumprod: Tensor
    classifier_run: Path
    trained: nn.Module  # the model, in DistributedDataParallel under torchrun
    scaler: LossScaler  # fp16's loss scaling (a pass-through otherwise)

    stage: ClassVar[str] = "guide"

    def start_line(self) -> str:
        return (f"fine-tuning a noise-aware copy of {self.classifier_run} for {self.cfg.train.steps} steps on "
                f"{self.ctx.record_compute(False)}")

    def train_step(self) -> None:
        train_step(self)

    def log_line(self, record: dict) -> str:
        return f"step {record['step']}: loss {record['loss']:.3f} accuracy {record['accuracy']:.3f} (all noise levels)"

    def finish(self) -> None:
        finish(self)


def train_guide(cfg: GuideConfig, resume: Path | None = None, progress: bool = True, data: PreparedData | None = None) -> Path:
    """Fine-tune the noise-aware copy per ``cfg`` (a GuideConfig), or resume; returns the run directory."""
    return train_or_resume(prepare_loop, cfg, resume, progress, data)


def prepare_loop(cfg: GuideConfig, progress: bool = True, data: PreparedData | None = None,
                 resume: Path | None = None) -> GuideLoop:
    check_precision(cfg.train.precision, "train.precision")
    ctx = RunContext.prepare(cfg, progress, data)
    conditioning = load_conditioning(cfg.guide.conditioning_run, cfg.guide.weights, [], ctx.device, "guide")
    check_same_data(conditioning, ctx.data)
    model = build_guide(conditioning.encoder.classifier, read_json(conditioning.run / "normalization.json"),
                        cfg.guide.time_dim).to(ctx.device)
    ctx.open_run("guide", resume)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    run = ctx.run
    scaler = LossScaler(ctx.device, ctx.precision.precision)
    checkpointer = Checkpointer(run.file("checkpoints"), cfg.train.keep_checkpoints, run.logger, ctx.dist,
                                model=model, optimizer=optimizer, scaler=scaler.checkpointed())
    return GuideLoop(ctx=ctx, guard=NonFiniteGuard("guide", cfg.train.skip_bad_batches, run.logger, ctx.dist),
                     checkpointer=checkpointer, log=MetricsLogger(run, ctx.is_main, cfg.train.tensorboard, ctx.progress),
                     model=model, optimizer=optimizer, alphas_cumprod=alphas_cumprod(), classifier_run=conditioning.run,
                     trained=ctx.ddp(model), scaler=scaler)


def build_guide(classifier: nn.Module, normalization: dict, time_dim: int) -> nn.Module:
    """The noise-aware classifier, its backbone a copy of ``classifier`` (weights included)."""
    guide = create_model("noise_aware_classifier", backbone=dict(classifier.config),
                         mean=list(normalization["mean"]), std=list(normalization["std"]), time_dim=time_dim)
    guide.backbone.load_state_dict(classifier.state_dict())
    return guide


def draw_batch(loop: GuideLoop) -> tuple[Tensor, Tensor]:
    """(training images in [-1, 1], labels) from the global RNG (restored on resume); each DDP rank its own."""
    split = loop.ctx.data.splits["train"]
    rows = torch.randint(len(split), (loop.cfg.data.batch_size,))
    images = split.uint8_batch(rows.numpy()).to(loop.ctx.device).float() / 127.5 - 1.0
    return images, split.labels[rows].to(loop.ctx.device)


def train_step(loop: GuideLoop) -> None:
    started, state, cfg = time.perf_counter(), loop.state, loop.cfg
    images, labels = draw_batch(loop)
    noised = noise_batch(images, loop.alphas_cumprod, 0.0)
    set_warmup_lr(loop.optimizer, cfg.train.lr, state.step, cfg.train.warmup_steps)
    loop.trained.train()
    with autocast_context(loop.ctx.device, loop.ctx.precision.precision):
        logits = loop.trained(noised.noisy, noised.timesteps)
    loss = F.cross_entropy(logits.float(), labels)
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.backward(loss)
    loop.scaler.unscale(loop.optimizer)
    loop.guarded_step(loop.optimizer, loss, loop.model.parameters(), loop.scaler)
    state.close_step(len(images) * loop.ctx.dist.world_size, started,
                     {"loss": loss, "accuracy": (logits.argmax(1) == labels).float().mean()})


@torch.no_grad()
def accuracy_by_noise(model: nn.Module, data: PreparedData, device: torch.device, precision: str,
                      seed: int = 0, bands: int = NOISE_BANDS) -> list[dict]:
    """Accuracy on the validation split (test if there is none) noised at timesteps drawn uniformly
    within each of ``bands`` equal parts of the schedule."""
    split = data.splits.get("val") or data.splits["test"]
    generator = torch.Generator().manual_seed(seed)
    schedule = alphas_cumprod()
    model.eval()
    results = []
    for band in range(bands):
        low, high = band * TRAIN_TIMESTEPS // bands, (band + 1) * TRAIN_TIMESTEPS // bands
        correct = 0
        for start in range(0, len(split), 500):
            rows = np.arange(start, min(start + 500, len(split)))
            images = split.uint8_batch(rows).to(device).float() / 127.5 - 1.0
            t = torch.randint(low, high, (len(rows),), generator=generator)
            noise = torch.randn(images.shape, generator=generator).to(device)
            alpha_bar = schedule[t].view(-1, 1, 1, 1).to(device)
            noisy = alpha_bar.sqrt() * images + (1 - alpha_bar).sqrt() * noise
            with autocast_context(device, precision):
                logits = model(noisy, t.to(device))
            correct += int((logits.argmax(1).cpu() == split.labels[rows]).sum())
        results.append({"timesteps": [low, high - 1], "accuracy": correct / len(split)})
    return results


def finish(loop: GuideLoop) -> None:
    if not loop.ctx.is_main:
        return
    run, state = loop.ctx.run, loop.state
    save_weights(loop.model, run.file(GUIDE_WEIGHTS), loop.model.config)
    by_noise = accuracy_by_noise(loop.model, loop.ctx.data, loop.ctx.device, loop.ctx.precision.precision,
                                 loop.cfg.run.seed)
    run.write_json("metrics.json", {"stage": "guide", "steps": state.step, "images_seen": state.images_seen,
                                    "train_seconds": state.train_seconds, "classifier_run": str(loop.classifier_run),
                                    "accuracy_by_noise": by_noise, "chance": 1 / len(loop.ctx.data.class_names)})
    loop.log.close()
    run.logger.info("validation accuracy by noise level: %s", ", ".join(
        f"t {band['timesteps'][0]}-{band['timesteps'][1]}: {band['accuracy']:.3f}" for band in by_noise))
