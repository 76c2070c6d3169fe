"""GAN training: config → the frozen conditioning classifier → data and conditions → networks → loop.

``visrep train gan --config configs/gan_<dataset>.yaml`` trains a GAN whose condition, extra
discriminator head and guidance loss come from a trained classifier run (``gan.conditioning_run``):

* ``class``: the label conditions G (conditional BatchNorm) and D (projection);
* ``embedding``: the classifier's unit-length embedding of a training image conditions both; the real
  images D sees for it are drawn from its k nearest training neighbours in that embedding space
  (IC-GAN), so G learns the neighbourhood's variations, not a copy of the image;
* ``none``: unconditional.

The outer loop is :mod:`visrep.training.step_loop`'s, the generator parts
:mod:`visrep.training.generator_loop`'s; the losses and the two steps are in
:mod:`visrep.training.gan_steps`. Sampling always uses the EMA generator, whose BatchNorm statistics are re-estimated at the end
(BigGAN's "standing statistics"). The run directory is self-contained for ``visrep sample`` (see
:mod:`visrep.generate.generator_run`) and is itself a generator run that ``visrep evaluate
generated --fake`` scores: ``samples.npz`` and ``generator.json`` (the independence contract).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from visrep.config import GanConfig
from visrep.data.prepare import PreparedData
from visrep.errors import TrainingDiverged, UserError
from visrep.generate.generator_run import GENERATOR_WEIGHTS, GeneratorRun
from visrep.generate.outputs import SAMPLES_FILE
from visrep.generate.sample import SampleSet, final_sample_set
from visrep.hardware.distributed import DistInfo, broadcast_buffers, mean_across_ranks
from visrep.hardware.precision import check_precision
from visrep.inference.encoder import FrozenEncoder
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
from visrep.training.diffaugment import check_policies
from visrep.training.ema import EMA
from visrep.training.gan_steps import Critic, CriticPair, GanStepper, discriminator_backward, generator_backward
from visrep.training.generator_loop import GRID_COLUMNS, GeneratorLoop
from visrep.training.guards import NonFiniteGuard
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger
from visrep.training.step_loop import StepState, train_or_resume

COLLAPSE_LOSS = 1e-3  # a hinge D loss below this separates every real from every fake by the full margin
STANDING_STATS_BATCHES = 20  # batches of fresh samples that re-estimate the EMA generator's BatchNorm statistics
NETWORK_PREFIX = {"resnet": "gan", "dcgan": "dcgan"}  # gan.architecture → registered model names


@dataclass
class GanState(StepState):
    collapsed_steps: int = 0  # consecutive steps with the discriminator's loss below COLLAPSE_LOSS


@dataclass(kw_only=True)
class GanLoop(GeneratorLoop):
    stepper: GanStepper
    state: GanState = field(default_factory=GanState)

    stage: ClassVar[str] = "gan"

    def start_line(self) -> str:
        return (f"training a {self.cfg.gan.conditioning}-conditional GAN for {self.cfg.train.steps} steps on "
                f"{self.ctx.record_compute(self.cfg.train.channels_last)}")

    def train_step(self) -> None:
        train_step(self)

    def log_line(self, record: dict) -> str:
        return (f"step {record['step']}: d_loss {record['d_loss']:.3f} g_loss {record['g_loss']:.3f} | "
                f"{record['images_per_s']:.0f} img/s")

    def between_steps(self) -> None:
        super().between_steps()
        check_collapse(self)

    def may_checkpoint(self) -> bool:
        return self.state.collapsed_steps == 0  # never a state in mid-collapse

    def as_generator_run(self, shard: bool = False, for_grid: bool = False) -> GeneratorRun:
        return GeneratorRun(self.ctx.run.path, self.cfg, self.ema.model.eval(), list(self.ctx.data.class_names),
                            self.ctx.device, self.conditioning.encoder, self.conditions.bank,
                            dist=self.ctx.dist if shard else DistInfo())

    def classifier_uses(self) -> list[str]:
        gan = self.cfg.gan
        return [name for name, used in (("condition", gan.conditioning == "embedding"),
                                        ("projected discriminator head", gan.projected_head),
                                        ("guidance loss", gan.guidance_weight > 0)) if used]

    def describe(self, samples: SampleSet) -> str:
        return f"GAN, {self.cfg.gan.conditioning}-conditional, {self.state.step} steps: {samples.description}"

    def finish(self) -> None:
        finish(self)


def train_gan(cfg: GanConfig, resume: Path | None = None, progress: bool = True, data: PreparedData | None = None) -> Path:
    """Train per ``cfg`` (a GanConfig), or continue the run at ``resume``; returns the run directory."""
    return train_or_resume(prepare_loop, cfg, resume, progress, data)


def prepare_loop(cfg: GanConfig, progress: bool = True, data: PreparedData | None = None,
                 resume: Path | None = None) -> GanLoop:
    """Everything before the first step: checks, the conditioning classifier, data and conditions,
    networks, then (only now, so that a bad config or conditioning run leaves no directory behind)
    the run directory and the loop's parts."""
    check_config(cfg)
    ctx = RunContext.prepare(cfg, progress, data)
    gan = cfg.gan
    layer_choice = condition_layer(gan, "gan.layer")
    gan.layer = layer_choice.layer  # saved in config.yaml as the layer itself: a resume takes the same one
    layers = {gan.layer} | ({gan.projected_layer} if gan.projected_head else set())
    conditioning = load_conditioning(gan.conditioning_run, gan.weights, layers, ctx.device, "gan")
    check_same_data(conditioning, ctx.data)
    if cfg.data.image_size is None:
        cfg.data.image_size = ctx.data.image_shape[1]
    conditions = training_conditions(gan.conditioning, gan.layer, conditioning, ctx.data,
                                     gan.kmeans_clusters, gan.knn_k, "gan", gan.embeddings,
                                     learned_recipe(gan), progress=ctx.progress and ctx.is_main)
    conditions.layer_choice = layer_choice
    generator, critic = build_networks(cfg, ctx.data, conditioning.encoder, conditions)
    ctx.open_run("gan", resume)
    return build_loop(ctx, conditioning, conditions, generator, critic)


