"""Shared fixtures: tiny image folders generated on the fly (no downloads, no shipped files)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
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


# ---- kill-and-resume helpers (classifier and evaluator training) ------------------------------

def start_visrep(cwd: Path, *argv: str) -> subprocess.Popen:
    """``python -m visrep ARGV`` in the background, with a private decode cache under ``cwd``."""
    return subprocess.Popen([sys.executable, "-m", "visrep", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "VISREP_CACHE": str(cwd / "cache")})


def sigkill_at_random_step(process: subprocess.Popen, checkpoints: Path, epochs: int,
                           timeout: float = 240, every: int = 1) -> str:
    """SIGKILL ``process`` at a random moment of a random epoch, not at a checkpoint boundary.

    Picks an epoch k in 2..epochs-2, waits for its checkpoint ``state-0000k.pt``, then sleeps a
    random fraction (0-0.9) of the previous epoch's duration, so the kill lands somewhere inside
    epoch k+1. Checks the process really died mid-run; returns where it was killed (for messages).
    Step-based loops checkpoint every ``every`` steps: their k-th checkpoint is ``state-<k·every>.pt``."""
    rng = random.Random()  # a different kill point each run; the returned text says which one failed
    epoch, fraction = rng.randint(2, epochs - 2), rng.uniform(0.0, 0.9)
    appeared = {}
    deadline = time.time() + timeout
    while epoch not in appeared and time.time() < deadline and process.poll() is None:
        for k in (epoch - 1, epoch):
            if k not in appeared and (checkpoints / f"state-{k * every:05d}.pt").exists():
                appeared[k] = time.time()
        time.sleep(0.005)
    # both checkpoints seen: the gap between them is one epoch; otherwise (timeout, early exit) kill now
    epoch_seconds = appeared[epoch] - appeared[epoch - 1] if len(appeared) == 2 else 0.0
    time.sleep(fraction * epoch_seconds)
    process.send_signal(signal.SIGKILL)
    where = f"killed {fraction:.2f} of an epoch ({fraction * epoch_seconds:.2f} s) after checkpoint {epoch}"
    assert process.wait(timeout=60) == -signal.SIGKILL, f"the run finished before it could be killed ({where})"
    return where


def comparable_history(run: Path) -> list[dict]:
    """metrics.jsonl without timings, which differ between any two runs."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in epoch.items() if "second" not in k and k != "images_per_s"} for epoch in history]


# ---- shared tiny trained runs (trained once per test session) ---------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml trained once (seconds); tests may evaluate it but must not change its weights."""
    from visrep.config import ClassifierConfig, load_config
    from visrep.training.classifier import train_classifier

    root = tmp_path_factory.mktemp("shared-runs")
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={root}", "run.name=tiny",
                                                       f"data.cache_dir={root / 'cache'}"], ClassifierConfig)
    return train_classifier(cfg, progress=False)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory, worker_id) -> Path:
    """configs/pipeline_tiny.yaml run once per test session (~15 s): every stage, then the report. The first
    xdist worker to ask builds it under a file lock in the session's shared folder; the others then find every
    stage done and only check it (well under a second). Tests read it and write only new runs of their own
    (a test that changes a pipeline changes a private copy)."""
    from filelock import FileLock

    from visrep.pipeline import run_pipeline

    session = tmp_path_factory.getbasetemp()
    shared = session if worker_id == "master" else session.parent  # pytest-N/, shared by pytest-N/popen-gw*
    with FileLock(str(shared / "tiny-pipeline.lock")):
        return run_pipeline(REPO / "configs" / "pipeline_tiny.yaml", [f"run.root={shared / 'tiny-pipeline-runs'}"],
                            progress=False)
