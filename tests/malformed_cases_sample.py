"""Malformed input to `visrep sample`, in the style of tests/malformed_cases.py: each case sets up under
``tmp`` (a copy of a tiny generator run: tests/malformed_builds.py) and returns CLI argv.

Every case must end with exit code 2 (user error), a single ``error:`` line, no traceback, no change
to anything saved before and nothing written outside ``tmp``. Exported as SAMPLE_CASES; SAMPLE_MUST_NAME
holds what each case's one line must contain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from malformed_builds import copy_run


def _gan_run(tmp: Path, conditioning: str = "class") -> Path:
    """A finished tiny GAN (any finished run will do), copied from the one trained once per process."""
    return copy_run("gan-embedding" if conditioning == "embedding" else "gan", tmp, "gan")


def _diffusion_run(tmp: Path) -> Path:
    """A finished tiny class-conditional diffusion model, trained with an unconditional branch (so that any
    guidance scale is allowed)."""
    return copy_run("diffusion", tmp)


def _image(path: Path) -> Path:
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8)).save(path)
    return path


def sample_n_too_large_for_the_disk(tmp):
    # 10^15 images of 8×8 bytes: 64 PB, on no disk (10^9, 64 GB, would fit a large one)
    return ["sample", str(_gan_run(tmp)), "--n", str(10**15), "--out", str(tmp / "samples")]


def sample_guidance_nan(tmp):
    return ["sample", str(_diffusion_run(tmp)), "--guidance", "nan", "--out", str(tmp / "samples")]


def sample_guidance_inf(tmp):
    return ["sample", str(_diffusion_run(tmp)), "--guidance", "inf", "--out", str(tmp / "samples")]


def sample_classifier_scale_nan(tmp):
    return ["sample", str(_diffusion_run(tmp)), "--classifier-scale", "nan", "--out", str(tmp / "samples")]


def sample_guidance_interval_nan(tmp):
    return ["sample", str(_diffusion_run(tmp)), "--guidance-interval", "nan", "1", "--out", str(tmp / "samples")]


def sample_interpolation_of_one_step(tmp):
    ends = [str(_image(tmp / name)) for name in ("a.png", "b.png")]
    return ["sample", str(_gan_run(tmp, "embedding")), "--interpolate", *ends, "--n", "1", "--out", str(tmp / "walk")]


def sample_like_a_folder(tmp):
    (tmp / "photos").mkdir()
    _image(tmp / "photos" / "a.png")
    return ["sample", str(_gan_run(tmp, "embedding")), "--like", str(tmp / "photos"), "--out", str(tmp / "like")]


SAMPLE_CASES = [sample_n_too_large_for_the_disk, sample_guidance_nan, sample_guidance_inf, sample_classifier_scale_nan,
                sample_guidance_interval_nan, sample_interpolation_of_one_step, sample_like_a_folder]

# What each case's one line must say (the option at fault, or the quantity that does not fit).
SAMPLE_MUST_NAME = {
    sample_n_too_large_for_the_disk: "GiB is free",
    sample_guidance_nan: "--guidance must be a finite number",
    sample_guidance_inf: "--guidance must be a finite number",
    sample_classifier_scale_nan: "--classifier-scale must be a finite number",
    sample_guidance_interval_nan: "--guidance-interval must be a finite number",
    sample_interpolation_of_one_step: "--n ≥ 2",
    sample_like_a_folder: "is a folder, not an image file",
}
