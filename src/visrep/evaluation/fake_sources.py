"""Load any set of images to be scored: a folder, a ``.npz`` file or a generator run.

Every source becomes an :class:`ImageSet` at the evaluator's size and channel count (resized with
the data pipeline's own ``resize`` policy when they differ).

Folder
    ``<folder>/*.png|jpg|...`` (no labels), or ``<folder>/<class name>/*`` (intended class from the
    sub-folder, names as in the evaluator's dataset). Optional ``<folder>/conditions.json``:
    ``{"<relative path>": "<id of the conditioning real image>"}`` for embedding consistency.
``.npz``
    ``images`` (or ``arr_0``, the layout of OpenAI's guided-diffusion sample files): uint8,
    (N, C, H, W), (N, H, W, C) or (N, H, W). Optional: ``labels`` (or ``arr_1``): (N,) class indices
    or class names; ``condition_ids``: (N,) real image ids (as in the data manifest);
    ``conditioning_weights_sha256``: the hashes a generator declares (see ``independence``).
Generator run
    A folder with ``generator.json`` (contract in :mod:`visrep.inference.independence`) and its
    samples as ``.npz`` or as a folder.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from visrep.data.images import ImageDecodeError, decode_to_array, is_image_name, resize_square, to_channels
from visrep.errors import UserError
from visrep.generate.outputs import GRID_FILE, PARTIAL_DIR, SAMPLES_FILE
from visrep.inference.independence import GENERATOR_MANIFEST, HASH_KEY, read_generator_manifest

CONDITIONS_FILE = "conditions.json"


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, S, S) uint8
    labels: np.ndarray | None  # (N,) int64 intended class, or None
    condition_ids: list[str] | None  # (N,) id of the real image whose embedding conditioned each sample
    source: dict  # what was read: {"kind": "folder" | "npz" | "generator", "path": ...}
    declared_hashes: list[str] | None = None  # networks the generator declares it used (None: not declared)
    conditioning_run: str | None = None  # the conditioning classifier run, when a generator names it
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> "ImageSet":
        rows = np.asarray(rows, dtype=np.int64)
        return ImageSet(self.images[torch.from_numpy(rows)], None if self.labels is None else self.labels[rows],
                        None if self.condition_ids is None else [self.condition_ids[i] for i in rows],
                        self.source, self.declared_hashes, self.conditioning_run, self.extra)


@dataclass(frozen=True)
class TargetFormat:
    image_size: int
    channels: int
    resize: str  # crop | pad | stretch, as data.resize
    class_names: tuple[str, ...]


def load_image_set(spec: str | Path, target: TargetFormat, progress: bool = True) -> ImageSet:
    """Read a folder, ``.npz`` file or generator run (see the module docstring) into an ImageSet."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"images to evaluate not found: {path}")
    if path.is_dir() and _unfinished_sample_folder(path):
        raise UserError(f"{path} is an unfinished `visrep sample` folder (interrupted before generator.json, "
                        f"written last): run the same `visrep sample` command again to finish it")
    if path.is_dir() and (path / GENERATOR_MANIFEST).is_file():
        return _load_generator_run(path, target, progress)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path, target)
    if path.is_dir():
        return _load_folder(path, target, progress)
    raise UserError(f"cannot read {path}: give a folder of images, a .npz file or a generator run directory")


def _unfinished_sample_folder(path: Path) -> bool:
    """`visrep sample`'s output before it finished: its .partial/ chunks, or samples.npz (and grid.png) without
    the generator.json written after them. Read as an image folder it would score grid.png alone."""
    if (path / PARTIAL_DIR).is_dir():
        return True
    names = {entry.name for entry in path.iterdir() if not entry.name.startswith(".")}
    return SAMPLES_FILE in names and names <= {SAMPLES_FILE, GRID_FILE}