def check_config(cfg: GanConfig) -> None:
    check_precision(cfg.train.precision, "train.precision")
    check_policies(list(cfg.gan.diffaugment))
    if cfg.gan.mode_seeking_weight > 0 and cfg.gan.conditioning != "none" and (cfg.data.batch_size or 2) < 2:
        raise UserError("gan.mode_seeking_weight > 0 compares pairs of images: set data.batch_size ≥ 2")
    if cfg.gan.conditioning == "none" and cfg.gan.guidance_weight > 0:
        raise UserError("gan.guidance_weight > 0 needs a condition to guide towards: use gan.conditioning=class "
                        "or embedding, or set gan.guidance_weight=0")


# ---- networks and the loop's parts ------------------------------------------------------------
def build_networks(cfg: GanConfig, data: PreparedData, encoder: FrozenEncoder,
                   conditions: TrainingConditions) -> tuple[nn.Module, Critic]:
    channels, size, _ = data.image_shape
    gan = cfg.gan
    embedding_dim = conditions.embeddings.shape[1] if conditions.embeddings is not None else 0
    common = {"image_size": size, "channels": channels, "mode": gan.conditioning,
              "num_classes": len(data.class_names), "embedding_dim": embedding_dim}
    prefix = NETWORK_PREFIX[gan.architecture]
    generator = create_model(f"{prefix}_generator", **common, latent_dim=gan.latent_dim, width=gan.g_width,
                             condition_dim=gan.condition_dim)
    discriminator = create_model(f"{prefix}_discriminator", **common, width=gan.d_width)
    head = None
    if gan.projected_head:
        probe = torch.zeros(1, *data.image_shape, dtype=torch.uint8, device=encoder.scale.device)
        with torch.no_grad():
            feature_channels = encoder.forward_intermediates(probe, [gan.projected_layer])[1][gan.projected_layer].shape[1]
        head = create_model("projected_head", feature_channels=int(feature_channels), mode=gan.conditioning,
                            num_classes=common["num_classes"], embedding_dim=embedding_dim, width=gan.d_width)
    return generator, Critic(discriminator, head, gan.projected_layer if head is not None else None)


def build_loop(ctx: RunContext, conditioning: Conditioning, conditions: TrainingConditions, generator: nn.Module,
               critic: Critic) -> GanLoop:
    cfg, device = ctx.cfg, ctx.device
    generator, critic = generator.to(device), critic.to(device)
    if cfg.train.channels_last:
        generator, critic = generator.to(memory_format=torch.channels_last), critic.to(memory_format=torch.channels_last)
    betas = (cfg.train.beta1, cfg.train.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.train.lr_g, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.train.lr_d, betas=betas)
    stepper = GanStepper(generator, critic, opt_g, opt_d, conditioning.encoder, cfg.gan.conditioning, cfg.gan.layer,
                         tuple(cfg.gan.diffaugment), cfg.gan.projected_weight, cfg.gan.guidance_weight,
                         ctx.precision.precision, cfg.train.channels_last, cfg.gan.mode_seeking_weight,
                         generator_step=ctx.ddp(generator), critic_step=ctx.ddp(CriticPair(critic)),
                         scaler=LossScaler(device, ctx.precision.precision))
    ema = EMA(generator, cfg.train.ema_decay)
    run = ctx.run
    checkpointer = Checkpointer(run.file("checkpoints"), cfg.train.keep_checkpoints, run.logger, ctx.dist,
                                generator=generator, critic=critic, opt_g=opt_g, opt_d=opt_d, ema=ema,
                                scaler=stepper.scaler.checkpointed())
    fixed = fixed_grid_inputs(cfg.gan.conditioning, conditions, generator.latent_dim, cfg.run.seed + 1, GRID_COLUMNS)
    return GanLoop(ctx=ctx, guard=NonFiniteGuard("gan", cfg.train.skip_bad_batches, run.logger, ctx.dist),
                   checkpointer=checkpointer, log=MetricsLogger(run, ctx.is_main, cfg.train.tensorboard, ctx.progress),
                   conditioning=conditioning, conditions=conditions, ema=ema, fixed=fixed, stepper=stepper)


