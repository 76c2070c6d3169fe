"""The report's pictures of a generator: each class real beside generated, variations of given test images,
interpolations between two test images, and (diffusion) the classifier-free guidance sweep.

Drawn from the run directory alone, with fixed seeds, through the same API as ``visrep sample``.
Given images come from the held-out test split, so variations are of images the generator never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visrep.data.prepare import PreparedData
from visrep.evaluation.generative_report import enlarge
from visrep.figures import save_image_grid
from visrep.generate.generator_run import GeneratorRun, load_generator_run, with_guidance
from visrep.generate.sample import interpolation_between, sample_class, variations_of

GIVEN_FRAME = (220, 40, 40)  # RGB frame around a given (real) image in a grid
SHOWN_SIZE = 48  # pixels: small images are enlarged by a whole factor to at least this


@dataclass
class Picture:
    file: str  # PNG file name in the report folder
    title: str
    caption: str


def generator_pictures(run_path: Path, name: str, data: PreparedData, options, out: Path) -> list[Picture]:
    """Every picture this generator supports, written to ``out``; the list says what each shows."""
    run = load_generator_run(run_path)
    pictures = [_classes(run, name, data, options, out)] if run.mode != "none" else []
    if run.mode == "embedding" and options.variations > 0:
        pictures.append(_variations(run, name, data, options, out))
    if run.mode == "embedding" and options.interpolations > 0:
        pictures.append(_interpolations(run, name, data, options, out))
    if name == "diffusion" and run.mode != "none" and len(options.guidance_scales) > 0:
        pictures.append(_guidance_sweep(run, name, data, options, out))
    return pictures


def real_class_row(split, label: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random images of class ``label`` from ``split``, uint8 (count, C, S, S), white where it has fewer."""
    chosen = rng.permutation(np.flatnonzero(split.labels.numpy() == label))[:count]
    shape = split.image_shape
    images = split.uint8_batch(chosen) if len(chosen) else torch.zeros(0, *shape, dtype=torch.uint8)
    return torch.cat([images, torch.full((count - len(images), *shape), 255, dtype=torch.uint8)])


def _classes(run, name: str, data: PreparedData, options, out: Path) -> Picture:
    """Per class: ``per_class`` real test images, a gap, then ``per_class`` generated ones."""
    rng = np.random.default_rng(options.seed)
    rows, names = [], []
    blank = torch.full((1, *data.image_shape), 255, dtype=torch.uint8)
    for index, class_name in enumerate(data.class_names):
        real = real_class_row(data.splits["test"], index, options.per_class, rng)
        generated = sample_class(run, index, options.per_class, options.seed + index).images
        rows.append(torch.cat([real, blank, generated]))
        names.append(f"{class_name}: real | generated")
    file = f"{name}_classes.png"
    save_image_grid(enlarge(torch.cat(rows), SHOWN_SIZE), out / file, nrow=2 * options.per_class + 1, row_labels=names)
    return Picture(file, f"{name}: real and generated, class by class",
                   f"Each row is one class: {options.per_class} real test images on the left, {options.per_class} "
                   f"generated for that class on the right. Good: the right half looks like the left, and the "
                   f"generated images differ from each other.")


def _test_images_of_distinct_classes(data: PreparedData, count: int, seed: int) -> torch.Tensor:
    """``count`` test images, classes taken in turn (0, 1, 2, ...), chosen with ``seed``: uint8 (count, C, S, S)."""
    labels = data.splits["test"].labels.numpy()
    rng = np.random.default_rng(seed)
    classes = len(data.class_names)
    rows = [int(rng.choice(np.flatnonzero(labels == (i % classes)))) for i in range(count)
            if (labels == (i % classes)).any()]
    return data.splits["test"].uint8_batch(np.asarray(rows, dtype=np.int64))


def _variations(run, name: str, data: PreparedData, options, out: Path) -> Picture:
    given = _test_images_of_distinct_classes(data, options.variations, options.seed)
    per_image = options.variations_per_image
    rows = [torch.cat([image[None], variations_of(run, image, per_image, options.seed + i).images])
            for i, image in enumerate(given)]
    file = f"{name}_variations.png"
    frames = ([GIVEN_FRAME] + [None] * per_image) * len(rows)
    save_image_grid(enlarge(torch.cat(rows), SHOWN_SIZE), out / file, nrow=per_image + 1, frames=frames)
    return Picture(file, f"{name}: variations of given images",
                   f"The framed image on the left of each row is a real test image the generator never trained on; "
                   f"the {per_image} images beside it are generated from its embedding in the classifier (its "
                   f"\"meaning\" to the CNN), each with other noise. Good: same class and style, varied details.")


def _interpolations(run, name: str, data: PreparedData, options, out: Path) -> Picture:
    ends = _test_images_of_distinct_classes(data, 2 * options.interpolations, options.seed + 1)
    steps = options.interpolation_steps
    rows = [torch.cat([ends[2 * i][None], interpolation_between(run, ends[2 * i:2 * i + 2], steps,
                                                                options.seed + i).images, ends[2 * i + 1][None]])
            for i in range(len(ends) // 2)]
    file = f"{name}_interpolations.png"
    frames = ([GIVEN_FRAME] + [None] * steps + [GIVEN_FRAME]) * len(rows)
    save_image_grid(enlarge(torch.cat(rows), SHOWN_SIZE), out / file, nrow=steps + 2, frames=frames)
    return Picture(file, f"{name}: interpolations between two images",
                   f"Each row walks from the embedding of the framed test image on the left to the one on the right "
                   f"in {steps} steps, with the noise held fixed. Good: every step is a plausible image, and the "
                   f"change is gradual.")


def _guidance_sweep(run: GeneratorRun, name: str, data: PreparedData, options, out: Path) -> Picture:
    """Rows: guidance scales; columns: classes; the same noise in every row, so only the scale changes."""
    rows = []
    for scale in options.guidance_scales:
        guided = with_guidance(run, scale)
        rows.append(torch.cat([sample_class(guided, index, 1, options.seed + index).images
                               for index in range(len(data.class_names))]))
    file = f"{name}_guidance.png"
    labels = [f"scale {float(scale):g}" for scale in options.guidance_scales]
    save_image_grid(enlarge(torch.cat(rows), SHOWN_SIZE), out / file, nrow=len(data.class_names), row_labels=labels,
                    column_labels=[str(name) for name in data.class_names])
    return Picture(file, f"{name}: classifier-free guidance sweep",
                   "One column per class, one row per guidance scale s (0: the unconditional model, 1: the "
                   "conditional one, above 1: pushed further towards the condition), with the same noise in every "
                   "row. Higher s usually gives clearer, more typical images and less variety.")