def _load_generator_run(run_dir: Path, target: TargetFormat, progress: bool) -> ImageSet:
    manifest = read_generator_manifest(run_dir)
    samples = run_dir / manifest["samples"] if manifest.get("samples") else _default_samples(run_dir)
    if samples.resolve() == run_dir.resolve() or not samples.exists():
        raise UserError(f"generator run {run_dir}: samples not found (expected samples.npz or samples/)")
    image_set = load_image_set(samples, target, progress)
    image_set.declared_hashes = list(manifest[HASH_KEY]) + list(image_set.declared_hashes or [])
    image_set.conditioning_run = manifest.get("conditioning_run")
    image_set.source = {"kind": "generator", "path": str(run_dir), "samples": image_set.source,
                        "description": manifest.get("description")}
    return image_set


def _default_samples(run_dir: Path) -> Path:
    return run_dir / "samples.npz" if (run_dir / "samples.npz").is_file() else run_dir / "samples"


# ---- .npz ----------------------------------------------------------------------------------

def _load_npz(path: Path, target: TargetFormat) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    images = _npz_images(arrays, path)
    labels = _npz_labels(arrays, len(images), target.class_names, path)
    condition_ids = [str(item) for item in arrays["condition_ids"]] if "condition_ids" in arrays else None
    if condition_ids is not None and len(condition_ids) != len(images):
        raise UserError(f"{path}: condition_ids has {len(condition_ids)} entries for {len(images)} images")
    declared = [str(item) for item in arrays[HASH_KEY]] if HASH_KEY in arrays else None
    source = {"kind": "npz", "path": str(path)}
    if tuple(images.shape[1:]) != (target.channels, target.image_size, target.image_size):
        source["converted_from"] = list(images.shape[1:])  # said in the report: scored after conversion
    return ImageSet(conform(images, target), labels, condition_ids, source, declared)


def _npz_images(arrays: dict, path: Path) -> np.ndarray:
    key = "images" if "images" in arrays else "arr_0" if "arr_0" in arrays else None
    if key is None:
        raise UserError(f"{path} has no 'images' (or 'arr_0') array; it holds {', '.join(arrays) or 'nothing'}")
    images = arrays[key]
    if images.dtype != np.uint8:
        raise UserError(f"{path}: images must be uint8 0..255 (got {images.dtype}); convert with "
                        "np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8) from [0, 1] floats")
    return to_nchw(images, str(path))


def to_nchw(images: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} → (N, C, H, W)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[2] == images.shape[3]:
        return images
    if images.ndim == 4 and images.shape[3] in (1, 3):
        return images.transpose(0, 3, 1, 2)
    raise UserError(f"{where}: images of shape {images.shape} are not (N, H, W), (N, H, W, C) or (N, C, H, W) "
                    "with 1 or 3 channels")


def _npz_labels(arrays: dict, count: int, class_names: tuple[str, ...], path: Path) -> np.ndarray | None:
    key = "labels" if "labels" in arrays else "arr_1" if "arr_1" in arrays else None
    if key is None:
        return None
    raw = arrays[key].reshape(-1)
    if len(raw) != count:
        raise UserError(f"{path}: {len(raw)} labels for {count} images")
    if raw.dtype.kind in "US":
        return labels_from_names([str(item) for item in raw], class_names, str(path))
    if raw.dtype.kind not in "iu" or (len(raw) and (raw.min() < 0 or raw.max() >= len(class_names))):
        raise UserError(f"{path}: labels must be class indices in 0..{len(class_names) - 1} or class names")
    return raw.astype(np.int64)


