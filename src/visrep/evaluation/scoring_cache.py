"""The real side of a scoring, cached per evaluator and real split, so later scorings only featurise the fakes.

Everything `visrep evaluate generated` computes without looking at the generated images — the real
reference's features and k-NN radii, the training images' features (the memorisation bank), the
held-out images' nearest-training distances and the whole real-vs-real floor — depends only on the
evaluator's weights, the real data, N, the seed and the scoring options. It is saved under
``<evaluator run>/scoring_cache/<key>.npz`` (+ ``.json``) with the key a hash of all of those, so a
change to any of them is a miss, never a stale hit. A cache that cannot be written (a read-only
evaluator run) only costs time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from visrep.config import GenerativeEvalOptions
from visrep.storage import atomic_write

CACHE_DIR = "scoring_cache"
CACHE_VERSION = 1  # bump whenever what is cached, or how any cached metric is computed, changes
ARRAYS = ("real_rows", "real_features", "real_logits", "real_knn_radii", "bank_rows", "bank_features",
          "reference_features", "reference_pixels", "reference_features_index", "reference_pixels_index")
FLOOR_OPTIONS = ("prdc_k", "memorisation_quantile", "memorisation_flag_fraction", "cas", "cas_epochs",
                 "cas_min_steps", "cas_widths")
log = logging.getLogger(__name__)


def cache_key(evaluator, reference, opts: GenerativeEvalOptions, n: int, precision: str, device: str) -> dict:
    """What the cached real side depends on (JSON-ready); its hash names the cache files.

    The manifest hash covers ids, labels and splits, not pixels: the pixels of the splits used are
    hashed too, so images replaced under the same file names are a miss.
    """
    return {"version": CACHE_VERSION, "evaluator_weights_sha256": evaluator.hashes["tensors"],
            "flip_views": evaluator.network.flip_views, "device": device,
            "real": {**{key: reference.description[key] for key in ("source", "split", "manifest_hash")},
                     "pixels_blake2b": pixels_digest(reference)},
            "n": int(n), "seed": int(opts.seed), "memorisation_bank": opts.memorisation_bank,
            "precision": precision, "batch_size": int(opts.batch_size), "floor": bool(opts.floor),
            **{name: _plain(getattr(opts, name)) for name in FLOOR_OPTIONS}}


def pixels_digest(reference) -> str:
    """blake2b of the uint8 pixels of the splits a scoring reads: train (bank and floor), val (the floor's
    memorisation) and the reference split (~0.4 s for CIFAR-10's 60k images)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in dict.fromkeys(("train", "val", reference.split)):
        split = reference.data.splits.get(name)
        if split is None:
            continue
        for start in range(0, len(split), 8192):
            batch = split.uint8_batch(np.arange(start, min(start + 8192, len(split))))
            digest.update(batch.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(evaluator_run: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(evaluator_run) / CACHE_DIR / f"{digest}.npz"


def load_cached(path: Path, key: dict) -> tuple[dict[str, np.ndarray], dict | None] | None:
    """(arrays, floor metrics or None) when a complete entry for exactly ``key`` exists; else None."""
    record_path = path.with_suffix(".json")
    if not (path.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in ARRAYS}
    except Exception as err:  # noqa: BLE001  (zip, pickle-free npz and JSON errors alike: a damaged entry is a miss)
        log.warning("ignoring an unreadable scoring cache %s (%s)", path, err)
        return None
    if record.get("key") != key:
        return None  # a hash collision of the first 20 hex digits: recompute
    return arrays, record.get("floor")


def save_cached(path: Path, key: dict, arrays: dict[str, np.ndarray], floor: dict | None) -> bool:
    """Write the entry (arrays first, the record that validates them last); False when it cannot be written."""
    try:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: arrays[name] for name in ARRAYS})
        atomic_write(path, lambda temp: Path(temp).write_bytes(buffer.getvalue()))
        record = json.dumps({"key": key, "floor": floor}, indent=1)
        atomic_write(path.with_suffix(".json"), lambda temp: Path(temp).write_text(record))
        return True
    except OSError as err:
        log.warning("could not write the scoring cache %s (%s); the next scoring recomputes it", path, err)
        return False


def _plain(value):
    """A config value as plain JSON data (cas_widths is a ListConfig in a loaded config)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, tuple) else value
