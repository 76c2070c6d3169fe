"""What decoding did to files that are not plain still images, as the manifest records it and the user is told.

- ``orientation``: EXIF orientation tags, applied before resizing (``visrep.data.images``):
  ``counts`` per tag value, ``by_class`` per value, and ``applied``, the files turned or mirrored
  (values 2-8). An orientation other than upright that only one class has, in at least
  ``MIN_SHORTCUT_FILES`` files, is warned about: those photos come from one camera or way of
  holding it, a cue for that class only, and any tool that ignores EXIF sees them turned.
- ``exif_unreadable``: files whose EXIF block could not be read, decoded as stored (unrotated);
  under ``data.strict=true`` they are an error instead (``visrep.data.sources``).
- ``animated``: animations and multi-page files, of which the first frame is used.

Each key is present only when it has something to say, and none is hashed (the items are).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

MIN_SHORTCUT_FILES = 3  # fewer files with one class's orientation than this are not called a pattern
ORIENTATION_NAMES = {1: "upright", 2: "mirrored", 3: "upside down", 4: "mirrored upside down",
                     5: "mirrored and turned", 6: "turned 90° clockwise to view", 7: "mirrored and turned",
                     8: "turned 90° counter-clockwise to view"}
SHOWN = 5  # files named in a summary line; all are in manifest.json


def decode_record(ids: list[str], labels: np.ndarray, class_names: list[str], orientations: np.ndarray | None,
                  frames: np.ndarray | None, exif_problems: list[dict]) -> dict:
    """The manifest keys above for the kept items (``ids``, with the per-item arrays already subset)."""
    record = {}
    if orientations is not None and np.any(orientations > 0):
        record["orientation"] = _orientation_record(ids, labels, class_names, orientations)
    kept = set(ids)
    unreadable = [entry for entry in exif_problems if entry["id"] in kept]
    if unreadable:
        record["exif_unreadable"] = sorted(unreadable, key=lambda entry: entry["id"])
    if frames is not None and np.any(frames > 1):
        record["animated"] = [{"id": ids[i], "frames": int(frames[i])} for i in np.flatnonzero(frames > 1)]
    return record


def _orientation_record(ids: list[str], labels: np.ndarray, class_names: list[str], orientations: np.ndarray) -> dict:
    tagged = np.flatnonzero(orientations > 0)
    by_class = {}
    for value in sorted(set(int(orientations[i]) for i in tagged)):
        per_class = Counter(class_names[labels[i]] for i in tagged if orientations[i] == value)
        by_class[str(value)] = dict(sorted(per_class.items()))
    return {"counts": {value: sum(per_class.values()) for value, per_class in by_class.items()},
            "by_class": by_class,
            "applied": [{"id": ids[i], "orientation": int(orientations[i])} for i in tagged if orientations[i] > 1]}


def orientation_warnings(manifest: dict) -> list[str]:
    """An orientation other than upright in one class only (and in enough files to be a pattern)."""
    by_class = manifest.get("orientation", {}).get("by_class", {})
    if len(manifest.get("classes", [])) < 2:
        return []
    warnings = []
    for value, per_class in by_class.items():
        count = sum(per_class.values())
        if value != "1" and len(per_class) == 1 and count >= MIN_SHORTCUT_FILES:
            name = next(iter(per_class))
            warnings.append(f"EXIF orientation {value} ({ORIENTATION_NAMES[int(value)]}) occurs in {count} images, "
                            f"all of class '{name}': they are decoded upright, but the camera or grip behind the tag "
                            f"is a cue only that class has (and tools that ignore EXIF see them turned)")
    return warnings


def summary_lines(manifest: dict) -> list[str]:
    """Lines for ``visrep data inspect``."""
    lines = []
    orientation = manifest.get("orientation")
    if orientation:
        counts = ", ".join(f"{value} ({ORIENTATION_NAMES[int(value)]}): {n}"
                           for value, n in orientation["counts"].items())
        lines.append(f"EXIF orientation applied before resizing, {len(orientation['applied'])} file(s) turned or "
                     f"mirrored; tags {counts}")
    for key, what in (("exif_unreadable", "unreadable EXIF blocks (decoded as stored, not rotated)"),
                      ("animated", "animated or multi-page (first frame used)")):
        entries = manifest.get(key, [])
        if entries:
            more = f" and {len(entries) - SHOWN} more (all in manifest.json)" if len(entries) > SHOWN else ""
            lines.append(f"{what}: {len(entries)}: {', '.join(entry['id'] for entry in entries[:SHOWN])}{more}")
    return lines
