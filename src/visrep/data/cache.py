"""Decode every image of a folder once, into a uint8 array cached on disk.

The cache key is a SHA-256 over the sorted file list with each file's size and modification
time, plus the output size, channels, resize policy and decoder version. Any added, removed,
renamed or edited file changes the key, so a stale cache is never read (old entries are left
for ``visrep data clean-cache``-style pruning by hand: they are plain folders).

Layout: ``<cache_dir>/decoded/<key>/images.npy`` (N_ok, C, H, W) uint8 and ``meta.json``
(which files decoded, why the others failed, their original sizes and modes, and what the data
hygiene checks need so that they cost no second decode: each image's pixel hash, EXIF
orientation, unreadable EXIF blocks and frame count).

Pixel hashes are taken where the images are decoded (``visrep.data.images``). A large JPEG is
decoded at reduced size, and a hash of reduced pixels is provisional: before the entry is written,
every group of files sharing a reduced hash is decoded once more at full size and re-hashed, so a
stored hash shared by two files always means identical full-size pixels. Only such groups (real
copies, nearly always) pay for a full decode. Not matched: a JPEG decoded at reduced size and a
lossless copy of its decoded pixels in another format (their hashes are taken at different sizes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visrep.data.images import ImageDecodeError, decode_image, full_size_pixel_hash
from visrep.errors import UserError

# In the key, so an entry decoded by older code is never read: 1 = full decode, as stored; 2 = EXIF orientation
# applied, JPEG draft reduction, first frame of animations, pixel hashes kept (issue 33).
DECODER_VERSION = 2
PARALLEL_THRESHOLD = 2000  # files; below this a process pool costs more than it saves


@dataclass
class DecodedImages:
    images: np.ndarray  # (N_ok, C, H, W) uint8, memory-mapped from the cache file
    ok_indices: np.ndarray  # (N_ok,) index into the scanned file list
    failures: list[dict]  # {"id": relpath, "reason": ...}
    original_sizes: np.ndarray  # (N_ok, 2) width, height before resizing
    original_modes: dict[str, int]
    path: Path
    hit: bool
    # per decoded image (rows of ``images``): see visrep.data.images.Decoded
    pixel_hashes: list[str] = field(default_factory=list)
    orientations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    exif_problems: list[dict] = field(default_factory=list)  # {"id": relpath, "reason": ...}


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISREP_CACHE", Path.home() / ".cache" / "visrep"))


def check_cache_writable(folder: Path) -> None:
    """One clear error when the decode cache cannot be written (a file, a read-only or missing mount)."""
    hint = "set data.cache_dir or VISREP_CACHE to a writable folder"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the decode cache {folder} is a file, not a folder; {hint}")
    try:
        (folder / "decoded").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the decode cache {folder}: {err.strerror or err}; {hint}") from None
    if not os.access(folder / "decoded", os.W_OK | os.X_OK):
        raise UserError(f"the decode cache {folder} is not writable; {hint}")


def fingerprint(root: Path, files: list[str], size: int, channels: int, resize: str) -> str:
    digest = hashlib.sha256(f"v{DECODER_VERSION}|{size}|{channels}|{resize}\n".encode())
    for relpath in files:
        try:
            stat = os.stat(root / relpath)
            digest.update(f"{relpath}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{relpath}\tunreadable\n".encode())
    return digest.hexdigest()


def decode_folder(root: Path, files: list[str], size: int, channels: int, resize: str,
                  cache_dir: Path | None = None, workers: int = 2, progress: bool = True) -> DecodedImages:
    """Return the decoded images of ``files``, from the cache when it is valid."""
    key = fingerprint(root, files, size, channels, resize)
    entry = Path(cache_dir or default_cache_dir()) / "decoded" / key[:32]
    if (entry / "meta.json").is_file() and (entry / "images.npy").is_file():
        return _load_entry(entry, hit=True)  # a read-only cache still serves what it holds
    check_cache_writable(entry.parent.parent)  # before minutes of decoding, not after
    results = _confirm_reduced_copies(_decode_all(root, files, size, channels, resize, workers, progress), progress)
    _write_entry(entry, files, results, size, channels)
    return _load_entry(entry, hit=False)


def _decode_one(job: tuple[str, int, int, str]):
    """(path, the Decoded image or None, why it failed or None)."""
    path, size, channels, resize = job
    try:
        return path, decode_image(path, size, channels, resize), None
    except ImageDecodeError as err:
        return path, None, str(err)


def _decode_all(root, files, size, channels, resize, workers, progress):
    jobs = [(str(root / rel), size, channels, resize) for rel in files]
    bar = dict(total=len(jobs), desc="decoding images", unit="img", disable=not progress or len(jobs) < 500,
               leave=False, mininterval=0.5)
    if workers > 1 and len(jobs) >= PARALLEL_THRESHOLD:
        with get_context("fork").Pool(workers) as pool:
            return list(tqdm(pool.imap(_decode_one, jobs, chunksize=256), **bar))
    return [_decode_one(job) for job in tqdm(jobs, **bar)]


def _confirm_reduced_copies(results: list, progress: bool) -> list:
    """Re-hash at full size every file whose reduced-size hash another file shares (see the module docstring)."""
    rows = defaultdict(list)
    for index, (_, decoded, _) in enumerate(results):
        if decoded is not None and decoded.reduced > 1:
            rows[decoded.pixel_hash].append(index)
    shared = [index for group in rows.values() if len(group) > 1 for index in group]
    for index in tqdm(shared, desc="confirming copies at full size", unit="img", leave=False,
                      disable=not progress or len(shared) < 50):
        path, decoded, _ = results[index]
        try:
            results[index] = path, replace(decoded, pixel_hash=full_size_pixel_hash(path)), None
        except ImageDecodeError:  # changed on disk since: its provisional hash stays (matched by nothing)
            pass
    return results


def _write_entry(entry: Path, files: list[str], results: list, size: int, channels: int) -> None:
    ok = [i for i, result in enumerate(results) if result[2] is None]
    decoded = [results[i][1] for i in ok]
    images = np.empty((len(ok), channels, size, size), dtype=np.uint8)
    for row, image in enumerate(decoded):
        images[row] = image.array
    meta = {
        "decoder_version": DECODER_VERSION,
        "ok_indices": ok,
        "failures": [{"id": files[i], "reason": r[2]} for i, r in enumerate(results) if r[2] is not None],
        "original_sizes": [list(image.size) for image in decoded],
        "original_modes": dict(Counter(image.mode for image in decoded)),
        "pixel_hashes": [image.pixel_hash for image in decoded],
        "orientations": [image.orientation for image in decoded],
        "frames": [image.frames for image in decoded],
        "exif_problems": [{"id": files[i], "reason": image.exif_problem}
                          for i, image in zip(ok, decoded) if image.exif_problem],
    }
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    np.save(staging / "images.npy", images)
    (staging / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(staging, entry)  # atomic: a reader never sees a half-written entry
    except OSError:  # another process won the race and wrote the same entry
        shutil.rmtree(staging, ignore_errors=True)


def _load_entry(entry: Path, hit: bool) -> DecodedImages:
    meta = json.loads((entry / "meta.json").read_text())
    images = np.load(entry / "images.npy", mmap_mode="r")
    sizes = np.asarray(meta["original_sizes"], dtype=np.int64).reshape(-1, 2)
    return DecodedImages(images, np.asarray(meta["ok_indices"], dtype=np.int64), meta["failures"],
                         sizes, meta["original_modes"], entry, hit, meta["pixel_hashes"],
                         np.asarray(meta["orientations"], dtype=np.int64), np.asarray(meta["frames"], dtype=np.int64),
                         meta["exif_problems"])
