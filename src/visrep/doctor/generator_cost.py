"""The generators' cost: a few of each recipe's own training steps, timed here, times its step count.

A GAN's step (discriminator on real and fake, generator with guidance through the frozen
classifier), a diffusion model's step (U-Net forward and backward, REPA's classifier features) and
a noise-aware guide's step are built from the same parts the training loops use, at the recipe's
batch, image size, width and precision, on random tensors; the median of a few steps after a
warm-up one is the cost per step. Training time is that times ``train.steps``, capped at
``train.max_minutes``; a diffusion model's final samples and progress grids add their U-Net
forwards (two per guided step). Reading the data, checkpoints and the GAN's closing statistics are
left out. The conditioning classifier is the pipeline's classifier recipe, the conditioning run's
saved config when that run is here, else the default classifier (said in the note).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from visrep.data.transforms import Normalization
from visrep.hardware.precision import resolve_precision
from visrep.inference.autocast import autocast_context
from visrep.inference.encoder import FrozenEncoder
from visrep.models import create_model

from visrep.doctor.classifier_cost import class_count

TIMED_STEPS = 3  # after one warm-up step (kernel selection); the median is the cost per step


def estimate_generator(stage: str, cfg, classifier_cfg=None) -> dict:
    """{"stage", "steps", "step_seconds", "train_seconds", "sampling_seconds", "seconds", "note"} of a
    gan | diffusion | guide config; ``classifier_cfg`` the conditioning classifier's config, if known."""
    if cfg.data.image_size is None:
        return {"stage": stage, "seconds": 0.0, "note": "data.image_size chosen from the data at run time"}
    check_recipe(stage, cfg)
    if cfg.data.batch_size is None and not _fill_batch(cfg.data):
        return {"stage": stage, "seconds": 0.0, "note": "data.batch_size is derived from the data, which is not here"}
    classes, class_note = class_count(cfg.data)
    encoder, encoder_note = _encoder(cfg, stage, classifier_cfg, classes)
    step_seconds = _median_seconds(training_step(stage, cfg, encoder, classes))
    train = cfg.train
    train_seconds = train.steps * step_seconds
    capped = train.max_minutes is not None and train_seconds > 60 * train.max_minutes
    train_seconds = min(train_seconds, 60 * train.max_minutes) if train.max_minutes is not None else train_seconds
    sampling = diffusion_sampling_seconds(cfg, encoder, classes, train_seconds / step_seconds) \
        if stage == "diffusion" else 0.0
    notes = [note for note in (encoder_note, class_note if class_note not in ("counted", "standard") else None) if note]
    return {"stage": stage, "steps": int(train.steps), "step_seconds": step_seconds, "capped": capped,
            "train_seconds": train_seconds, "sampling_seconds": sampling, "seconds": train_seconds + sampling,
            "note": "; ".join(notes)}


def check_recipe(stage: str, cfg) -> None:
    """The checks the stage's own loop makes before training (a UserError names what is wrong)."""
    from visrep.hardware.precision import check_precision

    check_precision(cfg.train.precision, "train.precision")
    if stage == "gan":
        from visrep.training.gan import check_config
    elif stage == "diffusion":
        from visrep.training.diffusion import check_config
    else:
        return
    check_config(cfg)


def _fill_batch(data_cfg) -> bool:
    """An unset batch size as training derives it from the training split; False when the data is not here."""
    from visrep.data.batching import fill_batch_size

    from visrep.doctor.classifier_cost import train_images

    images, _ = train_images(data_cfg)
    if not images:
        return False
    fill_batch_size(data_cfg, images, say=lambda line: None)
    return True


def training_step(stage: str, cfg, encoder: FrozenEncoder, classes: int):
    """A function that runs one training step of the recipe on random tensors (also what benchmarks time)."""
    torch.manual_seed(0)
    return {"gan": _gan_step, "diffusion": _diffusion_step, "guide": _guide_step}[stage](cfg, encoder, classes)


def conditioning_encoder(cfg, stage: str, classifier_cfg, classes: int) -> FrozenEncoder:
    """The frozen classifier the recipe's step runs through (random weights: only its cost matters)."""
    return _encoder(cfg, stage, classifier_cfg, classes)[0]


