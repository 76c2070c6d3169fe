"""Malformed input to the data hygiene checks (issue 33), in the style of tests/malformed_cases.py: each case
sets up under ``tmp`` and returns CLI argv.

Every case must end with exit code 2 (user error), a single ``error:`` line, no traceback and no change to
anything saved before. Exported as HYGIENE_CASES; HYGIENE_MUST_NAME holds what each case's one line must
contain.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import make_folder


def _runs(tmp: Path) -> str:
    return f"run.root={tmp}/runs"


def _split_folder(tmp: Path) -> Path:
    root = tmp / "images"
    make_folder(root / "train", classes=("cat", "dog"), per_class=6, seed=0)
    make_folder(root / "val", classes=("cat", "dog"), per_class=3, seed=1)
    return root


def duplicates_policy_typo(tmp):
    return ["data", "inspect", str(_split_folder(tmp)), _runs(tmp), "data.duplicates=drop"]


def refuse_a_copy_across_splits(tmp):
    root = _split_folder(tmp)
    shutil.copy(root / "train" / "cat" / "002.png", root / "val" / "cat" / "again.png")
    return ["data", "inspect", str(root), _runs(tmp), "data.duplicates=refuse"]


def unreadable_exif_in_strict_mode(tmp):
    root = make_folder(tmp / "images")
    pixels = np.full((12, 12, 3), 90, np.uint8)
    Image.fromarray(pixels).save(root / "cat" / "bad_exif.jpg", exif=b"Exif\x00\x00this is no TIFF structure")
    return ["data", "inspect", str(root), _runs(tmp), "data.strict=true"]


HYGIENE_CASES = [duplicates_policy_typo, refuse_a_copy_across_splits, unreadable_exif_in_strict_mode]

HYGIENE_MUST_NAME = {
    duplicates_policy_typo: "data.duplicates must be one of drop_heldout, refuse, keep (got drop)",
    refuse_a_copy_across_splits: "'train/cat/002.png' (train) and 'val/cat/again.png' (val) have identical pixels",
    unreadable_exif_in_strict_mode: "cat/bad_exif.jpg: unreadable EXIF block",
}
