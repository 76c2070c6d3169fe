"""A trained denoiser used as a generator: ``generator(z, condition)`` → images, like the GAN's.

``z`` (N, C·S·S) is the starting noise x_T, flattened so that the sampling code shared with the GAN
(:mod:`visrep.generate.sample`) draws it the same way. DDIM (η = 0) and DPM-Solver++ are
deterministic given x_T; DDPM also adds noise at every step, drawn from a generator per image seeded
by that image's own x_T, so a seeded call gives the same images whatever ``--n`` and however the
call is split into micro-batches (64 images on a CPU, 1,024 on CUDA).

The denoiser runs under the project's autocast (bf16 where fast); the scheduler's arithmetic stays
in float32.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from visrep.config import DiffusionOptions
from visrep.diffusion.classifier_guidance import guide_gradient, guided_velocity
from visrep.diffusion.guidance import guided_prediction
from visrep.diffusion.schedule import TRAIN_TIMESTEPS, check_solver, sampling_scheduler
from visrep.errors import UserError
from visrep.inference.autocast import autocast_context


# images per denoiser call on a CPU (×2 with guidance): small batches stay in the caches, large ones spill out
# of them and run at half the rate (benchmarks/notes/measurements-behind-code-choices.md)
CPU_BATCH = 64
CUDA_BATCH = 1024


@dataclass
class SamplingOptions:
    """How a diffusion run samples: its config's diffusion section (:meth:`from_config`), with any of
    ``visrep sample``'s overrides; the defaults live in one place, visrep.config.DiffusionOptions."""
    solver: str  # ddpm | ddim | dpm++
    steps: int
    guidance: float
    precision: str
    classifier_scale: float  # classifier guidance by the noise-aware guide (0 = off)
    # classifier-free guidance only at timesteps t with low·T ≤ t ≤ high·T; elsewhere the conditional branch
    # alone, at half the cost (Kynkäänniemi et al. 2024: guidance at the noisiest steps costs diversity)
    guidance_interval: tuple[float, float]

    @classmethod
    def from_config(cls, options: DiffusionOptions, precision: str, **overrides) -> "SamplingOptions":
        """A run's sampling (``options``: its diffusion section, ``precision``: its train.precision), with
        ``overrides`` (solver, steps, guidance, classifier_scale, guidance_interval) in their place."""
        chosen = {"solver": options.solver, "steps": options.sample_steps, "guidance": options.guidance,
                  "precision": precision, "classifier_scale": 0.0,
                  "guidance_interval": tuple(options.guidance_interval), **overrides}
        chosen["guidance_interval"] = tuple(chosen["guidance_interval"])
        return cls(**chosen)

    def check(self, trained_unconditional: bool) -> None:
        check_solver(self.solver, self.steps)
        if self.guidance < 0:
            raise UserError(f"--guidance must be ≥ 0 (got {self.guidance})")
        if self.classifier_scale < 0:
            raise UserError(f"--classifier-scale must be ≥ 0 (got {self.classifier_scale})")
        low, high = self.guidance_interval
        if not 0 <= low <= high <= 1:
            raise UserError(f"the guidance interval must satisfy 0 ≤ low ≤ high ≤ 1 (got {low}, {high})")
        if self.guidance != 1.0 and not trained_unconditional:
            raise UserError(f"--guidance {self.guidance} needs an unconditional branch, and this model was trained "
                            "without one (diffusion.condition_dropout=0, or no condition): use --guidance 1")


class DiffusionGenerator(nn.Module):
    """The EMA denoiser + sampling options, callable as ``(z (N, C·S·S), condition) → [-1, 1] images``.

    With a ``guide`` (the noise-aware classifier) and ``options.classifier_scale`` > 0, class-conditional
    sampling is also pushed along the guide's gradient (classifier guidance), on top of any
    classifier-free guidance."""

    def __init__(self, denoiser: nn.Module, options: SamplingOptions, trained_unconditional: bool,
                 guide: nn.Module | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.options = options
        self.trained_unconditional = trained_unconditional
        self.guide = guide

    @property
    def mode(self) -> str:
        return self.denoiser.mode

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.denoiser.image_shape)

    @property
    def latent_dim(self) -> int:
        channels, size, _ = self.image_shape
        return channels * size * size

    @torch.no_grad()
    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        self.options.check(self.trained_unconditional or self.mode == "none")
        device = next(self.denoiser.parameters()).device
        batch = CUDA_BATCH if device.type == "cuda" else CPU_BATCH
        parts = [self._sample(z[start:start + batch], None if condition is None else condition[start:start + batch],
                              device) for start in range(0, len(z), batch)]
        return torch.cat(parts) if parts else torch.zeros(0, *self.image_shape, device=device)

    def _sample(self, z: Tensor, condition: Tensor | None, device: torch.device) -> Tensor:
        options = self.options
        scheduler = sampling_scheduler(options.solver, options.steps)
        x = z.view(len(z), *self.image_shape).to(device).float() * scheduler.init_noise_sigma
        condition = None if condition is None or self.mode == "none" else condition.to(device)
        noise = [torch.Generator().manual_seed(_seed_of(row)) for row in z]  # DDPM's per-step noise, per image
        for t in scheduler.timesteps:
            timesteps = torch.full((len(x),), int(t), device=device, dtype=torch.int64)
            model_input = scheduler.scale_model_input(x, t)
            low, high = options.guidance_interval
            scale = options.guidance if low * TRAIN_TIMESTEPS <= int(t) <= high * TRAIN_TIMESTEPS else 1.0
            with autocast_context(device, options.precision):
                prediction = guided_prediction(self.denoiser, model_input, timesteps, condition, scale).float()
            if self.guide is not None and options.classifier_scale > 0 and condition is not None:
                with autocast_context(device, options.precision):
                    gradient = guide_gradient(self.guide, model_input, timesteps, condition)
                prediction = guided_velocity(prediction, gradient, scheduler.alphas_cumprod[int(t)],
                                             options.classifier_scale)
            x = scheduler.step(prediction, t, x, generator=noise, **_step_options(options.solver)).prev_sample
        return x.clamp(-1, 1)


def _step_options(solver: str) -> dict:
    """DDIM re-derives ε̂ from the clipped x̂₀ (``use_clipped_model_output``): by default diffusers clips x̂₀ to
    [−1, 1] but steps on with the unclipped ε̂, and that mismatch grows with the steps (MNIST val, 50 steps:
    GAN-test 0.75 and FID 4.25 without, 0.9985 and 0.30 with; notes/2026-11-30-diffusion.md)."""
    return {"use_clipped_model_output": True} if solver == "ddim" else {}


def _seed_of(z: Tensor) -> int:
    """A 63-bit seed from the bytes of one image's ``z``: the same starting noise gives the same DDPM noise."""
    digest = hashlib.blake2b(z.detach().float().cpu().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
