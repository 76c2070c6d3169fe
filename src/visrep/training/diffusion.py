"""Diffusion training: config → the frozen conditioning classifier → data and conditions → U-Net → loop.

``visrep train diffusion --config configs/diffusion_<dataset>.yaml`` trains a U-Net denoiser
(:mod:`visrep.models.unet`) with v-prediction on a cosine schedule (:mod:`visrep.diffusion`), whose
condition comes from a trained classifier run (``diffusion.conditioning_run``):

* ``class``: the label;
* ``embedding``: the classifier's unit-length embedding of the training image itself (RCG); sampling
  without a given image draws embeddings from the condition bank fitted here;
* ``none``: unconditional.

Condition dropout (``diffusion.condition_dropout``) trains the unconditional branch that
classifier-free guidance needs. The optional REPA loss (Yu et al. 2024) aligns a small projection
of the U-Net's middle map with the frozen classifier's map at ``diffusion.repa_layer`` for the clean
image (negative cosine per position, the classifier map average-pooled to the U-Net's grid).

The outer loop is :mod:`visrep.training.step_loop`'s and the generator parts
:mod:`visrep.training.generator_loop`'s; this file holds the U-Net, its step and its outputs. The run directory is self-contained for ``visrep sample`` and is itself a
generator run that ``visrep evaluate generated --fake`` scores (samples.npz + generator.json).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.config import DiffusionConfig
from visrep.data.prepare import PreparedData
from visrep.diffusion.loss import noise_batch, weighted_mse
from visrep.diffusion.sampler import DiffusionGenerator, SamplingOptions
from visrep.diffusion.schedule import alphas_cumprod, check_solver
from visrep.errors import UserError
from visrep.generate.generator_run import DENOISER_WEIGHTS, GeneratorRun
from visrep.generate.outputs import SAMPLES_FILE
from visrep.generate.sample import SampleSet, final_sample_set
from visrep.hardware.distributed import DistInfo
from visrep.hardware.precision import check_precision
from visrep.inference.autocast import autocast_context
from visrep.models import create_model
from visrep.training.checkpointer import Checkpointer
from visrep.training.conditioning_run import (
    Conditioning,
    TrainingConditions,
    check_same_data,
    condition_layer,
    learned_recipe,
    fixed_grid_inputs,
    load_conditioning,
    training_conditions,
)
from visrep.training.context import RunContext
from visrep.training.ema import EMA
from visrep.training.generator_loop import GRID_COLUMNS, GeneratorLoop
from visrep.training.guards import NonFiniteGuard
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger
from visrep.training.optim import set_warmup_lr
from visrep.training.step_loop import train_or_resume

GRID_STEPS = 20  # solver steps of the progress grids (the run's own solver and guidance)


@dataclass(kw_only=True)
class DiffusionLoop(GeneratorLoop):
    model: nn.Module  # the U-Net being trained
    projector: nn.Module | None  # REPA: U-Net middle map → classifier feature channels
    optimizer: torch.optim.Optimizer
    alphas_cumprod: Tensor  # (T,)
    trained: nn.Module  # model and projector as one module, in DistributedDataParallel under torchrun
    scaler: LossScaler  # fp16's loss scaling (a pass-through otherwise)

    stage: ClassVar[str] = "diffusion"

    def start_line(self) -> str:
        return (f"training a {self.cfg.diffusion.conditioning}-conditional diffusion model "
                f"({_millions(self.model):.2f} M parameters) for {self.cfg.train.steps} steps on "
                f"{self.ctx.record_compute(self.cfg.train.channels_last)}")

    def train_step(self) -> None:
        train_step(self)

    def log_extra(self) -> dict:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def log_line(self, record: dict) -> str:
        return f"step {record['step']}: v_loss {record['v_loss']:.4f} | {record['images_per_s']:.0f} img/s"

    def as_generator_run(self, shard: bool = False, for_grid: bool = False) -> GeneratorRun:
        opts = self.cfg.diffusion
        options = SamplingOptions.from_config(opts, self.cfg.train.precision,
                                              **({"steps": GRID_STEPS} if for_grid else {}))
        trained_unconditional = opts.condition_dropout > 0 or opts.conditioning == "none"
        generator = DiffusionGenerator(self.ema.model.eval(), options, trained_unconditional)
        return GeneratorRun(self.ctx.run.path, self.cfg, generator, list(self.ctx.data.class_names),
                            self.ctx.device, self.conditioning.encoder, self.conditions.bank,
                            dist=self.ctx.dist if shard else DistInfo())

    def classifier_uses(self) -> list[str]:
        opts = self.cfg.diffusion
        return [name for name, used in (("condition", opts.conditioning == "embedding"),
                                        ("REPA alignment loss", opts.repa_weight > 0)) if used]

    def manifest_extra(self) -> dict:
        opts = self.cfg.diffusion
        return {**({"repa_layer": opts.repa_layer} if opts.repa_weight > 0 else {}),
                "solver": opts.solver, "steps": opts.sample_steps, "guidance": opts.guidance,
                "guidance_interval": list(opts.guidance_interval)}

    def describe(self, samples: SampleSet) -> str:
        opts = self.cfg.diffusion
        return (f"diffusion, {opts.conditioning}-conditional, {self.state.step} steps, {opts.solver} "
                f"{opts.sample_steps} steps, guidance {opts.guidance}: {samples.description}")

    def finish(self) -> None:
        finish(self)


def train_diffusion(cfg: DiffusionConfig, resume: Path | None = None, progress: bool = True, data: PreparedData | None = None) -> Path:
    """Train per ``cfg`` (a DiffusionConfig), or continue the run at ``resume``; returns the run directory."""
    return train_or_resume(prepare_loop, cfg, resume, progress, data)


def prepare_loop(cfg: DiffusionConfig, progress: bool = True, data: PreparedData | None = None,
                 resume: Path | None = None) -> DiffusionLoop:
    """Everything before the first step; the run directory only once the config, the conditioning run
    and the networks are known to be good."""
    check_config(cfg)
    ctx = RunContext.prepare(cfg, progress, data)
    opts = cfg.diffusion
    layer_choice = condition_layer(opts, "diffusion.layer")
    opts.layer = layer_choice.layer  # saved in config.yaml as the layer itself: a resume takes the same one
    if opts.repa_weight > 0:  # REPA's target map: a named layer, or best (the analysis's best val probe among maps)
        opts.repa_layer = condition_layer(opts, "diffusion.repa_layer", opts.repa_layer, maps_only=True).layer
    layers = {opts.layer} | ({opts.repa_layer} if opts.repa_weight > 0 else set())
    conditioning = load_conditioning(opts.conditioning_run, opts.weights, layers, ctx.device, "diffusion")
    check_same_data(conditioning, ctx.data)
    if cfg.data.image_size is None:
        cfg.data.image_size = ctx.data.image_shape[1]
    conditions = training_conditions(opts.conditioning, opts.layer, conditioning, ctx.data,
                                     opts.kmeans_clusters, section="diffusion",
                                     embeddings=opts.embeddings, learned=learned_recipe(opts),
                                     progress=ctx.progress and ctx.is_main)
    conditions.layer_choice = layer_choice
    model = build_denoiser(cfg, ctx.data, conditions)
    projector = build_projector(cfg, model, conditioning, ctx.data) if opts.repa_weight > 0 else None
    ctx.open_run("diffusion", resume)
    return build_loop(ctx, conditioning, conditions, model, projector)


def check_config(cfg: DiffusionConfig) -> None:
    check_precision(cfg.train.precision, "train.precision")
    opts = cfg.diffusion
    check_solver(opts.solver, opts.sample_steps, ("diffusion.solver", "diffusion.sample_steps"))
    if opts.guidance != 1.0 and opts.conditioning != "none" and opts.condition_dropout == 0:
        raise UserError(f"diffusion.guidance={opts.guidance} needs an unconditional branch: train with "
                        "diffusion.condition_dropout > 0 (0.1 is usual), or set diffusion.guidance=1")


def _millions(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# ---- networks and the loop's parts ------------------------------------------------------------
def build_denoiser(cfg: DiffusionConfig, data: PreparedData, conditions: TrainingConditions) -> nn.Module:
    channels, size, _ = data.image_shape
    opts = cfg.diffusion
    embedding_dim = conditions.embeddings.shape[1] if conditions.embeddings is not None else 0
    return create_model("unet", image_size=size, channels=channels, mode=opts.conditioning,
                        num_classes=len(data.class_names), embedding_dim=embedding_dim, width=opts.width,
                        multipliers=list(opts.multipliers), blocks=opts.blocks, dropout=opts.dropout,
                        attention=opts.attention, patch=opts.patch)


def build_projector(cfg: DiffusionConfig, model: nn.Module, conditioning: Conditioning, data: PreparedData) -> nn.Module:
    """REPA's projection: a 2-layer 1×1-conv MLP from the U-Net's middle channels to the classifier map's."""
    probe = torch.zeros(1, *data.image_shape, dtype=torch.uint8, device=conditioning.encoder.scale.device)
    with torch.no_grad():
        target = conditioning.encoder.forward_intermediates(probe, [cfg.diffusion.repa_layer])[1]
    feature = target[cfg.diffusion.repa_layer]
    if feature.dim() != 4:
        raise UserError(f"diffusion.repa_layer='{cfg.diffusion.repa_layer}' is not a feature map (its output is "
                        f"{tuple(feature.shape[1:])}): name a convolutional stage of the classifier")
    hidden = 2 * model.feature_channels
    return nn.Sequential(nn.Conv2d(model.feature_channels, hidden, 1), nn.SiLU(),
                         nn.Conv2d(hidden, feature.shape[1], 1))


