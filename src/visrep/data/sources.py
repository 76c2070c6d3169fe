"""Data sources, each turned into one uniform ``SourceData``: uint8 images at the configured
size and channel count, labels, stable ids, class names and (where the source has one) the
split it came with.

- ``digits``: scikit-learn's 8×8 digits (ships with scikit-learn: no files, no network).
- ``mnist`` / ``fashionmnist`` / ``cifar10``: torchvision's classes, reading local files from
  ``data.root``; they download only when ``data.download=true``.
- anything else: a path to an image folder (see ``visrep.data.folders``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from visrep.config import check_split_fractions
from visrep.data.cache import decode_folder, default_cache_dir
from visrep.data.folders import FolderScan, scan_folder
from visrep.data.images import RESIZE_MODES, peek_is_colour, peek_short_side
from visrep.errors import UserError

TORCHVISION_SETS = {"mnist": ("MNIST", 1), "fashionmnist": ("FashionMNIST", 1), "cifar10": ("CIFAR10", 3)}
BUILTIN_SOURCES = ("digits", *TORCHVISION_SETS)


@dataclass
class SourceData:
    kind: str  # digits | mnist | fashionmnist | cifar10 | folder
    description: dict  # goes into the manifest's "source"
    images: np.ndarray  # (N, C, H, W) uint8, possibly memory-mapped
    labels: np.ndarray  # (N,) int64
    ids: list[str]
    class_names: list[str]
    given_splits: np.ndarray | None  # (N,) 'train' | 'val' | 'test', or None
    skipped: list[dict] = field(default_factory=list)
    original_sizes: np.ndarray | None = None  # (N, 2) width, height before resizing
    original_modes: dict = field(default_factory=dict)
    cache_hit: bool | None = None  # folders only: whether decoding was skipped
    # folders only, per item, as decoding found them (visrep.data.images.Decoded): what the hygiene checks read
    pixel_hashes: list[str] | None = None
    orientations: np.ndarray | None = None  # EXIF orientation 1-8, 0 when none
    frames: np.ndarray | None = None  # 1 for a still image
    exif_problems: list[dict] = field(default_factory=list)  # {"id", "reason"}: decoded unrotated


MIN_GUESSED_SIZE, MAX_GUESSED_SIZE = 16, 64  # pixels: what fastcnn/airbench/resnet18_cifar train well at on a CPU


def load_source(data_cfg, progress: bool = True) -> SourceData:
    if data_cfg.resize not in RESIZE_MODES:
        raise UserError(f"data.resize must be one of {', '.join(RESIZE_MODES)} (got '{data_cfg.resize}')")
    if data_cfg.image_size is not None and not 4 <= data_cfg.image_size <= 1024:
        raise UserError(f"data.image_size must be between 4 and 1024 pixels (got {data_cfg.image_size})")
    if data_cfg.channels not in (None, 1, 3):
        raise UserError(f"data.channels must be 1 or 3 (got {data_cfg.channels})")
    # Checked here, before any layout decides which fractions it uses, so every source rejects the same values.
    check_split_fractions(data_cfg.val_fraction, data_cfg.test_fraction)
    name = data_cfg.source.lower()
    if name == "digits":
        return _load_digits(data_cfg)
    if name in TORCHVISION_SETS:
        return _load_torchvision(name, data_cfg)
    return _load_folder(data_cfg, progress)


def check_source(data_cfg) -> None:
    """Cheap checks that the configured data exists (no decoding), for commands that must fail before any
    work: a folder is scanned (UserError when missing or without class folders); a torchvision set's folder
    must exist unless data.download is set."""
    name = data_cfg.source.lower()
    if name == "digits":
        return
    if name in TORCHVISION_SETS:
        root = Path(data_cfg.root or default_cache_dir().parent / "visrep-data" / name).expanduser()
        if not root.is_dir() and not data_cfg.download:
            raise UserError(f"{TORCHVISION_SETS[name][0]} files not found under {root}; set data.download=true to "
                            f"fetch it (needs internet), or point data.source at an image folder")
        return
    scan_folder(data_cfg.source)


def _load_digits(data_cfg) -> SourceData:
    from sklearn.datasets import load_digits

    _default_image_size(data_cfg, 8, "the digits' own 8 px")
    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 → 0..255
    images = _resize_tensor_images(pixels, data_cfg.image_size, data_cfg.channels or 1)
    ids = [f"digits/{i:04d}" for i in range(len(pixels))]
    return SourceData("digits", {"kind": "digits", "origin": "sklearn.datasets.load_digits"}, images,
                      bunch.target.astype(np.int64), ids, [str(c) for c in range(10)], None,
                      original_sizes=np.full((len(pixels), 2), 8), original_modes={"L": len(pixels)})


def _load_torchvision(name: str, data_cfg) -> SourceData:
    import torchvision.datasets as tvd

    class_name, native_channels = TORCHVISION_SETS[name]
    root = Path(data_cfg.root or default_cache_dir().parent / "visrep-data" / name).expanduser()
    parts = [_open_torchvision(getattr(tvd, class_name), root, train, data_cfg.download) for train in (True, False)]
    arrays, labels, ids, splits = [], [], [], []
    for split, dataset in zip(("train", "test"), parts):
        data = np.asarray(dataset.data)
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # → (N, C, H, W)
        arrays.append(data)
        labels.append(np.asarray(dataset.targets, dtype=np.int64))
        ids.extend(f"{name}/{split}/{i:05d}" for i in range(len(data)))
        splits.extend([split] * len(data))
    native = np.concatenate(arrays)
    _default_image_size(data_cfg, int(native.shape[2]), f"{name}'s own {native.shape[2]} px")
    images = _resize_tensor_images(native, data_cfg.image_size, data_cfg.channels or native_channels)
    description = {"kind": name, "root": str(root), "splits_given": ["test", "train"]}
    return SourceData(name, description, images, np.concatenate(labels), ids,
                      [str(c) for c in parts[0].classes], np.asarray(splits, dtype=object),
                      original_sizes=np.tile([native.shape[3], native.shape[2]], (len(native), 1)),
                      original_modes={"L" if native.shape[1] == 1 else "RGB": len(native)})


def _open_torchvision(dataset_class, root: Path, train: bool, download: bool):
    try:
        return dataset_class(str(root), train=train, download=download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        hint = "" if download else "; set data.download=true to fetch it (needs internet), or point data.source at an image folder"
        raise UserError(f"{dataset_class.__name__} files not found under {root}{hint}") from None
    except OSError as err:  # download attempted without network, disk full, ...
        raise UserError(f"could not get {dataset_class.__name__} into {root}: {str(err).splitlines()[0]}") from None


def _load_folder(data_cfg, progress: bool) -> SourceData:
    scan = scan_folder(data_cfg.source)
    channels = data_cfg.channels or _guess_channels(scan.root, scan.files)
    if data_cfg.image_size is None:
        size, how = guess_image_size(scan.root, scan.files)
        _default_image_size(data_cfg, size, how)
    decoded = decode_folder(scan.root, scan.files, data_cfg.image_size, channels, data_cfg.resize,
                            Path(data_cfg.cache_dir).expanduser() if data_cfg.cache_dir else None, progress=progress)
    unusable = scan.skipped + decoded.failures
    # strict is about images that cannot be used as the user sees them (an unreadable EXIF block leaves their
    # orientation unknown); hidden, stray and duplicate entries and loops are only listed
    doubtful = unusable + decoded.exif_problems
    if doubtful and data_cfg.strict:
        raise UserError(f"{len(doubtful)} unusable file(s) in {scan.root} (data.strict=true), first: "
                        f"{doubtful[0]['id']}: {doubtful[0]['reason']}")
    keep = decoded.ok_indices
    labels = np.asarray(scan.labels, dtype=np.int64)[keep]
    _check_every_class_survived(labels, scan.class_names, scan.root)
    given = np.asarray(scan.given_splits, dtype=object)[keep] if scan.given_splits is not None else None
    return SourceData("folder", _folder_description(scan, given), decoded.images, labels,
                      [scan.files[i] for i in keep], scan.class_names, given, unusable + scan.ignored,
                      decoded.original_sizes, decoded.original_modes, decoded.hit, decoded.pixel_hashes,
                      decoded.orientations, decoded.frames, decoded.exif_problems)


def _folder_description(scan: FolderScan, given: np.ndarray | None) -> dict:
    """The manifest's "source"; a flat folder without nested folders gets the same keys it always had."""
    description = {"kind": "folder", "root": str(scan.root.resolve()), "layout": scan.layout}
    if given is not None:  # lets the manifest say which splits were carved rather than given
        description["splits_given"] = sorted(set(given))
    if scan.nested_folders:
        description["nested_folders"] = scan.nested_folders
    return description