def labels_from_names(names: list[str], class_names: tuple[str, ...], where: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({name for name in names if name not in index})
    if unknown:
        raise UserError(f"{where}: unknown class name(s) {', '.join(unknown[:5])}; the evaluator's classes are "
                        f"{', '.join(class_names)}")
    return np.array([index[name] for name in names], dtype=np.int64)


def conform(images: np.ndarray, target: TargetFormat) -> torch.Tensor:
    """(N, C, H, W) uint8 → (N, target.channels, S, S) uint8 tensor, converting only when needed."""
    if images.shape[1:] == (target.channels, target.image_size, target.image_size):
        return torch.from_numpy(np.ascontiguousarray(images))
    converted = [_conform_one(image, target) for image in images]
    shape = (0, target.channels, target.image_size, target.image_size)
    return torch.from_numpy(np.stack(converted)) if converted else torch.zeros(shape, dtype=torch.uint8)


def _conform_one(image: np.ndarray, target: TargetFormat) -> np.ndarray:
    pil = Image.fromarray(image[0]) if image.shape[0] == 1 else Image.fromarray(image.transpose(1, 2, 0))
    pil = resize_square(to_channels(pil, target.channels), target.image_size, target.resize)
    array = np.asarray(pil, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# ---- folders -------------------------------------------------------------------------------

def _load_folder(root: Path, target: TargetFormat, progress: bool) -> ImageSet:
    files, links = _folder_files(root)
    if not files:
        raise UserError(f"no images in {root}" + (f" ({len(links)} symlink(s) not followed)" if links else ""))
    relative = [path.relative_to(root).as_posix() for path in files]
    labels = _folder_labels(relative, target.class_names, root)
    decoded = [_decode(path, target) for path in tqdm(files, desc="reading images", leave=False,
                                                      disable=not progress or None, mininterval=1.0)]
    source = {"kind": "folder", "path": str(root)}
    if links:
        shown = ", ".join(links[:3]) + (f" and {len(links) - 3} more" if len(links) > 3 else "")
        source["left_out"] = [f"{len(links)} symlink(s) in {root} not followed, so not scored: {shown} (the images "
                              f"to score must be files in the folder: a link could bring in real images)"]
    sizes = {tuple(size) for _, size, _ in decoded}
    grey = {mode in ("1", "L", "LA", "I", "I;16", "F") for _, _, mode in decoded}
    if sizes != {(target.image_size, target.image_size)} or grey != {target.channels == 1}:
        width, height = sorted(sizes)[0]
        source["converted_from"] = [1 if True in grey else 3, height, width]  # said in the report
    return ImageSet(torch.from_numpy(np.stack([image for image, _, _ in decoded])), labels,
                    _folder_conditions(root, relative), source)


def _folder_files(root: Path) -> tuple[list[Path], list[str]]:
    """(image files under ``root``, sorted; the symlinks met, relative): hidden entries are left out, and
    links to files or folders are never followed but listed, since nothing else would show them."""
    files, links = [], []
    for folder, subfolders, names in os.walk(root):  # os.walk does not descend into linked folders
        here = Path(folder)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in [*subfolders, *names]:
            if (here / name).is_symlink() and not name.startswith("."):
                links.append((here / name).relative_to(root).as_posix())
        files += [here / name for name in names if not name.startswith(".") and is_image_name(name)
                  and not (here / name).is_symlink()]
    return sorted(files), sorted(links)


def _folder_labels(relative: list[str], class_names: tuple[str, ...], root: Path) -> np.ndarray | None:
    depths = {path.count("/") for path in relative}
    if depths == {0}:
        return None
    if depths != {1}:
        raise UserError(f"{root}: put images either all at the top level (no labels) or all in "
                        "<class name>/ sub-folders (one level)")
    return labels_from_names([path.split("/")[0] for path in relative], class_names, str(root))


def _folder_conditions(root: Path, relative: list[str]) -> list[str] | None:
    path = root / CONDITIONS_FILE
    if not path.is_file():
        return None
    try:
        mapping = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    missing = [name for name in relative if name not in mapping]
    if missing:
        raise UserError(f"{path} has no conditioning id for {missing[0]} (and {len(missing) - 1} more)")
    return [str(mapping[name]) for name in relative]


def _decode(path: Path, target: TargetFormat) -> np.ndarray:
    try:
        return decode_to_array(path, target.image_size, target.channels, target.resize)
    except ImageDecodeError as err:
        raise UserError(f"cannot score {path}: {err}") from None
