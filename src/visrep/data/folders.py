"""Scan an image folder: ``root/<class>/<images>`` or ``root/{train,val,test}/<class>/<images>``.

Scanning only lists files (sorted, so the result is the same on every machine and run);
decoding, and with it the detection of corrupt files, happens once in the cache stage.

Folders nested inside a class folder belong to that class (users keep sub-sources that way),
and each one is listed so it is never a surprise. Symlinks are resolved: every real file and
folder is taken once, a link back to a folder above it is a reported loop, a link to a folder outside
the data folder is listed as skipped and not followed (a link to /etc would walk all of it; a link
to one image file elsewhere is taken, a common way to assemble a dataset), and one file reachable
from two classes or two splits is an error (that would put one image under two labels, or in
both train and test). Everything left out is listed with its reason.
"""

from __future__ import annotations

import os
from collections import deque
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
    # {"id": relpath, "reason": ...}: files inside a class folder that cannot be used (data.strict fails on these)
    skipped: list[dict] = field(default_factory=list)
    # {"id": relpath, "reason": ...}: hidden entries, files outside class folders, duplicates, symlink loops
    ignored: list[dict] = field(default_factory=list)
    nested_folders: list[str] = field(default_factory=list)  # folders inside a class folder, taken into it


@dataclass(frozen=True)
class _Owner:
    """The class folder (and, in the split layout, the split) a file is taken into."""
    prefix: str  # "cat" or "train/cat"
    label: int
    class_name: str
    split: str | None

    def __str__(self) -> str:
        return f"class '{self.class_name}'" + (f" in {self.split}" if self.split else "")


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
    owners = [_Owner(name, label, name, None) for label, name in enumerate(class_names)]
    walker = _Walker(root)
    walker.note_loose_entries("")
    walker.walk(owners)
    for owner in owners:
        if not walker.kept[owner]:
            raise UserError(f"class folder '{owner.prefix}' in {root} has no images")
    return _finish(walker, FolderScan(root, "flat", class_names, [], [], None), owners)


def _scan_split_layout(root: Path, split_dirs: list[str]) -> FolderScan:
    class_names = _subdirs(root / "train")
    if not class_names:
        raise UserError(f"no class folders in {root / 'train'}")
    owners = []
    for split_dir in split_dirs:
        unknown = sorted(set(_subdirs(root / split_dir)) - set(class_names))
        if unknown:
            raise UserError(f"{root / split_dir} has class folders not in train: {', '.join(unknown)}")
        owners += [_Owner(f"{split_dir}/{name}", label, name, SPLIT_DIR_NAMES[split_dir])
                   for label, name in enumerate(class_names) if (root / split_dir / name).is_dir()]
    walker = _Walker(root)
    walker.note_loose_entries("")
    for split_dir in split_dirs:
        walker.note_loose_entries(split_dir)
    walker.walk(owners)
    for owner in owners:
        if not walker.kept[owner] and owner.split == "train":
            raise UserError(f"class folder '{owner.prefix}' in {root} has no images")
    return _finish(walker, FolderScan(root, "split", class_names, [], [], []), owners)


def _finish(walker: _Walker, scan: FolderScan, owners: list[_Owner]) -> FolderScan:
    """Fill ``scan`` in owner order, files sorted within each: the order the manifest hash was always taken in."""
    for owner in owners:
        files = sorted(walker.kept[owner])
        scan.files += files
        scan.labels += [owner.label] * len(files)
        if scan.given_splits is not None:
            scan.given_splits += [owner.split] * len(files)
    scan.skipped, scan.ignored = walker.skipped, walker.ignored
    scan.nested_folders = sorted(walker.nested)
    return scan


