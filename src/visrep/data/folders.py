"""Scan an image folder: ``root/<class>/<images>`` or ``root/{train,val,test}/<class>/<images>``.

Scanning only lists files (sorted, so the result is the same on every machine and run);
decoding, and with it the detection of corrupt files, happens once in the cache stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from visrep.data.images import is_image_name
from visrep.errors import UserError

SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class FolderScan:
    root: Path
    layout: str  # "flat" (no split given) or "split" (train/val/test folders)
    class_names: list[str]
    files: list[str]  # paths relative to root, '/'-separated, sorted
    labels: list[int]
    given_splits: list[str] | None  # per file, for the "split" layout
    skipped: list[dict] = field(default_factory=list)  # {"id": relpath, "reason": ...}


def scan_folder(root: str | Path) -> FolderScan:
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"data source is not a folder: {root}")
    top_dirs = _subdirs(root)
    if not top_dirs:
        raise UserError(f"no class folders in {root} (expected {root}/<class>/<images>)")
    if "train" in top_dirs and set(top_dirs) <= set(SPLIT_DIR_NAMES):
        return _scan_split_layout(root, top_dirs)
    return _scan_flat_layout(root, top_dirs)


def _subdirs(path: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))
    except PermissionError:
        raise UserError(f"cannot read folder {path} (permission denied)") from None


def _scan_flat_layout(root: Path, class_names: list[str]) -> FolderScan:
    scan = FolderScan(root, "flat", class_names, [], [], None)
    for label, name in enumerate(class_names):
        count = _add_class_files(scan, root, name, label, prefix=name)
        if count == 0:
            raise UserError(f"class folder '{name}' in {root} has no images")
    return scan


def _scan_split_layout(root: Path, split_dirs: list[str]) -> FolderScan:
    class_names = _subdirs(root / "train")
    if not class_names:
        raise UserError(f"no class folders in {root / 'train'}")
    scan = FolderScan(root, "split", class_names, [], [], [])
    for split_dir in split_dirs:
        unknown = sorted(set(_subdirs(root / split_dir)) - set(class_names))
        if unknown:
            raise UserError(f"{root / split_dir} has class folders not in train: {', '.join(unknown)}")
        for label, name in enumerate(class_names):
            if not (root / split_dir / name).is_dir():
                continue
            count = _add_class_files(scan, root, name, label, prefix=f"{split_dir}/{name}")
            scan.given_splits.extend([SPLIT_DIR_NAMES[split_dir]] * count)
            if count == 0 and split_dir == "train":
                raise UserError(f"class folder 'train/{name}' in {root} has no images")
    return scan


def _add_class_files(scan: FolderScan, root: Path, class_name: str, label: int, prefix: str) -> int:
    """Append the image files under root/prefix (recursively); non-image files go to skipped."""
    count = 0
    for relpath in _walk_files(root / prefix, prefix):
        if is_image_name(relpath):
            scan.files.append(relpath)
            scan.labels.append(label)
            count += 1
        else:
            scan.skipped.append({"id": relpath, "reason": "not an image file (extension)"})
    return count


def _walk_files(folder: Path, prefix: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        base = prefix if rel_dir == "." else f"{prefix}/{rel_dir}"
        found.extend(f"{base}/{name}" for name in filenames if not name.startswith("."))
    return sorted(found)
