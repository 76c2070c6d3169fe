"""What the near-duplicate search leaves behind for one layer, and how it is shown.

``<layer>/near_duplicates.json``: the rule, per-class thresholds, every flagged pair (up to
``near_duplicates.MAX_LISTED`` per list) and the counts; ``<layer>/near_duplicates.png``: the closest
val/test → train pairs as thumbnails. A short summary (counts and the top pairs) goes into that
layer's ``analysis.json``, from which ``analysis.md`` and the pipeline report are written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from visrep.embeddings.near_duplicates import DuplicateRule, find_near_duplicates
from visrep.embeddings.plots import save_pair_grid
from visrep.representations.store import SPLIT_NAMES, EmbeddingSet, write_json

JSON_FILE, FIGURE_FILE = "near_duplicates.json", "near_duplicates.png"
FIGURE_PAIRS = 12  # rows of the thumbnail figure
SUMMARY_CROSS, SUMMARY_WITHIN = 20, 5  # pairs copied into analysis.json (and so into analysis.md)
PAIR_HEADER = ["split", "image", "class", "nearest train image", "train class", "cosine", "threshold"]


def write_near_duplicates(folder: Path, train: EmbeddingSet, held_out: dict[str, EmbeddingSet], rule: DuplicateRule,
                          data=None) -> dict:
    """Search, write the JSON (and the figure when ``data`` holds the images), return the summary."""
    found = find_near_duplicates(train, held_out, rule)
    cross, inside = found["cross_split"], found["within_train"]
    figure = None
    (folder / FIGURE_FILE).unlink(missing_ok=True)  # an earlier analysis's pairs must not stay beside these
    if data is not None and cross["pairs"]:
        figure = _write_figure(folder / FIGURE_FILE, cross["pairs"][:FIGURE_PAIRS], data).name
    write_json(folder / JSON_FILE, {**found, "figure": figure})
    return {"file": JSON_FILE, "figure": figure, "rule": found["rule"]["text"], "queries": found["queries"],
            "cross_split": {**cross, "pairs": cross["pairs"][:SUMMARY_CROSS]},
            "within_train": {**inside, "pairs": inside["pairs"][:SUMMARY_WITHIN]},
            "closest_unflagged": found["closest_unflagged"]}


def _write_figure(path: Path, pairs: list[dict], data) -> Path:
    """Rows: the val/test image, then its train neighbour; the similarity and both ids as the row label."""
    left = _images(data, [(pair["split"], pair["index"]) for pair in pairs])
    right = _images(data, [("train", pair["train_index"]) for pair in pairs])
    labels = [f"{cosine_text(pair['similarity'])}  {_named(pair['id'], pair['split'])}  ~  "
              f"{_named(pair['train_id'], 'train')}" for pair in pairs]
    differ = [pair["class"] != pair["train_class"] for pair in pairs]
    return save_pair_grid(left, right, labels, ["val/test", "train"], path, differ)


def _named(sample_id: str, split: str) -> str:
    """The id with its split in front, once ("val/cat/1.png" from a split folder already has it)."""
    return sample_id if sample_id.startswith(f"{split}/") else f"{split}: {sample_id}"


def _images(data, positions: list[tuple[str, int]]) -> torch.Tensor:
    """uint8 (P, C, H, W) images at (split, position) in the order given."""
    return torch.cat([data.splits[split].uint8_batch(np.array([index])) for split, index in positions])


def pair_rows(pairs: list[dict]) -> list[list[str]]:
    """Table rows (PAIR_HEADER) for pairs from the JSON or the summary."""
    return [[pair["split"], pair["id"], pair["class"], pair["train_id"], pair["train_class"],
             cosine_text(pair["similarity"]), cosine_text(pair.get("threshold"))]
            for pair in pairs]


def headline(summary: dict, layer: str) -> str:
    """One sentence: how many val/test images have a near-copy in train, and how many pairs sit inside train."""
    queries, cross = summary["queries"], summary["cross_split"]
    inside = summary["within_train"]["count"]
    within = f"{inside} near-duplicate pair{'s' if inside != 1 else ''} inside train"
    if not queries:
        return f"Near-duplicates at {layer}: no val or test embeddings, so only train was searched: {within}."
    counts = ", ".join(f"{split} {cross['by_split'].get(split, 0)} of {queries[split]}"
                       for split in SPLIT_NAMES if split in queries)
    if cross["count"] == 0:
        return (f"Near-duplicates at {layer}: none found between splits — no val or test image is that close to a "
                f"train image ({counts}); {within}.")
    return (f"Near-duplicates at {layer}: {cross['count']} val/test image{'s have' if cross['count'] != 1 else ' has'} "
            f"a near-duplicate in train ({counts}): they leak training images into the held-out scores; {within}.")


def markdown_lines(summary: dict, layer: str) -> list[str]:
    """The analysis.md block: headline, rule, the pairs table, the figure, the train pairs, the margin."""
    lines = ["", headline(summary, layer), "", f"Rule: {summary['rule']}.", ""]
    cross = summary["cross_split"]
    if cross["pairs"]:
        lines += _table(pair_rows(cross["pairs"]))
        more = cross["count"] - len(cross["pairs"])
        lines += [f"… and {more} more in {layer}/{summary['file']}." if more > 0 else "", ""]
    if summary.get("figure"):
        lines += [f"![closest val/test → train near-duplicates]({layer}/{summary['figure']})", ""]
    for pair in summary["within_train"]["pairs"]:
        lines.append(f"- inside train: {pair['id']} ~ {pair['train_id']} (cosine {cosine_text(pair['similarity'])})")
    closest = summary.get("closest_unflagged") or []
    if closest:
        pair = closest[0]
        lines += ["", f"Closest val/test pair not flagged: {pair['id']} ~ {pair['train_id']} (cosine "
                      f"{cosine_text(pair['similarity'])}, threshold {cosine_text(pair.get('threshold'))})."]
    return [line for index, line in enumerate(lines) if line or (index and lines[index - 1])]  # no double blanks


def cosine_text(value) -> str:
    """A cosine with enough decimals to show how far below 1 it is (0.99915, 0.9999987)."""
    if value is None:
        return "–"
    gap = 1 - value
    decimals = 5 if gap >= 1e-4 else min(9, 2 - math.floor(math.log10(max(gap, 1e-9))))
    return f"{value:.{decimals}f}"


def _table(rows: list[list[str]]) -> list[str]:
    cells = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
    return (["| " + " | ".join(PAIR_HEADER) + " |", "|" + "---|" * len(PAIR_HEADER)]
            + ["| " + " | ".join(row) + " |" for row in cells])
