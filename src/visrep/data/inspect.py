"""A human-readable summary of a prepared data source: counts, image sizes, carved splits, nested
folders, copies (identical pixels), EXIF orientation, animated files, skipped files, and the
warnings about them."""

from __future__ import annotations

import numpy as np

from visrep.data import duplicates, findings
from visrep.data.prepare import PreparedData


def summarize(data: PreparedData) -> dict:
    sizes = data.source.original_sizes
    size_stats = {}
    if sizes is not None and len(sizes):
        for axis, name in enumerate(("width", "height")):
            values = sizes[:, axis]
            size_stats[name] = {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}
        size_stats["distinct_sizes"] = int(len(np.unique(sizes, axis=0)))
    source = dict(data.manifest["source"])
    nested = source.pop("nested_folders", [])  # a line of its own, not a long list inside the source line
    return {
        "source": source,
        "classes": data.class_names,
        "counts": data.manifest["counts"],
        "totals": {split: len(ds) for split, ds in data.splits.items()},
        "image_shape": list(data.image_shape),
        "original_sizes": size_stats,
        "original_modes": data.source.original_modes,
        "carved": data.manifest.get("carved", {}),
        "nested_folders": nested,
        # what the hygiene checks found, as recorded in the manifest (each {} / [] when there is nothing)
        **{key: data.manifest.get(key, {} if key in ("duplicates", "orientation") else [])
           for key in ("duplicates", "orientation", "exif_unreadable", "animated")},
        "skipped": data.manifest["skipped"],
        "normalization": data.normalization.to_dict(),
        "manifest_hash": data.manifest["hash"],
        "cache_hit": data.source.cache_hit,
    }


def format_summary(summary: dict, max_skipped: int = 20) -> str:
    lines = [f"source: {summary['source']}", f"image shape (C, H, W): {tuple(summary['image_shape'])}"]
    lines.append(_count_table(summary["classes"], summary["counts"]))
    sizes = summary["original_sizes"]
    if sizes:
        lines.append("original sizes: " + ", ".join(
            f"{axis} min {sizes[axis]['min']} / median {sizes[axis]['median']:g} / max {sizes[axis]['max']}"
            for axis in ("width", "height")) + f"; {sizes['distinct_sizes']} distinct")
    lines.append("original modes: " + ", ".join(f"{m}: {n}" for m, n in sorted(summary["original_modes"].items())))
    norm = summary["normalization"]
    lines.append("train mean/std: " + " ".join(f"{m:.4f}/{s:.4f}" for m, s in zip(norm["mean"], norm["std"])))
    lines.extend(carved_lines(summary.get("carved", {})))
    lines.extend(_nested_lines(summary.get("nested_folders", [])))
    lines.extend(duplicates.summary_lines(summary.get("duplicates", {})))
    lines.extend(findings.summary_lines(summary))
    lines.extend(f"warning: {line}" for line in duplicates.duplicate_warnings(summary.get("duplicates", {})))
    lines.extend(f"warning: {line}" for line in findings.orientation_warnings(summary))
    skipped = summary["skipped"]
    lines.append(f"skipped files: {len(skipped)}")
    lines.extend(f"  {entry['id']}: {entry['reason']}" for entry in skipped[:max_skipped])
    if len(skipped) > max_skipped:
        lines.append(f"  ... and {len(skipped) - max_skipped} more (all listed in manifest.json)")
    lines.append(f"manifest hash: {summary['manifest_hash']}")
    return "\n".join(lines)


def carved_lines(carved: dict) -> list[str]:
    # Said out loud because a split the user did not make changes what "train" and "test" mean.
    return [f"{split} split carved from train (data.{split}_fraction={entry['fraction']:g} of each class): "
            f"the source has no {split} split of its own" for split, entry in carved.items()]


def _nested_lines(nested: list[str], shown: int = 3) -> list[str]:
    if not nested:
        return []
    more = f" and {len(nested) - shown} more (all in manifest.json)" if len(nested) > shown else ""
    return [f"nested folders taken into their class: {', '.join(nested[:shown])}{more}"]


def _count_table(classes: list[str], counts: dict) -> str:
    width = max([len(c) for c in classes] + [5])
    rows = [f"{'class':<{width}} {'train':>7} {'val':>7} {'test':>7}"]
    for name in classes:
        rows.append(f"{name:<{width}} " + " ".join(f"{counts[s][name]:>7}" for s in ("train", "val", "test")))
    rows.append(f"{'total':<{width}} " + " ".join(f"{sum(counts[s].values()):>7}" for s in ("train", "val", "test")))
    return "\n".join(rows)
