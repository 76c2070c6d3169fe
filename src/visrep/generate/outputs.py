"""Writing generated images where ``visrep evaluate generated`` reads them directly.

A sample folder holds ``samples.npz`` (``images`` uint8 (N, C, S, S); ``labels`` when the intended
class is known; ``condition_ids`` when each image was conditioned on a real image of the data),
``grid.png`` (given images first, when there are any) and ``generator.json``: the generator run's
independence contract (:mod:`visrep.inference.independence`), pointing at these samples.

``visrep sample`` writes such a folder in chunks, resumably: :mod:`visrep.generate.chunked`. This
module claims the folder and holds the writers of images already in memory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from visrep.errors import UserError
from visrep.figures import save_image_grid
from visrep.generate.generator_run import GUIDE_WEIGHTS
from visrep.generate.npz_stream import NpyMember, write_npz_streamed
from visrep.generate.sample import SampleSet
from visrep.inference.independence import GENERATOR_MANIFEST, HASH_KEY, read_generator_manifest, weights_hashes
from visrep.runs import atomic_write_text

SAMPLES_FILE = "samples.npz"
GRID_FILE = "grid.png"
MAX_GRID_IMAGES = 256
PARTIAL_DIR = ".partial"  # an unfinished folder's request and chunks (hidden: image-folder readers skip it)
REQUEST_FILE = "request.json"


# ---- claiming a folder ---------------------------------------------------------------------------
def claim_folder(out: Path, overwrite: bool) -> None:
    """An empty folder to write into. An existing one is replaced only with ``overwrite``, and only when it
    is a sample folder (nothing in it but what this module writes): never a run, a file or anyone's folder."""
    out = Path(out)
    if out.exists():
        refuse_unless_ours(out, overwrite)
        shutil.rmtree(out)
    out.mkdir(parents=True)


def refuse_unless_ours(out: Path, overwrite: bool) -> None:
    if not overwrite:
        raise UserError(f"{out} already exists; choose another --out or add --overwrite")
    if not out.is_dir() or not is_sample_folder(out):
        raise UserError(f"{out} is not a sample folder written by `visrep sample`; --overwrite replaces only "
                        f"those: give --out a new folder")


def is_sample_folder(folder: Path) -> bool:
    """Nothing in ``folder`` but what this module writes: the finished files, an unfinished ``.partial``
    and temporary files (named ``.<name>.<random>``)."""
    written = {SAMPLES_FILE, GRID_FILE, GENERATOR_MANIFEST}
    return all(_is_partial_folder(entry) if entry.name == PARTIAL_DIR else
               entry.is_file() and (entry.name in written or entry.name.startswith("."))
               for entry in folder.iterdir())


def _is_partial_folder(folder: Path) -> bool:
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(entry.is_file() and (entry.name == REQUEST_FILE or chunk_index(entry.name) is not None
                                    or entry.name.startswith("."))
               for entry in folder.iterdir())


# ---- the in-memory writers (training's final samples, notebooks) ------------------------------------
def write_npz(path: Path, samples: SampleSet) -> Path:
    arrays = {"images": samples.images.numpy()}
    if samples.labels is not None:
        arrays["labels"] = np.asarray(samples.labels, dtype=np.int64)
    if samples.condition_ids is not None:
        arrays["condition_ids"] = np.asarray(samples.condition_ids)
    return write_npz_streamed(Path(path), {name: NpyMember.of(array) for name, array in arrays.items()})


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


def write_generator_manifest(folder: Path, generator_run: Path, description: str,
                             guide: str | Path | None = None, sampling: dict | None = None) -> Path:
    """generator.json for a sample folder: the run's own contract, pointing at these samples; with a
    classifier-guidance ``guide`` run, its weights are declared too (they shaped the samples)."""
    manifest = read_generator_manifest(generator_run)
    manifest.update({"samples": SAMPLES_FILE, "generator_run": str(Path(generator_run).resolve()),
                     "description": description})
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
    """A sample folder from images already in memory (``write_plan_folder`` for any n)."""
    claim_folder(out, overwrite)
    write_npz(out / SAMPLES_FILE, samples)
    write_grid(out / GRID_FILE, samples)
    write_generator_manifest(out, generator_run, samples.description, guide, sampling)
    return Path(out)


def chunk_name(index: int) -> str:
    return f"chunk-{index:08d}.npz"


def chunk_index(name: str) -> int | None:
    """The index of a chunk file's name, None for any other name (a temporary ``.chunk-…`` file included)."""
    stem = name.removeprefix("chunk-").removesuffix(".npz")
    return int(stem) if name.startswith("chunk-") and name.endswith(".npz") and stem.isdigit() else None