def _check_every_class_survived(labels: np.ndarray, class_names: list[str], root: Path) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    for label, name in enumerate(class_names):
        if counts[label] == 0:
            raise UserError(f"class folder '{name}' in {root} has no readable images")


def _default_image_size(data_cfg, size: int, how: str) -> None:
    """Fill an unset data.image_size (saved so in the run's config.yaml) and say what was chosen."""
    if data_cfg.image_size is None:
        data_cfg.image_size = size
        # stdout, like the other progress lines: stderr is kept for the one `error:` line of a failure
        print(f"data.image_size not given: {size} px ({how}; set data.image_size to choose)")


def guess_image_size(root: Path, files: list[str], sample: int = 200) -> tuple[int, str]:
    """(size, how): the median short side of an evenly spaced sample of images (headers only), clamped
    to 16-64 px, the range the fast CPU models are built for; photos become 64 px, icons keep theirs."""
    step = max(1, len(files) // sample)
    sides = [side for rel in files[::step] if (side := peek_short_side(root / rel))]
    if not sides:
        return 32, "no readable image header in the sample: 32 px"
    median = int(np.median(sides))
    size = min(MAX_GUESSED_SIZE, max(MIN_GUESSED_SIZE, median))
    return size, (f"median short side {median} px of {len(sides)} sampled images, "
                  f"clamped to {MIN_GUESSED_SIZE}-{MAX_GUESSED_SIZE}")


def _guess_channels(root: Path, files: list[str], sample: int = 64) -> int:
    """3 if any of an evenly spaced sample of images is colour, else 1."""
    step = max(1, len(files) // sample)
    return 3 if any(peek_is_colour(root / rel) for rel in files[::step]) else 1


def _resize_tensor_images(images: np.ndarray, size: int, channels: int, chunk: int = 8192) -> np.ndarray:
    """Resize square (N, C, h, w) uint8 images to size×size (antialiased bilinear) and set channels."""
    out = np.empty((len(images), channels, size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).float()
        if batch.shape[-1] != size:
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = _convert_channels(batch, channels).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _convert_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    if batch.shape[1] == channels:
        return batch
    if channels == 3:
        return batch.expand(-1, 3, -1, -1)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601 luma, as PIL's 'L'
    return (batch * weights).sum(1, keepdim=True)
