"""Which stages are done: a marker in each finished stage's folder, keyed by its resolved config.

A stage is skipped when its folder holds ``pipeline-stage.json`` with the same key, its outputs are
as it left them, and the stages it reads are the ones it was built from. The key hashes the stage's
config (without the folder paths the pipeline sets, so a moved pipeline folder keeps its stages) and
the keys of the stages it reads, so a changed classifier re-runs everything built on it. The marker
also records the SHA-256 of every file the stage produced and one hash of each upstream stage's
outputs: a changed or missing output (a damaged disk, a half-copied folder) makes the stage
unfinished, and so does an upstream stage rebuilt since (same config, hence same key, but other
weights). A marker from before outputs were recorded counts as done, as it did then.

The pipeline's folder holds ``pipeline.json`` from the moment the pipeline makes it; a folder with
neither that nor any stage marker or running note was not made by the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from visrep.evaluation.scoring_cache import CACHE_DIR
from visrep.inference.independence import file_sha256
from visrep.pipeline.config import STAGE_TABLE
from visrep.runs import atomic_write_text

MARKER = "pipeline-stage.json"
ROOT_MARKER = "pipeline.json"
# keys left out of the hash: set by the pipeline to tie stages together (the upstream keys stand for
# them: each stage's own in the stage table), or settings of the machine that do not change what a stage computes
COMMON_PLACED = ("run.name", "run.root", "run.overwrite", "train.threads", "train.device", "data.cache_dir",
                 "data.in_memory", "data.memory_limit_gb")


def _placed_keys() -> dict[str, tuple[str, ...]]:
    """section → its keys left out of a stage's hash."""
    keys: dict[str, tuple[str, ...]] = {}
    for key in COMMON_PLACED + tuple(key for spec in STAGE_TABLE.values() for key in spec.placed):
        section, name = key.split(".")
        keys[section] = (*keys.get(section, ()), name)
    return keys


PLACED_KEYS = _placed_keys()
# Top-level files and folders of a stage that later stages write into by design, so not outputs it must
# keep as they were (found by re-running a finished pipeline): every command that opens a run appends to
# its log.txt (the embeddings stage logs into the classifier's), which nothing reads back; and every
# scoring (the generative stage, `visrep evaluate generated`) caches its real side in
# <evaluator>/scoring_cache/, each entry keyed by the evaluator's weights hash and checked when read (an
# unreadable one is a miss), so a change there cannot pass damaged numbers on. A user's own
# `visrep evaluate classifier <stage>` rewrites the stage's eval-<split>/ report folders (with --tta, say):
# reports of the weights, not inputs of any stage, so re-evaluating never forces a rebuild.
NOT_OUTPUTS = ("log.txt", CACHE_DIR)
NOT_OUTPUT_PREFIXES = ("eval-",)


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


def output_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every regular file the stage left in ``folder`` (relative POSIX path → hex), its marker excepted."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        top = name.split("/")[0]
        if (path.is_file() and not path.is_symlink() and name != MARKER and top not in NOT_OUTPUTS
                and not top.startswith(NOT_OUTPUT_PREFIXES)):
            hashes[name] = file_sha256(path)
    return hashes


def outputs_digest(marker: dict | None) -> str | None:
    """One hash for all a finished stage produced; None for no marker or one from before outputs were recorded."""
    recorded = marker.get("outputs") if marker is not None else None
    if not isinstance(recorded, dict):
        return None
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()


def damaged_output(folder: Path, marker: dict) -> str | None:
    """The first recorded output that changed or went missing since the stage finished (as a message), or None.

    Each recorded file is hashed once here; files added later (a user's notes) are not outputs. A marker
    from before outputs were recorded has nothing to check: the stage counts as done, as it did then, so
    pipelines made by an earlier visrep keep their finished stages."""
    recorded = marker.get("outputs")
    if not isinstance(recorded, dict):
        return None
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            return f"{folder.name}/{name} is missing since the stage finished (deleted?)"
        if file_sha256(path) != digest:
            return f"{folder.name}/{name} changed since the stage finished (damaged?)"
    return None


def rebuilt_upstream(marker: dict, upstream: dict[str, dict | None]) -> str | None:
    """A message naming a stage this one reads whose outputs are not those it was built from, or None.

    Keys are config hashes, so an upstream stage rebuilt with the same config (after damage, or by another
    ``--only`` run) keeps its key; what this stage was built from is told by the upstream outputs' hash
    recorded in its marker. None there means the upstream had an old marker: rebuilt since, it has a hash.
    A marker from before these hashes were recorded has none to compare and counts as done."""
    built_from = marker.get("upstream_outputs")
    if not isinstance(built_from, dict):
        return None
    for name, digest in sorted(built_from.items()):
        if name in upstream and outputs_digest(upstream[name]) != digest:
            return f"the '{name}' stage it reads was rebuilt after it finished"
    return None


def invalidated(folder: Path, marker: dict, upstream: dict[str, dict | None]) -> str | None:
    """Why a stage finished with the right key no longer counts as done (a damaged output, an upstream stage
    rebuilt since), or None when it still does. ``upstream``: each stage it reads → that stage's marker."""
    return damaged_output(folder, marker) or rebuilt_upstream(marker, upstream)


def write_marker(folder: Path, stage: str, key: str, seconds: float, upstream: dict[str, dict | None]) -> None:
    """The stage is done: its marker (with its outputs' hashes and those of the stages it read) in its folder,
    and the running note beside it removed. ``upstream``: each stage it read → that stage's marker."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "key": key, "seconds": round(seconds, 2),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "outputs": output_hashes(folder),
              "upstream_outputs": {name: outputs_digest(marker) for name, marker in sorted(upstream.items())}}
    atomic_write_text(folder / MARKER, json.dumps(record, indent=1, sort_keys=True) + "\n")
    running_file(folder.parent, stage).unlink(missing_ok=True)


def set_aside(folder: Path) -> Path:
    """Move a finished stage that is not kept (another config, damaged) out of the way, never deleted: returns where."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, suffix = folder.with_name(f"{folder.name}.replaced-{stamp}"), 1
    while target.exists():
        suffix += 1
        target = folder.with_name(f"{folder.name}.replaced-{stamp}-{suffix}")
    shutil.move(str(folder), str(target))
    return target


def made_by_pipeline(root: Path) -> bool:
    """The pipeline's folder: its ``pipeline.json``, or (made before that file existed) a stage marker or running
    note. A folder set aside (``<stage>.replaced-*``) keeps its marker, so it counts too."""
    return ((root / ROOT_MARKER).is_file() or any(root.glob(f"*/{MARKER}"))
            or any(root.glob(running_file(root, "*").name)))


def claim_root(root: Path) -> None:
    """Make the pipeline's folder (or take up an older one of its own) and say in it that the pipeline made it."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ROOT_MARKER).is_file():
        record = {"made_by": "visrep pipeline", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(root / ROOT_MARKER, json.dumps(record, indent=1) + "\n")


def stage_seconds(folder: Path) -> float | None:
    marker = read_marker(folder)
    return None if marker is None else float(marker["seconds"])