def build_loop(ctx: RunContext, conditioning: Conditioning, conditions: TrainingConditions, model: nn.Module,
               projector: nn.Module | None) -> DiffusionLoop:
    cfg, device = ctx.cfg, ctx.device
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = list(model.parameters()) + (list(projector.to(device).parameters()) if projector is not None else [])
    optimizer = torch.optim.AdamW(trained, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    ema = EMA(model, cfg.train.ema_decay)
    run = ctx.run
    scaler = LossScaler(device, ctx.precision.precision)
    parts = {"model": model, "optimizer": optimizer, "ema": ema, "scaler": scaler.checkpointed()}
    if projector is not None:
        parts["projector"] = projector
    checkpointer = Checkpointer(run.file("checkpoints"), cfg.train.keep_checkpoints, run.logger, ctx.dist, **parts)
    channels, size, _ = ctx.data.image_shape
    fixed = fixed_grid_inputs(cfg.diffusion.conditioning, conditions, channels * size * size, cfg.run.seed + 1,
                              GRID_COLUMNS)
    # without condition dropout the learned null condition takes no part in any step
    unused_null = cfg.diffusion.conditioning != "none" and cfg.diffusion.condition_dropout == 0
    trained = ctx.ddp(DenoiserWithProjector(model, projector), find_unused_parameters=unused_null)
    return DiffusionLoop(ctx=ctx, guard=NonFiniteGuard("diffusion", cfg.train.skip_bad_batches, run.logger, ctx.dist),
                         checkpointer=checkpointer,
                         log=MetricsLogger(run, ctx.is_main, cfg.train.tensorboard, ctx.progress),
                         conditioning=conditioning, conditions=conditions, ema=ema, fixed=fixed, model=model,
                         projector=projector, optimizer=optimizer, alphas_cumprod=alphas_cumprod(), trained=trained,
                         scaler=scaler)


class DenoiserWithProjector(nn.Module):
    """The U-Net and REPA's projection as one module, so that one DistributedDataParallel wrapper
    averages both gradients; ``forward`` → (v prediction, projected middle map or None)."""

    def __init__(self, model: nn.Module, projector: nn.Module | None):
        super().__init__()
        self.model, self.projector = model, projector

    def forward(self, noisy: Tensor, timesteps: Tensor, condition: Tensor | None, drop: Tensor | None):
        prediction, middle = self.model(noisy, timesteps, condition, drop, features=True)
        return prediction, (self.projector(middle) if self.projector is not None else None)


# ---- the loop's steps ----------------------------------------------------------------------------
def draw_batch(loop: DiffusionLoop) -> tuple[Tensor, Tensor, Tensor | None]:
    """(uint8 images (B, C, S, S), the same in [-1, 1], their condition) from the global RNG (restored on resume).

    Under DDP each rank draws its own B (seed + rank): the global batch is world size × B."""
    split = loop.ctx.data.splits["train"]
    rows = torch.randint(len(split), (loop.cfg.data.batch_size,))
    raw = split.uint8_batch(rows.numpy()).to(loop.ctx.device)
    mode = loop.cfg.diffusion.conditioning
    condition = {"class": loop.conditions.labels, "embedding": loop.conditions.embeddings}.get(mode)
    condition = None if condition is None else condition[rows].to(loop.ctx.device)
    return raw, raw.float() / 127.5 - 1.0, condition


def train_step(loop: DiffusionLoop) -> None:
    """One optimizer step on the weighted v-loss (+ REPA), then the EMA."""
    started, cfg, state = time.perf_counter(), loop.cfg, loop.state
    raw, images, condition = draw_batch(loop)
    drop = _condition_dropout(loop, len(images))
    batch = noise_batch(images, loop.alphas_cumprod, cfg.diffusion.min_snr_gamma)
    set_warmup_lr(loop.optimizer, cfg.train.lr, state.step, cfg.train.warmup_steps)
    with autocast_context(loop.ctx.device, loop.ctx.precision.precision):
        prediction, projected = loop.trained(batch.noisy, batch.timesteps, condition, drop)
        record = {"v_loss": weighted_mse(prediction, batch)}
        loss = record["v_loss"]
        if projected is not None:
            record["repa_loss"] = repa_loss(loop, projected, raw)
            loss = loss + cfg.diffusion.repa_weight * record["repa_loss"]
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.backward(loss)
    loop.scaler.unscale(loop.optimizer)  # clip the true gradients
    if cfg.train.grad_clip > 0:
        record["grad_norm"] = torch.nn.utils.clip_grad_norm_(_trained_parameters(loop), cfg.train.grad_clip)
    loop.guarded_step(loop.optimizer, loss, _trained_parameters(loop), loop.scaler)
    loop.update_ema(loop.model)
    state.close_step(len(images) * loop.ctx.dist.world_size, started, record)


def _condition_dropout(loop: DiffusionLoop, n: int) -> Tensor | None:
    """(n,) bool rows whose condition is replaced by the null one (classifier-free guidance's training)."""
    opts = loop.cfg.diffusion
    if opts.conditioning == "none" or opts.condition_dropout == 0:
        return None
    return (torch.rand(n) < opts.condition_dropout).to(loop.ctx.device)


def repa_loss(loop: DiffusionLoop, projected: Tensor, raw: Tensor) -> Tensor:
    """1 − mean cosine between the projected U-Net middle map and the classifier's map of the clean image."""
    layer = loop.cfg.diffusion.repa_layer
    with torch.no_grad():
        target = loop.conditioning.encoder.forward_intermediates(raw, [layer])[1][layer].float()
    target = F.adaptive_avg_pool2d(target, projected.shape[-2:])
    return 1 - F.cosine_similarity(projected.float(), target, dim=1).mean()


def _trained_parameters(loop: DiffusionLoop) -> list[nn.Parameter]:
    extra = list(loop.projector.parameters()) if loop.projector is not None else []
    return list(loop.model.parameters()) + extra


# ---- the end of training -----------------------------------------------------------------------
def finish(loop: DiffusionLoop) -> None:
    """The final samples, generated by all ranks under DDP (each its share), then rank 0's files."""
    cfg, state = loop.cfg, loop.state
    started = time.perf_counter()
    samples = final_sample_set(loop.as_generator_run(shard=True), loop.ctx.data.splits["train"],
                               cfg.diffusion.final_samples, cfg.run.seed + 3, loop.conditions.embeddings)
    sample_seconds = time.perf_counter() - started
    if not loop.ctx.is_main:
        return
    opts = cfg.diffusion
    loop.write_outputs(samples, DENOISER_WEIGHTS, loop.model.config, {
        "sample_seconds": sample_seconds, "solver": opts.solver, "sample_steps": opts.sample_steps,
        "guidance": opts.guidance, "guidance_interval": list(opts.guidance_interval),
        "parameters_millions": _millions(loop.model)})
    loop.ctx.run.logger.info(
        "%d steps, %d images, %.1f s of training; %d samples in %.1f s (%s, %d steps, guidance %s) in %s",
        state.step, state.images_seen, state.train_seconds, len(samples.images), sample_seconds, opts.solver,
        opts.sample_steps, opts.guidance, SAMPLES_FILE)
