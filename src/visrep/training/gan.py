"""GAN training: config → the frozen conditioning classifier → data and conditions → networks → loop.

``visrep train gan --config configs/gan_<dataset>.yaml`` trains a GAN whose condition, extra
discriminator head and guidance loss come from a trained classifier run (``gan.conditioning_run``):

* ``class``: the label conditions G (conditional BatchNorm) and D (projection);
* ``embedding``: the classifier's unit-length embedding of a training image conditions both; the real
  images D sees for it are drawn from its k nearest training neighbours in that embedding space
  (IC-GAN), so G learns the neighbourhood's variations, not a copy of the image;
* ``none``: unconditional.

The loop is written out here over the shared parts (run context, checkpointer, metrics logger,
non-finite guard, EMA); the losses and the two steps are in :mod:`visrep.training.gan_steps`.
Sampling always uses the EMA generator, whose BatchNorm statistics are re-estimated at the end
(BigGAN's "standing statistics"). The run directory is self-contained for ``visrep sample`` (see
:mod:`visrep.generate.generator_run`) and is itself a generator run that ``visrep evaluate
generated --fake`` scores: ``samples.npz`` and ``generator.json`` (the independence contract).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.data.prepare import PreparedData
from visrep.errors import TrainingDiverged, UserError
from visrep.figures import save_image_grid
from visrep.generate.generator_run import GENERATOR_WEIGHTS, GeneratorRun
from visrep.generate.outputs import SAMPLES_FILE, write_npz
from visrep.generate.sample import SampleSet, final_sample_set, generate
from visrep.hardware.distributed import DistInfo, any_rank, broadcast_buffers, mean_across_ranks
from visrep.hardware.precision import check_precision
from visrep.inference.encoder import FrozenEncoder
from visrep.inference.independence import GENERATOR_MANIFEST, HASH_KEY
from visrep.models import create_model
from visrep.storage import save_weights
from visrep.training.checkpointer import Checkpointer
from visrep.training.conditioning_run import (
    Conditioning,
    TrainingConditions,
    check_same_data,
    fixed_grid_inputs,
    declared_hashes,
    load_conditioning,
    save_sampling_files,
    training_conditions,
)
from visrep.training.context import RunContext
from visrep.training.diffaugment import check_policies
from visrep.training.ema import EMA
from visrep.training.gan_steps import Critic, CriticPair, GanStepper, discriminator_backward, generator_backward
from visrep.training.guards import NonFiniteGuard
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger, accumulate, interval_means, out_of_time

COLLAPSE_LOSS = 1e-3  # a hinge D loss below this separates every real from every fake by the full margin
STANDING_STATS_BATCHES = 20  # batches of fresh samples that re-estimate the EMA generator's BatchNorm statistics
GRID_COLUMNS = 8
NETWORK_PREFIX = {"resnet": "gan", "dcgan": "dcgan"}  # gan.architecture → registered model names


@dataclass
class GanState:
    step: int = 0  # generator steps taken
    images_seen: int = 0  # real images shown to the discriminator
    train_seconds: float = 0.0
    collapsed_steps: int = 0  # consecutive steps with the discriminator's loss below COLLAPSE_LOSS
    interval: dict = field(default_factory=dict)  # sums of the logged numbers since the last record


@dataclass
class GanLoop:
    ctx: RunContext
    conditioning: Conditioning
    conditions: TrainingConditions
    stepper: GanStepper
    ema: EMA
    guard: NonFiniteGuard
    checkpointer: Checkpointer
    log: MetricsLogger
    fixed: tuple[Tensor, Tensor | None]  # (z, condition) of the sample grids
    state: GanState = field(default_factory=GanState)

    @property
    def cfg(self):
        return self.ctx.cfg


def train_gan(cfg, resume: Path | None = None, progress: bool = True, data: PreparedData | None = None) -> Path:
    """Train per ``cfg`` (a GanConfig), or continue the run at ``resume``; returns the run directory."""
    if resume is not None and (Path(resume) / "metrics.json").is_file():
        raise UserError(f"{resume} finished training already (it has metrics.json): nothing to resume")
    loop = prepare_loop(cfg, progress, data, resume)
    loop.ctx.seed_rank_streams()
    ctx, run = loop.ctx, loop.ctx.run
    if resume:
        loop.state = GanState(**loop.checkpointer.restore_latest()["trainer"])
        loop.log.truncate("step", loop.state.step)
        run.logger.info("resumed at step %d", loop.state.step)
    run.logger.info("training a %s-conditional GAN for %d steps on %s", cfg.gan.conditioning, cfg.train.steps,
                    ctx.record_compute(cfg.train.channels_last))
    steps = loop.log.bar(range(loop.state.step, cfg.train.steps), "gan", total=cfg.train.steps,
                         initial=loop.state.step)
    for _ in steps:
        train_step(loop)
        after_step(loop)
        if any_rank(out_of_time(loop.state.train_seconds, cfg.train.max_minutes), ctx.dist):
            run.logger.info("stopped at step %d: train.max_minutes=%s reached", loop.state.step, cfg.train.max_minutes)
            break
    finish(loop)
    return run.path


def prepare_loop(cfg, progress: bool = True, data: PreparedData | None = None,
                 resume: Path | None = None) -> GanLoop:
    """Everything before the first step: checks, the conditioning classifier, data and conditions,
    networks, then (only now, so that a bad config or conditioning run leaves no directory behind)
    the run directory and the loop's parts."""
    check_config(cfg)
    ctx = RunContext.prepare(cfg, progress, data)
    gan = cfg.gan
    layers = {gan.layer} | ({gan.projected_layer} if gan.projected_head else set())
    conditioning = load_conditioning(gan.conditioning_run, gan.weights, layers, ctx.device, "gan")
    check_same_data(conditioning, ctx.data)
    if cfg.data.image_size is None:
        cfg.data.image_size = ctx.data.image_shape[1]
    conditions = training_conditions(gan.conditioning, gan.layer, conditioning.encoder, ctx.data,
                                     gan.kmeans_clusters, gan.knn_k, "gan")
    generator, critic = build_networks(cfg, ctx.data, conditioning.encoder, conditions)
    ctx.open_run("gan", resume)
    return build_loop(ctx, conditioning, conditions, generator, critic)