def _median_seconds(step) -> float:
    step()  # warm-up: kernel selection, first allocations
    durations = []
    for _ in range(TIMED_STEPS):
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return sorted(durations)[len(durations) // 2]


def _shape(cfg) -> tuple[int, int, int]:
    return int(cfg.data.channels or 3), int(cfg.data.image_size), int(cfg.data.image_size)


def _precision(cfg) -> str:
    return resolve_precision(cfg.train.precision, "cpu", "train.precision", training=True).precision


def _encoder(cfg, stage: str, classifier_cfg, classes: int) -> tuple[FrozenEncoder, str]:
    """The frozen conditioning classifier, built from its config (random weights: only its cost matters)."""
    note = ""
    if classifier_cfg is None:
        classifier_cfg, note = _conditioning_run_config(cfg, stage)
    channels, size, _ = _shape(cfg)
    options = OmegaConf.to_container(classifier_cfg.model.options, resolve=True)
    model = create_model(classifier_cfg.model.name, classes, channels, size, **options)
    half = Normalization(tuple([0.5] * channels), tuple([0.5] * channels))
    return FrozenEncoder(model, half, precision=_precision(cfg)), note


def _conditioning_run_config(cfg, stage: str):
    """The conditioning run's saved classifier config when it is here, else the default classifier's."""
    from pathlib import Path

    from visrep.config import ClassifierConfig, load_config
    from visrep.runs import load_run_config

    run = getattr(cfg, stage).conditioning_run
    if run and (Path(str(run)).expanduser() / "config.yaml").is_file():
        return load_run_config(Path(str(run)).expanduser(), ClassifierConfig), ""
    default = load_config(None, [], ClassifierConfig)
    return default, f"classifier timed as the default {default.model.name}: the conditioning run is not here"


def _conditions(mode: str, encoder: FrozenEncoder, layer: str, classes: int, batch: int):
    """(the stand-in for TrainingConditions, a batch of conditions) for a conditioning mode."""
    if mode == "embedding":
        channels, size, _ = encoder.image_shape
        probe = torch.zeros(1, channels, size, size, dtype=torch.uint8)
        with torch.no_grad():
            dim = encoder.forward_intermediates(probe, [layer])[1][layer].shape[1]
        embeddings = torch.nn.functional.normalize(torch.randn(batch, dim), dim=1)
        return SimpleNamespace(embeddings=embeddings), embeddings
    labels = torch.randint(classes, (batch,)) if mode == "class" else None
    return SimpleNamespace(embeddings=None), labels


def _gan_step(cfg, encoder: FrozenEncoder, classes: int):
    from visrep.training.gan import build_networks
    from visrep.training.gan_steps import GanStepper, discriminator_backward, generator_backward

    batch, shape = int(cfg.data.batch_size), _shape(cfg)
    conditions, condition = _conditions(cfg.gan.conditioning, encoder, cfg.gan.layer, classes, batch)
    data = SimpleNamespace(image_shape=shape, class_names=[str(i) for i in range(classes)])
    generator, critic = build_networks(cfg, data, encoder, conditions)
    if cfg.train.channels_last:
        generator, critic = generator.to(memory_format=torch.channels_last), critic.to(memory_format=torch.channels_last)
    opt_g, opt_d = torch.optim.Adam(generator.parameters()), torch.optim.Adam(critic.parameters())
    stepper = GanStepper(generator, critic, opt_g, opt_d, encoder, cfg.gan.conditioning, cfg.gan.layer,
                         tuple(cfg.gan.diffaugment), cfg.gan.projected_weight, cfg.gan.guidance_weight,
                         _precision(cfg), cfg.train.channels_last, cfg.gan.mode_seeking_weight)
    real = torch.rand(batch, *shape) * 2 - 1

    def step():
        for _ in range(cfg.train.d_steps):
            discriminator_backward(stepper, real, condition)
            opt_d.step()
        generator_backward(stepper, condition, batch, real.device)
        opt_g.step()
    return step


def _denoiser(cfg, encoder: FrozenEncoder, classes: int):
    from visrep.training.diffusion import DenoiserWithProjector, build_denoiser, build_projector

    shape = _shape(cfg)
    batch = int(cfg.data.batch_size)
    conditions, condition = _conditions(cfg.diffusion.conditioning, encoder, cfg.diffusion.layer, classes, batch)
    data = SimpleNamespace(image_shape=shape, class_names=[str(i) for i in range(classes)])
    model = build_denoiser(cfg, data, conditions)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    projector = build_projector(cfg, model, SimpleNamespace(encoder=encoder), data) if cfg.diffusion.repa_weight > 0 \
        else None
    return DenoiserWithProjector(model, projector), condition


def _diffusion_step(cfg, encoder: FrozenEncoder, classes: int):
    from visrep.diffusion.loss import noise_batch, weighted_mse
    from visrep.diffusion.schedule import alphas_cumprod

    trained, condition = _denoiser(cfg, encoder, classes)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-4)
    schedule, precision = alphas_cumprod(), _precision(cfg)
    raw = torch.randint(0, 256, (int(cfg.data.batch_size), *_shape(cfg)), dtype=torch.uint8)
    repa = cfg.diffusion.repa_weight > 0

    def step():
        batch = noise_batch(raw.float() / 127.5 - 1, schedule, cfg.diffusion.min_snr_gamma)
        with autocast_context(torch.device("cpu"), precision):
            prediction, projected = trained(batch.noisy, batch.timesteps, condition, None)
            loss = weighted_mse(prediction, batch)
            if repa:  # the classifier's map of the clean images, the target REPA aligns the middle map with
                target = encoder.forward_intermediates(raw, [cfg.diffusion.repa_layer])[1][cfg.diffusion.repa_layer]
                loss = loss + (projected.float().mean() - target.float().mean()) ** 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
    return step


