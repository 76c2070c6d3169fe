"""Exact duplicates: files whose decoded pixels are identical, whatever their names, formats or bytes.

Found by the pixel hash each image gets where it is decoded for the cache (``visrep.data.images``,
``visrep.data.cache``): no second decode, and a cache hit costs nothing. Near-duplicates (a re-save
at another JPEG quality, a crop) are not looked for: they would need a similarity threshold, and
this is the check that can be exact.

Where the copies sit decides what happens:
- **across splits** a copy would be both trained on and scored: the held-out score would be
  partly memorised. ``data.duplicates`` chooses: ``drop_heldout`` (default) removes the held-out
  copies, so val and test keep no image whose pixels equal a train image, and between val and
  test, test loses it; ``refuse`` stops with an error naming two of the files; ``keep`` leaves
  them (listed, and the run's log warns that val/test scores are optimistic). Only splits the user
  gave can separate copies: splits visrep carves keep copies together (``visrep.data.splits``).
- **within one split** copies are listed, not removed: they weigh an image twice, which the user
  may have meant.
- **across classes** (the same pixels under two labels) copies are also warned about: one of the
  labels is wrong, or the classes cannot be told apart.

Every group of copies is recorded in the manifest's ``duplicates`` (present only when there are
copies). Removed files are not among the manifest's items, so its hash changes with them.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from visrep.errors import UserError

KEPT_FIRST = ("train", "val", "test")  # a copy is kept in the first of these splits it sits in
SHOWN = 3  # groups shown by name in a summary; all are in manifest.json


def group_ids(pixel_hashes: list[str] | None) -> np.ndarray | None:
    """One integer per item, equal for items with identical pixels; None when the source has no hashes."""
    if pixel_hashes is None:
        return None
    return np.unique(np.asarray(pixel_hashes, dtype=object), return_inverse=True)[1].reshape(-1)


def resolve_duplicates(groups: np.ndarray | None, splits: np.ndarray, ids: list[str], labels: np.ndarray,
                       class_names: list[str], policy: str) -> tuple[np.ndarray, dict]:
    """(which items to keep, the manifest's ``duplicates`` record or {}) under ``policy``."""
    keep = np.ones(len(ids), dtype=bool)
    copies = _copy_groups(groups, splits)
    if not copies:
        return keep, {}
    cross = [rows for rows in copies if len(set(splits[rows])) > 1]
    if cross and policy == "refuse":
        raise UserError(_refusal(cross, splits, ids))
    record = {"policy": policy, "cross_split": [], "within_split": []}
    for rows in copies:
        entry = {"files": [ids[r] for r in rows], "splits": [str(splits[r]) for r in rows],
                 "classes": [class_names[labels[r]] for r in rows]}
        if len(set(entry["splits"])) == 1:
            record["within_split"].append(entry)
            continue
        if policy == "drop_heldout":
            removed = _held_out_copies(rows, splits)
            keep[removed] = False
            entry["removed"] = [ids[r] for r in removed]
        record["cross_split"].append(entry)
    record["removed"] = int(np.count_nonzero(~keep))
    return keep, record


def _copy_groups(groups: np.ndarray | None, splits: np.ndarray) -> list[list[int]]:
    """Rows of each group with at least two items, the copy kept first (train, then val, then test; then the
    scan's order), groups in the order of their kept copies."""
    if groups is None:
        return []
    rows = defaultdict(list)
    for row, group in enumerate(groups):
        rows[int(group)].append(row)

    def order(row: int) -> tuple[int, int]:
        return KEPT_FIRST.index(splits[row]), row
    return sorted((sorted(members, key=order) for members in rows.values() if len(members) > 1),
                  key=lambda members: order(members[0]))


def _held_out_copies(rows: list[int], splits: np.ndarray) -> list[int]:
    """Every copy outside the split of the one kept (``rows`` come kept first)."""
    return [r for r in rows if splits[r] != splits[rows[0]]]


def _refusal(cross: list[list[int]], splits: np.ndarray, ids: list[str]) -> str:
    rows = cross[0]
    other = next(r for r in rows if splits[r] != splits[rows[0]])
    more = f" ({len(cross)} groups of copies span splits)" if len(cross) > 1 else ""
    return (f"'{ids[rows[0]]}' ({splits[rows[0]]}) and '{ids[other]}' ({splits[other]}) have identical pixels"
            f"{more}: data.duplicates=refuse; remove one copy, or set data.duplicates=drop_heldout (removes the "
            f"held-out copies) or keep")


def announcement(record: dict) -> list[str]:
    """The one line said when copies span splits (printed as the data is prepared), else nothing."""
    cross = record.get("cross_split", [])
    if not cross:
        return []
    if record["policy"] == "keep":
        return [f"{len(cross)} group(s) of copies span splits and are kept (data.duplicates=keep): val/test hold "
                f"images identical to train's, so their scores are optimistic; see manifest.json duplicates"]
    by_split = Counter(split for entry in cross for name, split in zip(entry["files"], entry["splits"])
                       if name in entry["removed"])
    where = ", ".join(f"{split} {by_split[split]}" for split in KEPT_FIRST if by_split[split])
    return [f"{record['removed']} cross-split duplicate(s) removed from val/test ({where}): identical pixels to a "
            f"train image (or, for test, a val image); see manifest.json duplicates"]


def duplicate_warnings(record: dict) -> list[str]:
    """What makes the numbers mean less: copies kept across splits, copies under two labels."""
    warnings = []
    cross = record.get("cross_split", [])
    if cross and record.get("policy") == "keep":
        warnings.append(f"{len(cross)} group(s) of files with identical pixels span splits (data.duplicates=keep): "
                        f"val/test scores are optimistic")
    conflicts = [entry for entry in cross + record.get("within_split", []) if len(set(entry["classes"])) > 1]
    if conflicts:
        warnings.append(f"{len(conflicts)} group(s) of files with identical pixels sit in different classes, e.g. "
                        f"{_show(conflicts[0], 'classes')}: one label is wrong, or the classes cannot be told apart")
    return warnings


def summary_lines(record: dict) -> list[str]:
    """Lines for ``visrep data inspect``: every kind of copy counted, the first few named."""
    if not record:
        return []
    lines = []
    cross, within = record["cross_split"], record["within_split"]
    if cross:
        done = f"{record['removed']} held-out copies removed" if record["policy"] == "drop_heldout" else "kept"
        lines.append(f"copies across splits (data.duplicates={record['policy']}): {len(cross)} group(s), {done}")
        lines.extend(f"  {_show(entry, 'splits')}" for entry in cross[:SHOWN])
    if within:
        files = sum(len(entry["files"]) for entry in within)
        lines.append(f"copies within one split (kept): {len(within)} group(s), {files} files")
        lines.extend(f"  {_show(entry, 'splits')}" for entry in within[:SHOWN])
    if len(cross) > SHOWN or len(within) > SHOWN:
        lines.append("  ... all groups are listed in manifest.json duplicates")
    return lines


def _show(entry: dict, detail: str) -> str:
    removed = set(entry.get("removed", []))
    return " = ".join(f"{name} ({where}{', removed' if name in removed else ''})"
                      for name, where in zip(entry["files"], entry[detail]))
