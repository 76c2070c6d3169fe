"""Writing generated images where ``visrep evaluate generated`` reads them directly.

A sample folder holds ``samples.npz`` (``images`` uint8 (N, C, S, S); ``labels`` when the intended
class is known; ``condition_ids`` when each image was conditioned on a real image of the data),
``grid.png`` (given images first, when there are any) and ``generator.json``: the generator run's
independence contract (:mod:`visrep.inference.independence`), pointing at these samples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from visrep.errors import UserError
from visrep.figures import save_image_grid
from visrep.generate.sample import SampleSet
from visrep.generate.generator_run import GUIDE_WEIGHTS
from visrep.inference.independence import GENERATOR_MANIFEST, HASH_KEY, read_generator_manifest, weights_hashes
from visrep.runs import atomic_write_text
from visrep.storage import atomic_write

SAMPLES_FILE = "samples.npz"
GRID_FILE = "grid.png"
MAX_GRID_IMAGES = 256


def claim_folder(out: Path, overwrite: bool) -> None:
    """An empty folder to write into. An existing one is replaced only with ``overwrite``, and only when it
    is a sample folder (nothing in it but what this module writes): never a run, a file or anyone's folder."""
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise UserError(f"{out} already exists; choose another --out or add --overwrite")
        if not out.is_dir() or not _is_sample_folder(out):
            raise UserError(f"{out} is not a sample folder written by `visrep sample`; --overwrite replaces only "
                            f"those: give --out a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _is_sample_folder(folder: Path) -> bool:
    written = {SAMPLES_FILE, GRID_FILE, GENERATOR_MANIFEST}
    return all(entry.is_file() and (entry.name in written or entry.name.startswith(".")) for entry in folder.iterdir())


def write_npz(path: Path, samples: SampleSet) -> Path:
    arrays = {"images": samples.images.numpy()}
    if samples.labels is not None:
        arrays["labels"] = np.asarray(samples.labels, dtype=np.int64)
    if samples.condition_ids is not None:
        arrays["condition_ids"] = np.asarray(samples.condition_ids)
    def write(temp) -> None:
        with open(temp, "wb") as stream:
            np.savez_compressed(stream, **arrays)

    return atomic_write(Path(path), write)


def write_grid(path: Path, samples: SampleSet) -> Path:
    """The images in rows of ``samples.columns``; a given image (framed red) comes first, and an
    interpolation's two given images sit at both ends of its row."""
    images, given = samples.images[:MAX_GRID_IMAGES], samples.given
    if given is None:
        return save_image_grid(images, path, samples.columns)
    tiles = torch.cat([given[:1], images, given[1:]])
    framed = {0, len(tiles) - 1} if len(given) > 1 else {0}
    frames = [(220, 40, 40) if i in framed else None for i in range(len(tiles))]
    return save_image_grid(tiles, path, samples.columns, frames=frames)


def write_generator_manifest(folder: Path, generator_run: Path, samples: SampleSet,
                             guide: str | Path | None = None, sampling: dict | None = None) -> Path:
    """generator.json for a sample folder: the run's own contract, pointing at these samples; with a
    classifier-guidance ``guide`` run, its weights are declared too (they shaped the samples)."""
    manifest = read_generator_manifest(generator_run)
    manifest.update({"samples": SAMPLES_FILE, "generator_run": str(Path(generator_run).resolve()),
                     "description": samples.description})
    if sampling:  # what this folder was sampled with, not the run's defaults
        manifest.update(sampling)
    if guide is not None:
        hashes = weights_hashes(Path(guide) / GUIDE_WEIGHTS)
        manifest[HASH_KEY] = list(manifest.get(HASH_KEY, [])) + [hashes["tensors"], hashes["file"]]
        manifest["classifier_guidance"] = str(Path(guide).resolve())
        manifest["classifier_used_for"] = list(manifest.get("classifier_used_for", [])) + ["classifier guidance"]
    return atomic_write_text(Path(folder) / GENERATOR_MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def write_sample_folder(out: Path, samples: SampleSet, generator_run: Path, overwrite: bool = False,
                        guide: str | Path | None = None, sampling: dict | None = None) -> Path:
    claim_folder(out, overwrite)
    write_npz(out / SAMPLES_FILE, samples)
    write_grid(out / GRID_FILE, samples)
    write_generator_manifest(out, generator_run, samples, guide, sampling)
    return Path(out)
