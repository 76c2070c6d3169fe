"""Shared fixtures: tiny image folders generated on the fly (no downloads, no shipped files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_image(path: Path, rng: np.random.Generator, size=(12, 12), mode="RGB", base: int = 0) -> Path:
    """A random image whose mean brightness depends on ``base`` (so classes differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    channels = {"RGB": 3, "RGBA": 4}.get(mode, 1)
    pixels = np.clip(rng.normal(base, 30, (height, width, channels)), 0, 255).astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        Image.fromarray(pixels, mode=mode).save(path)
    elif mode == "I;16":
        Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(path)
    elif mode == "P":
        Image.fromarray(np.repeat(pixels, 3, axis=2)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    else:
        Image.fromarray(pixels[..., 0], mode="L").save(path)
    return path


def make_folder(root: Path, classes=("cat", "dog", "owl"), per_class: int = 10, seed: int = 0,
                size=(12, 12), mode="RGB", ext=".png") -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i:03d}{ext}", rng, size=size, mode=mode, base=60 + 60 * label)
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "images")


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def data_cfg(cache_dir):
    """Factory: a validated DataConfig with a private cache directory."""
    from visrep.config import load_config

    def build(source, **overrides):
        items = [f"data.source={source}", f"data.cache_dir={cache_dir}"]
        items += [f"data.{key}={value}" for key, value in overrides.items()]
        return load_config(overrides=items).data

    return build