def diffusion_sampling_seconds(cfg, encoder: FrozenEncoder, classes: int, steps_run: float) -> float:
    """The U-Net forwards of the final samples (the recipe's sampler steps) and of the progress grids (the
    loop's GRID_STEPS), two per step inside the guidance interval."""
    from visrep.training.diffusion import GRID_COLUMNS, GRID_STEPS

    options = cfg.diffusion
    trained, condition = _denoiser(cfg, encoder, classes)
    model, precision = trained.model.eval(), _precision(cfg)
    batch = int(cfg.data.batch_size)
    noisy, timesteps = torch.randn(batch, *_shape(cfg)), torch.full((batch,), 500)

    def forward():
        with torch.no_grad(), autocast_context(torch.device("cpu"), precision):
            model(noisy, timesteps, condition, None)
    per_image = _median_seconds(forward) / batch
    low, high = options.guidance_interval
    guided = (high - low) if options.conditioning != "none" and options.guidance != 1 else 0.0
    grids = int(steps_run // cfg.train.sample_every) + 1
    rows = min(10, classes) if options.conditioning == "class" else GRID_COLUMNS  # as fixed_grid_inputs draws them
    forwards = options.final_samples * options.sample_steps + grids * rows * GRID_COLUMNS * GRID_STEPS
    return forwards * (1 + guided) * per_image


def _guide_step(cfg, encoder: FrozenEncoder, classes: int):
    from visrep.diffusion.loss import noise_batch
    from visrep.diffusion.schedule import alphas_cumprod
    from visrep.training.guide import build_guide

    guide = build_guide(encoder.classifier, {"mean": [0.5] * encoder.image_shape[0],
                                             "std": [0.5] * encoder.image_shape[0]}, cfg.guide.time_dim).train()
    optimizer = torch.optim.AdamW(guide.parameters(), lr=1e-4)
    batch, schedule, precision = int(cfg.data.batch_size), alphas_cumprod(), _precision(cfg)
    images, labels = torch.rand(batch, *_shape(cfg)) * 2 - 1, torch.randint(classes, (batch,))

    def step():
        noised = noise_batch(images, schedule, 0.0)
        with autocast_context(torch.device("cpu"), precision):
            logits = guide(noised.noisy, noised.timesteps)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step