# ---- the loop's steps ----------------------------------------------------------------------------
def draw_batch(loop: GanLoop) -> tuple[Tensor, Tensor | None]:
    """(real images (B, C, S, S) in [-1, 1], their condition) from the global RNG (restored on resume).

    Under DDP each rank draws its own B (its RNG is seeded with seed + rank): the global batch is
    world size × B, sampled with replacement like one process's."""
    split, conditions = loop.ctx.data.splits["train"], loop.conditions
    anchors = torch.randint(len(split), (loop.cfg.data.batch_size,))
    mode = loop.cfg.gan.conditioning
    if mode == "embedding":  # the condition is the anchor's embedding; the real image one of its neighbours
        picks = torch.randint(conditions.neighbours.shape[1], (len(anchors),))
        rows, condition = conditions.neighbours[anchors, picks], conditions.embeddings[anchors]
    else:
        rows, condition = anchors, (conditions.labels[anchors] if mode == "class" else None)
    images = split.uint8_batch(rows.numpy()).to(loop.ctx.device).float() / 127.5 - 1.0
    return images, None if condition is None else condition.to(loop.ctx.device)


def train_step(loop: GanLoop) -> None:
    """``d_steps`` discriminator steps, then one generator step, then the EMA."""
    started, stepper, state = time.perf_counter(), loop.stepper, loop.state
    for _ in range(loop.cfg.train.d_steps):
        real, condition = draw_batch(loop)
        d_record = discriminator_backward(stepper, real, condition)
        _optimizer_step(loop, stepper.opt_d, d_record["d_loss"], stepper.critic.parameters())
        state.images_seen += len(real) * loop.ctx.dist.world_size
    g_record = generator_backward(stepper, condition, len(real), real.device)
    _optimizer_step(loop, stepper.opt_g, g_record.pop("loss"), stepper.generator.parameters())
    loop.update_ema(stepper.generator)
    state.close_step(0, started, {**d_record, **g_record})  # images were counted per discriminator step
    d_loss = mean_across_ranks({"d_loss": float(d_record["d_loss"].detach())}, loop.ctx.dist)["d_loss"]
    state.collapsed_steps = state.collapsed_steps + 1 if d_loss < COLLAPSE_LOSS else 0


def _optimizer_step(loop: GanLoop, optimizer: torch.optim.Optimizer, loss: Tensor, parameters) -> None:
    loop.stepper.scaler.unscale(optimizer)
    loop.guarded_step(optimizer, loss, parameters, loop.stepper.scaler)


def check_collapse(loop: GanLoop) -> None:
    """Stop, keeping the last good checkpoint, once the discriminator has won outright for too long."""
    cfg, state = loop.cfg, loop.state
    if cfg.train.collapse_steps and state.collapsed_steps >= cfg.train.collapse_steps:
        raise TrainingDiverged(f"gan training stopped at step {state.step}: the discriminator's loss has stayed "
                               f"below {COLLAPSE_LOSS} for {state.collapsed_steps} steps (it tells every real image "
                               f"from every generated one, so the generator learns nothing more); the last good "
                               f"checkpoint is kept — try more DiffAugment, a lower train.lr_d or a smaller "
                               f"gan.d_width")


# ---- the end of training -----------------------------------------------------------------------
@torch.no_grad()
def refresh_batch_statistics(loop: GanLoop, batches: int = STANDING_STATS_BATCHES) -> None:
    """Re-estimate the EMA generator's BatchNorm statistics on its own samples (a plain average over
    ``batches`` batches): the running averages it was copied from belong to the live weights."""
    generator = loop.ema.model
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    generator.train()
    rng = torch.Generator().manual_seed(loop.cfg.run.seed + 2)
    for _ in range(batches):
        _, condition = draw_batch(loop)
        z = torch.randn(loop.cfg.data.batch_size, generator.latent_dim, generator=rng).to(loop.ctx.device)
        generator(z, condition)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    generator.eval()


def finish(loop: GanLoop) -> None:
    """Rank 0 re-estimates the EMA generator's statistics and hands them to every rank; the final samples
    are generated by all ranks (each its share), and rank 0 writes the run's files."""
    if loop.ctx.is_main:
        refresh_batch_statistics(loop)
    broadcast_buffers(loop.ema.model, loop.ctx.dist)
    samples = final_sample_set(loop.as_generator_run(shard=True), loop.ctx.data.splits["train"],
                               loop.cfg.gan.final_samples, loop.cfg.run.seed + 3, loop.conditions.embeddings)
    if not loop.ctx.is_main:
        return
    loop.write_outputs(samples, GENERATOR_WEIGHTS, loop.stepper.generator.config, {})
    state = loop.state
    loop.ctx.run.logger.info("%d steps, %d real images shown, %.1f s of training; %d samples in %s", state.step,
                             state.images_seen, state.train_seconds, len(samples.images), SAMPLES_FILE)
