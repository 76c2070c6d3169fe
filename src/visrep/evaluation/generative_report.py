"""The human-readable side of a generative evaluation: Markdown/HTML tables and image grids.

Every number sits beside its real-vs-real floor, so a reader sees at once how far a generator is
from "as good as fresh real data"; in-loop numbers appear only when requested, labelled optimistic.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch

from visrep.evaluation.memorisation import closest_pairs
from visrep.figures import save_image_grid

# (label, path into a metrics block, format); ↓ lower is better, ↑ higher is better
ROWS: list[tuple[str, tuple, str]] = [
    ("FID (evaluator space) ↓", ("fid",), "num"),
    ("KID ↓ (± standard error)", ("kid",), "kid"),
    ("precision (k-NN) ↑", ("prdc", "precision"), "num"),
    ("recall (k-NN) ↑", ("prdc", "recall"), "num"),
    ("density ↑", ("prdc", "density"), "num"),
    ("coverage ↑", ("prdc", "coverage"), "num"),
    ("GAN-test accuracy ↑", ("gan_test", "accuracy"), "num"),
    ("CAS accuracy (train on these, test on real) ↑", ("cas", "accuracy"), "num"),
    ("per-class KID, mean over classes ↓", ("class_kid", "mean"), "num"),
    ("memorisation: share close to a training image (features)", ("memorisation", "features", "close_fraction"), "num"),
    ("memorisation: share close to a training image (pixels)", ("memorisation", "pixels", "close_fraction"), "num"),
    ("memorisation: median nearest-train distance / real's (features)", ("memorisation", "features", "median_ratio"),
     "num"),
    ("memorisation: median nearest-train distance / real's (pixels)", ("memorisation", "pixels", "median_ratio"),
     "num"),
    ("memorisation flagged", ("memorisation", "flagged"), "flag"),
    ("embedding consistency: cosine to conditioning image ↑", ("embedding_consistency", "sample_to_condition", "mean"),
     "num"),
]
FLOOR_ALIASES = {("embedding_consistency", "sample_to_condition", "mean"):
                 ("embedding_consistency", "real_same_class_pairs", "mean")}


def lookup(block: dict | None, path: tuple):
    for key in path:
        if not isinstance(block, dict) or key not in block:
            return None
        block = block[key]
    return block


def format_value(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "kid":
        return f"{value['value']:.4g} ± {value['std_error']:.2g}"
    if kind == "flag":
        return "**FLAGGED**" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _floor_flag(value) -> str:
    """The floor's "generated" images are real training images: being close to the training set is what
    they are, so a flag there is no finding (it read "FLAGGED" beside the model's verdict)."""
    return "—" if value is None else "n/a (real training images)"


def table_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: metric | generated | real-vs-real floor | in-loop (if any); rows without data left out."""
    columns = [("generated", metrics.get("model"), False), ("real-vs-real floor", metrics.get("floor"), True)]
    if metrics.get("in_loop"):
        columns.append(("in-loop, optimistic", metrics["in_loop"], False))
    rows = []
    for label, path, kind in ROWS:
        cells = [_floor_flag(lookup(block, FLOOR_ALIASES.get(path, path))) if is_floor and kind == "flag"
                 else format_value(lookup(block, FLOOR_ALIASES.get(path, path) if is_floor else path), kind)
                 for _, block, is_floor in columns]
        if cells[0] != "—":
            rows.append([label, *cells])
    return ["metric", *(name for name, _, _ in columns)], rows


def class_rows(metrics: dict) -> list[list[str]]:
    model, floor = metrics.get("model", {}), metrics.get("floor") or {}
    per_class = lookup(model, ("gan_test", "per_class"))
    if not per_class:
        return []
    rows = []
    for name in per_class:
        kid_model = lookup(model, ("class_kid", "per_class", name))
        kid_floor = lookup(floor, ("class_kid", "per_class", name))
        rows.append([name, format_value(per_class[name], "num"), format_value(kid_model, "kid"),
                     format_value(kid_floor, "kid")])
    return rows


def _notes(metrics: dict) -> list[str]:
    evaluator = metrics["evaluator"]
    notes = [f"N = {metrics['n']} generated vs {metrics['n']} real ({metrics['real']['source']}, "
             f"{metrics['real']['split']} split); images scored: {metrics['fake'].get('path')}",
             f"evaluator: {evaluator['model']} (seed {evaluator['seed']}, {evaluator['num_features']}-d features, "
             f"test accuracy {format_value(evaluator.get('test_accuracy'), 'num')}), weights sha256 "
             f"{evaluator['weights_sha256'][:16]}… — {evaluator['run']}",
             f"independence from the generator's networks: {metrics['independence']}",
             "floor: FID/KID/PRDC/CAS/per-class KID use N training images as the 'generated' set; GAN-test is the "
             "evaluator on the held-out real images; memorisation uses validation images; embedding consistency "
             "uses two real images of the same class."]
    if metrics.get("in_loop"):
        notes.append(f"in-loop numbers use {metrics['in_loop']['network']}, which shaped the generator: "
                     "optimistic, not comparable")
    return notes + [f"warning: {warning}" for warning in metrics.get("warnings", [])]


def format_markdown(metrics: dict) -> str:
    header, rows = table_rows(metrics)
    lines = ["## Generative evaluation", ""] + [f"- {note}" for note in _notes(metrics)] + [""]
    lines += _markdown_table(header, rows)
    per_class = class_rows(metrics)
    if per_class:
        lines += ["", "### Per class", ""]
        lines += _markdown_table(["class", "GAN-test accuracy", "KID generated", "KID floor"], per_class)
    if metrics.get("inception"):
        inception = metrics["inception"]
        lines += ["", f"Inception-v3 (local weights): FID {inception['fid']:.4g}, "
                      f"KID {format_value(inception['kid'], 'kid')}"]
    lines += ["", *(f"![{name}]({path})" for name, path in metrics.get("grids", {}).items())]
    timing = metrics.get("timing", {})
    lines += ["", f"Scored in {timing.get('total_seconds', 0):.1f} s."]
    return "\n".join(lines) + "\n"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |"
                                                                          for row in rows]


def format_html(metrics: dict) -> str:
    header, rows = table_rows(metrics)
    parts = ["<section class='generative-evaluation'>", "<h2>Generative evaluation</h2>", "<ul>"]
    parts += [f"<li>{html.escape(note)}</li>" for note in _notes(metrics)] + ["</ul>", _html_table(header, rows)]
    per_class = class_rows(metrics)
    if per_class:
        parts += ["<h3>Per class</h3>", _html_table(["class", "GAN-test accuracy", "KID generated", "KID floor"],
                                                    per_class)]
    parts += [f"<figure><img src='{html.escape(path)}' alt='{html.escape(name)}'><figcaption>{html.escape(name)}"
              "</figcaption></figure>" for name, path in metrics.get("grids", {}).items()]
    return "\n".join(parts + ["</section>"]) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(tag: str, text: str) -> str:
        return f"<{tag}>{html.escape(text.replace('**', ''))}</{tag}>"

    head = "<tr>" + "".join(cell("th", text) for text in header) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", text) for text in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


# ---- grids -------------------------------------------------------------------------------------

def save_grids(run_path: Path, context, fake_side, nearest: dict) -> dict:
    """real_vs_generated.png (per class when labels exist) and memorisation_nearest.png; {name: file name}."""
    grids = {"real vs generated": _class_grid(run_path / "real_vs_generated.png", context, fake_side)}
    pairs = closest_pairs(nearest["features"], nearest["features_index"], 16)
    images = torch.stack([image for generated, train in pairs
                          for image in (fake_side.images[generated], context.bank_images[train])])
    save_image_grid(enlarge(images), run_path / "memorisation_nearest.png", nrow=8,
                    row_labels=["generated | nearest train"] * -(-len(images) // 8))
    grids["generated beside nearest training image"] = "memorisation_nearest.png"
    return grids


def _class_grid(path: Path, context, fake_side) -> str:
    per_row = context.opts.grid_per_class
    rng = np.random.default_rng(context.opts.seed)
    real = context.real
    if fake_side.labels is None:
        rows = [_row(real.images, np.arange(len(real.images)), per_row * 2, rng),
                _row(fake_side.images, np.arange(len(fake_side.images)), per_row * 2, rng)]
        save_image_grid(enlarge(torch.cat(rows)), path, nrow=per_row * 2, row_labels=["real", "generated"])
        return path.name
    rows, labels = [], []
    for index, name in enumerate(context.class_names):
        real_rows = np.flatnonzero(real.labels == index)
        fake_rows = np.flatnonzero(fake_side.labels == index)
        spacer = torch.full((1, *real.images.shape[1:]), 255, dtype=torch.uint8)
        rows.append(torch.cat([_row(real.images, real_rows, per_row, rng), spacer,
                               _row(fake_side.images, fake_rows, per_row, rng)]))
        labels.append(f"{name}: real | gen")
    save_image_grid(enlarge(torch.cat(rows)), path, nrow=2 * per_row + 1, row_labels=labels)
    return path.name


def enlarge(images: torch.Tensor, min_size: int = 32) -> torch.Tensor:
    """Nearest-neighbour upscaling by a whole factor so small images (8–28 px) stay visible: (N, C, H, W)."""
    factor = max(1, -(-min_size // images.shape[-1]))
    return images.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2) if factor > 1 else images


def _row(images: torch.Tensor, candidates: np.ndarray, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` images drawn from ``candidates`` rows, padded with white when there are fewer."""
    chosen = rng.choice(candidates, min(count, len(candidates)), replace=False) if len(candidates) else []
    picked = images[torch.as_tensor(np.asarray(chosen, dtype=np.int64))]
    blank = torch.full((count - len(picked), *images.shape[1:]), 255, dtype=torch.uint8)
    return torch.cat([picked, blank])