class _Walker:
    """Walks class folders, each real file and folder once, keyed by its resolved path.

    Symlinks are followed only after every plain entry of every class has been walked, so that
    where a file is reachable both directly and through a link the direct path is the one kept
    and the link is the one reported.
    """

    def __init__(self, root: Path):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.files: dict[str, tuple[str, _Owner]] = {}  # real path → first relpath and owner
        self.dirs: dict[str, tuple[str, _Owner]] = {}
        self.kept: dict[_Owner, list[str]] = {}
        self.links: deque[tuple[str, _Owner]] = deque()
        self.skipped: list[dict] = []
        self.ignored: list[dict] = []
        self.nested: list[str] = []

    def walk(self, owners: list[_Owner]) -> None:
        for owner in owners:
            self.kept[owner] = []
            self._enter(owner.prefix, owner)
        while self.links:
            self._follow(*self.links.popleft())

    def note_loose_entries(self, folder: str) -> None:
        """List what sits at the root or directly in a split folder, where only folders are taken."""
        for entry in self._entries(folder):
            relpath = f"{folder}/{entry.name}" if folder else entry.name
            if entry.name.startswith("."):
                self._ignore(relpath, _hidden_reason(entry))
            elif not entry.is_dir():
                self._ignore(relpath, "not inside a class folder")

    def _enter(self, relpath: str, owner: _Owner) -> None:
        real = os.path.realpath(self.root / relpath)
        if real in self.dirs:
            self._seen_again("folder", relpath, owner, self.dirs[real])
            return
        self.dirs[real] = (relpath, owner)
        if relpath != owner.prefix:
            self.nested.append(relpath)
        for entry in self._entries(relpath):
            self._visit(f"{relpath}/{entry.name}", entry, owner, real)

    def _visit(self, relpath: str, entry: os.DirEntry, owner: _Owner, parent_real: str) -> None:
        if entry.name.startswith("."):
            self._ignore(relpath, _hidden_reason(entry))
        elif entry.is_symlink():
            self.links.append((relpath, owner))
        elif entry.is_dir(follow_symlinks=False):
            self._enter(relpath, owner)
        else:  # not a link, so its real path is its folder's: no realpath() call per file on large folders
            self._add_file(relpath, os.path.join(parent_real, entry.name), owner)

    def _follow(self, relpath: str, owner: _Owner) -> None:
        path = self.root / relpath
        real = os.path.realpath(path)
        if not os.path.isdir(real):  # a link to a file, or a dangling one (decoding reports it unreadable)
            self._add_file(relpath, real, owner)
        elif not _is_within(real, self.real_root):  # a link to /etc or $HOME would walk (and list) all of it
            self.skipped.append({"id": relpath, "reason": f"symlink to a folder outside the data folder ({real}): "
                                                          f"not followed"})
        elif _is_within(os.path.realpath(path.parent), real):
            self._ignore(relpath, f"symlink loop to {self._show(real)}")
        else:
            self._enter(relpath, owner)

    def _add_file(self, relpath: str, real: str, owner: _Owner) -> None:
        if not is_image_name(relpath):
            self.skipped.append({"id": relpath, "reason": "not an image file (extension)"})
        elif real in self.files:
            self._seen_again("file", relpath, owner, self.files[real])
        else:
            self.files[real] = (relpath, owner)
            self.kept[owner].append(relpath)

    def _seen_again(self, kind: str, relpath: str, owner: _Owner, first: tuple[str, _Owner]) -> None:
        first_relpath, first_owner = first
        if (first_owner.label, first_owner.split) != (owner.label, owner.split):
            across = "classes" if first_owner.label != owner.label else "splits"
            raise UserError(f"the same {kind} is reachable from two {across}: '{first_relpath}' ({first_owner}) "
                            f"and '{relpath}' ({owner}); an image must sit in one class and one split, so remove "
                            f"the symlink that puts it in both")
        self._ignore(relpath, f"duplicate of {first_relpath}")

    def _entries(self, relpath: str) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root / relpath) as entries:
                return sorted(entries, key=lambda entry: entry.name)
        except PermissionError:
            self.skipped.append({"id": relpath or ".", "reason": "cannot read folder (permission denied)"})
            return []

    def _ignore(self, relpath: str, reason: str) -> None:
        self.ignored.append({"id": relpath, "reason": reason})

    def _show(self, real: str) -> str:
        """A loop target as the user knows it: relative to the data folder when inside it."""
        if real == self.real_root:
            return "the data folder itself"
        if _is_within(real, self.real_root):
            return os.path.relpath(real, self.real_root).replace(os.sep, "/")
        return real


def _is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _hidden_reason(entry: os.DirEntry) -> str:
    return "hidden folder" if entry.is_dir() else "hidden file"
