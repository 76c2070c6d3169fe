"""Which stages are done: a marker in each finished stage's folder, keyed by its resolved config.

A stage is skipped when its folder holds ``pipeline-stage.json`` with the same key. The key hashes the
stage's config (without the folder paths the pipeline sets, so a moved pipeline folder keeps its
stages) and the keys of the stages it reads, so a changed classifier re-runs everything built on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from visrep.runs import atomic_write_text

MARKER = "pipeline-stage.json"
# set by the pipeline to tie stages together; the upstream keys stand for them in the key
PLACED_KEYS = {"run": ("name", "root", "overwrite"), "embed": ("out", "overwrite"),
               "gan": ("conditioning_run",), "diffusion": ("conditioning_run",),
               "generative": ("evaluator", "fake", "in_loop")}


def stage_key(stage: str, cfg, upstream: dict[str, str]) -> str:
    """sha256 over the stage's config (placed paths removed) and the keys of the stages it reads."""
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    for section, keys in PLACED_KEYS.items():
        for key in keys:
            if isinstance(plain.get(section), dict):
                plain[section].pop(key, None)
    text = json.dumps({"stage": stage, "config": plain, "upstream": dict(sorted(upstream.items()))}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_marker(folder: Path) -> dict | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged marker: the stage counts as unfinished


def is_done(folder: Path, key: str) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker.get("key") == key


def write_marker(folder: Path, stage: str, key: str, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "key": key, "seconds": round(seconds, 2),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(folder / MARKER, json.dumps(record, indent=1, sort_keys=True) + "\n")


def set_aside(folder: Path) -> Path:
    """Move a finished stage made with another config out of the way (kept, never deleted): returns where."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, suffix = folder.with_name(f"{folder.name}.replaced-{stamp}"), 1
    while target.exists():
        suffix += 1
        target = folder.with_name(f"{folder.name}.replaced-{stamp}-{suffix}")
    shutil.move(str(folder), str(target))
    return target


def stage_seconds(folder: Path) -> float | None:
    marker = read_marker(folder)
    return None if marker is None else float(marker["seconds"])