def check_config(cfg) -> None:
    check_precision(cfg.train.precision, "train.precision")
    check_policies(list(cfg.gan.diffaugment))
    if cfg.gan.mode_seeking_weight > 0 and cfg.gan.conditioning != "none" and (cfg.data.batch_size or 2) < 2:
        raise UserError("gan.mode_seeking_weight > 0 compares pairs of images: set data.batch_size ≥ 2")
    if cfg.gan.conditioning == "none" and cfg.gan.guidance_weight > 0:
        raise UserError("gan.guidance_weight > 0 needs a condition to guide towards: use gan.conditioning=class "
                        "or embedding, or set gan.guidance_weight=0")


# ---- networks and the loop's parts ------------------------------------------------------------
def build_networks(cfg, data: PreparedData, encoder: FrozenEncoder,
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
    log = MetricsLogger(run, ctx.is_main, cfg.train.tensorboard, ctx.progress)
    guard = NonFiniteGuard("gan", cfg.train.skip_bad_batches, run.logger, ctx.dist)
    fixed = fixed_grid_inputs(cfg.gan.conditioning, conditions, generator.latent_dim, cfg.run.seed + 1, GRID_COLUMNS)
    return GanLoop(ctx, conditioning, conditions, stepper, ema, guard, checkpointer, log, fixed)


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
    loop.ema.decay = min(loop.cfg.train.ema_decay, (1 + state.step) / (10 + state.step))
    loop.ema.update(stepper.generator)
    state.step += 1
    state.train_seconds += time.perf_counter() - started
    accumulate(state.interval, {**d_record, **g_record})
    d_loss = mean_across_ranks({"d_loss": float(d_record["d_loss"].detach())}, loop.ctx.dist)["d_loss"]
    state.collapsed_steps = state.collapsed_steps + 1 if d_loss < COLLAPSE_LOSS else 0


def _optimizer_step(loop: GanLoop, optimizer: torch.optim.Optimizer, loss: Tensor, parameters) -> None:
    """The step, unless the guard finds the loss (or, outside fp16, a gradient) non-finite."""
    scaler = loop.stepper.scaler
    scaler.unscale(optimizer)
    scaler.finish_step(optimizer, loop.guard.batch_is_usable(loss, scaler.guarded(parameters), loop.state.step, 0))


def after_step(loop: GanLoop) -> None:
    """Metrics, sample grid, collapse check and checkpoint, each at its interval."""
    cfg, state = loop.cfg, loop.state
    if state.step % cfg.train.log_every == 0 or state.step == cfg.train.steps:
        _log_interval(loop)
    if state.step % cfg.train.sample_every == 0:
        save_grid(loop, f"step-{state.step:06d}.png")
    if cfg.train.collapse_steps and state.collapsed_steps >= cfg.train.collapse_steps:
        raise TrainingDiverged(f"gan training stopped at step {state.step}: the discriminator's loss has stayed "
                               f"below {COLLAPSE_LOSS} for {state.collapsed_steps} steps (it tells every real image "
                               f"from every generated one, so the generator learns nothing more); the last good "
                               f"checkpoint is kept — try more DiffAugment, a lower train.lr_d or a smaller "
                               f"gan.d_width")
    if state.step % cfg.train.checkpoint_every == 0 and state.collapsed_steps == 0:  # every rank: see Checkpointer
        loop.checkpointer.save(state.step, trainer=asdict(state))  # never a state in mid-collapse


def _log_interval(loop: GanLoop) -> None:
    state = loop.state
    means = mean_across_ranks(interval_means(state.interval), loop.ctx.dist)  # every rank calls this together
    if not means:
        return
    record = {"step": state.step, **means,
              "images_seen": state.images_seen, "train_seconds": state.train_seconds,
              "images_per_s": state.images_seen / max(state.train_seconds, 1e-9)}
    state.interval = {}
    loop.log.log(record, state.step, f"step {state.step}: d_loss {record['d_loss']:.3f} g_loss "
                                     f"{record['g_loss']:.3f} | {record['images_per_s']:.0f} img/s")


@torch.no_grad()
def save_grid(loop: GanLoop, name: str) -> Path | None:
    """A grid of the EMA generator's images from the fixed z and conditions (run directory and TensorBoard)."""
    if not loop.ctx.is_main:
        return None
    z, condition = loop.fixed
    images = generate(_as_generator_run(loop), z, condition)
    path = save_image_grid(images, loop.ctx.run.file("grids") / name, GRID_COLUMNS)
    loop.log.image("samples", path, loop.state.step)
    return path


def _as_generator_run(loop: GanLoop, shard: bool = False) -> GeneratorRun:
    """The EMA generator as a GeneratorRun, so that the stage samples with the code `visrep sample` uses;
    ``shard``: every rank generates its share of each request (all ranks must then ask together)."""
    return GeneratorRun(loop.ctx.run.path, loop.cfg, loop.ema.model.eval(), list(loop.ctx.data.class_names),
                        loop.ctx.device, loop.conditioning.encoder, loop.conditions.bank,
                        dist=loop.ctx.dist if shard else DistInfo())


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
    """Weights, the self-contained sampling files, the final samples, generator.json, metrics.json (last).

    Under DDP rank 0 re-estimates the statistics and hands them to every rank; the final samples are
    then generated by all ranks (each its share) and written by rank 0."""
    run, state, cfg = loop.ctx.run, loop.state, loop.cfg
    _log_interval(loop)
    if loop.ctx.is_main:
        refresh_batch_statistics(loop)
    broadcast_buffers(loop.ema.model, loop.ctx.dist)
    samples = final_sample_set(_as_generator_run(loop, shard=True), loop.ctx.data.splits["train"],
                               cfg.gan.final_samples, cfg.run.seed + 3)
    if not loop.ctx.is_main:
        return
    save_weights(loop.ema.model, run.file(GENERATOR_WEIGHTS), loop.stepper.generator.config)
    save_sampling_files(run, loop.conditioning, loop.conditions.bank)
    save_grid(loop, "final.png")
    write_npz(run.file(SAMPLES_FILE), samples)
    run.write_json(GENERATOR_MANIFEST, generator_manifest(loop, samples))
    run.write_json("metrics.json", {"stage": "gan", "steps": state.step, "images_seen": state.images_seen,
                                    "train_seconds": state.train_seconds, "conditioning": cfg.gan.conditioning,
                                    "final_samples": len(samples.images)})
    loop.log.close()
    run.logger.info("%d steps, %d real images shown, %.1f s of training; %d samples in %s", state.step,
                    state.images_seen, state.train_seconds, len(samples.images), SAMPLES_FILE)


def generator_manifest(loop: GanLoop, samples: SampleSet) -> dict:
    """generator.json: every network that shaped the samples (the independence contract)."""
    gan, conditioning = loop.cfg.gan, loop.conditioning
    uses = [name for name, used in (("condition", gan.conditioning == "embedding"),
                                    ("projected discriminator head", gan.projected_head),
                                    ("guidance loss", gan.guidance_weight > 0)) if used]
    return {HASH_KEY: declared_hashes(conditioning, uses, gan.conditioning), "samples": SAMPLES_FILE, "conditioning_run": str(conditioning.run),
            "stage": "gan", "conditioning": gan.conditioning, "classifier_used_for": uses,
            "description": f"GAN, {gan.conditioning}-conditional, {loop.state.step} steps: {samples.description}"}
