"""Data that will train, but not meaningfully: said once, before training, in the run's log.

Nothing here is an error (a user may want a quick smoke run on a tiny folder), but each case
changes what the numbers mean, so it must not pass silently: small splits, one class, a batch
larger than the data, and what the files hide (copies kept across splits or filed under two
classes, an EXIF orientation only one class has; ``visrep.data.duplicates``, ``visrep.data.findings``).
"""

from __future__ import annotations

from visrep.data.duplicates import duplicate_warnings
from visrep.data.findings import orientation_warnings

MIN_EVAL_IMAGES_PER_CLASS = 5  # below this a class's val/test accuracy moves in steps of 20 % or more


def data_warnings(manifest: dict, batch_size: int) -> list[str]:
    """Plain-language warnings about a prepared dataset for training at ``batch_size``."""
    counts = manifest["counts"]  # {split: {class: n}}
    classes = manifest["classes"]
    warnings = []
    if len(classes) < 2:
        warnings.append(f"only one class ({classes[0] if classes else 'none'}): every prediction is right, so "
                        "accuracy is 1.0 whatever the network learns")
    train = sum(counts.get("train", {}).values())
    if batch_size > train:
        warnings.append(f"data.batch_size={batch_size} is larger than the {train} training images: one step per "
                        f"epoch; a smaller batch (e.g. data.batch_size={_smaller_batch(train)}) trains more steps")
    for split in ("val", "test"):
        per_class = counts.get(split, {})
        if not sum(per_class.values()):
            continue
        few = sorted(name for name in classes if per_class.get(name, 0) < MIN_EVAL_IMAGES_PER_CLASS)
        if few:
            shown = ", ".join(f"{name} ({per_class.get(name, 0)})" for name in few[:5])
            warnings.append(f"{split} has fewer than {MIN_EVAL_IMAGES_PER_CLASS} images of {shown}"
                            f"{' and more' if len(few) > 5 else ''}: per-class {split} figures are very noisy")
    # what the files themselves hide: copies kept across splits or under two labels, one class's EXIF orientation
    return warnings + duplicate_warnings(manifest.get("duplicates", {})) + orientation_warnings(manifest)


def _smaller_batch(train: int) -> int:
    """The largest power of two giving at least ~8 steps per epoch."""
    batch = 1
    while batch * 2 * 8 <= train:
        batch *= 2
    return batch
