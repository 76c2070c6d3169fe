"""The noise schedule and the samplers, all diffusers schedulers built from one configuration.

Training draws t uniformly from 0..T−1 and noises as the DDPM scheduler's ``add_noise`` does, with
the v target of its ``get_velocity`` (:mod:`visrep.diffusion.loss` computes both from ᾱ; a test
checks they agree with diffusers'). Sampling builds a fresh scheduler per call (DPM-Solver++ keeps
the previous outputs as state) with timesteps spaced ``trailing``, so that the first step starts
from the schedule's last, noisiest timestep (Lin et al. 2024: "leading" spacing never sees pure noise).
"""

from __future__ import annotations

from torch import Tensor

from visrep.errors import UserError

TRAIN_TIMESTEPS = 1000
SOLVERS = ("ddpm", "ddim", "dpm++")
_COMMON = {"num_train_timesteps": TRAIN_TIMESTEPS, "beta_schedule": "squaredcos_cap_v2",
           "prediction_type": "v_prediction"}


def training_scheduler():
    """The DDPM scheduler whose ``add_noise`` and ``get_velocity`` define the training targets."""
    from diffusers import DDPMScheduler  # imported here: diffusers takes seconds to import

    return DDPMScheduler(**_COMMON, clip_sample=False)


def alphas_cumprod() -> Tensor:
    """ᾱ_t for t = 0..T−1 (T,) float32: the share of signal variance left at each timestep."""
    return training_scheduler().alphas_cumprod.float()


def check_solver(name: str, steps: int, keys: tuple[str, str] = ("--solver", "--steps")) -> None:
    """UserError for an unknown solver or a step count outside 1..T, naming ``keys`` (CLI flags or config keys)."""
    if name not in SOLVERS:
        raise UserError(f"unknown solver '{name}' ({keys[0]}): choose {', '.join(SOLVERS)}")
    if not 1 <= steps <= TRAIN_TIMESTEPS:
        raise UserError(f"{keys[1]} must be between 1 and {TRAIN_TIMESTEPS} (got {steps})")


def sampling_scheduler(name: str, steps: int):
    """A fresh diffusers scheduler of ``name`` with ``steps`` timesteps set; x₀ predictions clipped to [-1, 1]."""
    check_solver(name, steps)
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if name == "ddpm":
        scheduler = DDPMScheduler(**_COMMON, clip_sample=True, timestep_spacing="trailing")
    elif name == "ddim":
        scheduler = DDIMScheduler(**_COMMON, clip_sample=True, set_alpha_to_one=False, timestep_spacing="trailing")
    else:  # second-order multistep DPM-Solver++ (Lu et al. 2022), data prediction thresholded to [-1, 1]
        scheduler = DPMSolverMultistepScheduler(**_COMMON, algorithm_type="dpmsolver++", solver_order=2,
                                                thresholding=True, sample_max_value=1.0,
                                                timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    return scheduler
