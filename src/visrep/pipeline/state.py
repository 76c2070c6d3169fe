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
# keys left out of the hash: set by the pipeline to tie stages together (the upstream keys stand for
# them), or settings of the machine that do not change what a stage computes
PLACED_KEYS = {"run": ("name", "root", "overwrite"), "embed": ("out", "overwrite", "device"),
               "gan": ("conditioning_run",), "diffusion": ("conditioning_run",),
               "generative": ("evaluator", "fake", "in_loop", "threads", "device"),
               "train": ("threads", "device"), "data": ("cache_dir", "in_memory", "memory_limit_gb")}


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
    return _read_record(folder / MARKER, ("key", "seconds"))


def _read_record(path: Path, required: tuple[str, ...]) -> dict | None:
    """A marker's JSON object, or None when it is missing or damaged (the stage then counts as unfinished)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and all(key in record for key in required) else None


def running_file(root: Path, stage: str) -> Path:
    """Beside the stage folder (the stage's own code creates that folder and refuses an existing one)."""
    return root / f".{stage}.running.json"


def mark_running(root: Path, stage: str, key: str) -> None:
    """Say a stage of this key is being made in <root>/<stage>: a folder left by a kill is then known as ours."""
    atomic_write_text(running_file(root, stage), json.dumps({"stage": stage, "key": key}) + "\n")


def running_key(root: Path, stage: str) -> str | None:
    record = _read_record(running_file(root, stage), ("key",))
    return None if record is None else str(record["key"])


def is_done(folder: Path, key: str) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker.get("key") == key


def write_marker(folder: Path, stage: str, key: str, seconds: float) -> None:
    """The stage is done: its marker in its folder, and the running note beside it removed."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "key": key, "seconds": round(seconds, 2),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(folder / MARKER, json.dumps(record, indent=1, sort_keys=True) + "\n")
    running_file(folder.parent, stage).unlink(missing_ok=True)


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
