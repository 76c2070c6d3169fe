"""The split manifest: which item is in which split, with which label — saved as JSON.

Same source + seed → byte-identical file: items keep the scan's sorted order, keys are sorted,
and nothing time- or machine-dependent goes into the hashed part. ``hash`` is a SHA-256 over
the class names and the (id, label, split) list, so two runs on the same data share it even
if the folder was moved.

A split the source did not come with (a folder with train/ and val/ but no test/, or a torchvision
set's val) is carved from train; ``carved`` says which and with what fraction. It is present only
when something was carved, and like every key outside classes and items it is not hashed.

Keys about the files themselves, each present only when it has something to say (``extra``):
``duplicates`` (files with identical pixels: ``visrep.data.duplicates``; copies removed from a
held-out split are not among the items, so the hash changes with them), ``orientation``,
``exif_unreadable`` and ``animated`` (``visrep.data.findings``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from visrep.data.splits import SPLITS

MANIFEST_FORMAT = "visrep-manifest/1"


def build_manifest(source: dict, class_names: list[str], ids: list[str], labels, splits, skipped: list[dict],
                   seed: int, fractions: dict, extra: dict | None = None) -> dict:
    items = [{"id": i, "label": int(l), "split": str(s)} for i, l, s in zip(ids, labels, splits)]
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": source,
        "classes": list(class_names),
        "seed": seed,
        "fractions": fractions,
        "counts": split_counts(items, class_names),
        "skipped": sorted(skipped, key=lambda entry: entry["id"]),
        "items": items,
        "hash": manifest_hash(class_names, items),
    }
    carved = carved_splits(source, items, fractions)
    if carved:
        manifest["carved"] = carved
    manifest.update(extra or {})
    return manifest


def carved_splits(source: dict, items: list[dict], fractions: dict) -> dict:
    """{split: {"from": "train", "fraction": f}} for each split the source lacked but the items have."""
    given = source.get("splits_given")
    if given is None:  # a source without splits of its own: every split is drawn, as documented
        return {}
    present = {item["split"] for item in items}
    return {split: {"from": "train", "fraction": fractions[split]} for split in ("val", "test")
            if split not in given and split in present}


def manifest_hash(class_names: list[str], items: list[dict]) -> str:
    canonical = json.dumps({"classes": list(class_names), "items": items}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def split_counts(items: list[dict], class_names: list[str]) -> dict:
    counts = {split: Counter() for split in SPLITS}
    for item in items:
        counts[item["split"]][class_names[item["label"]]] += 1
    return {split: {name: counts[split][name] for name in class_names} for split in SPLITS}


def write_manifest(manifest: dict, path: Path) -> None:
    # One item per line keeps the file diffable and ~1 MB per 10k images.
    head = {key: value for key, value in manifest.items() if key != "items"}
    lines = [json.dumps(item, sort_keys=True) for item in manifest["items"]]
    text = json.dumps(head, sort_keys=True, indent=1)[:-2] + ',\n "items": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    path.write_text(text)


def read_manifest(path: Path) -> dict:
    return json.loads(Path(path).read_text())
