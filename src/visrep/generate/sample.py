"""What to generate: images for a class, variations of a given image, an interpolation between two
images, or unconditional samples — each a :class:`SampleSet` ready to be written and scored.

Conditions per mode (the generator's ``mode``):

* ``class``: ``--class`` picks the label; unconditional draws balanced labels (i mod K), recorded.
* ``embedding``: ``--like`` embeds the given image with the run's copy of the conditioning
  classifier; ``--interpolate`` walks the great circle between two such embeddings with one fixed
  z; unconditional draws sampled embeddings from the run's condition bank (RCG), whose Gaussian
  sampler records the class it drew from; ``--class`` draws sampled embeddings of that class.
* ``none``: z only; ``--class``, ``--like`` and ``--interpolate`` have nothing to act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visrep.data.images import ImageDecodeError, decode_to_array
from visrep.errors import UserError
from visrep.generate.conditions import embed_images
from visrep.generate.generator_run import GeneratorRun
from visrep.hardware.distributed import sharded_results


@dataclass
class SampleSet:
    images: Tensor  # (N, C, S, S) uint8
    labels: np.ndarray | None  # (N,) intended class, when known
    description: str  # what was asked, for generator.json and the console
    columns: int  # images per grid row
    condition_ids: list[str] | None = None  # manifest ids of real conditioning images
    given: Tensor | None = None  # (M, C, S, S) uint8: the images given with --like / --interpolate, for the grid


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float → 0..255 uint8 (rounded, clamped)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(run: GeneratorRun, z: Tensor, condition: Tensor | None, batch_size: int = 500) -> Tensor:
    """uint8 images (N, C, S, S) from the EMA generator, in batches; under torchrun (``run.dist``) the
    batches are shared out over the ranks and gathered, batch for batch the images of one process."""

    def batch(index: int) -> Tensor:
        start = index * batch_size
        chunk = None if condition is None else condition[start:start + batch_size].to(run.device)
        return to_uint8(run.generator(z[start:start + batch_size].to(run.device), chunk)).cpu()

    parts = sharded_results(-(-len(z) // batch_size), batch, run.dist)
    return torch.cat(parts) if parts else torch.zeros(0, *run.image_shape, dtype=torch.uint8)


def latents(run: GeneratorRun, n: int, seed: int) -> Tensor:
    return torch.randn(n, run.generator.latent_dim, generator=torch.Generator().manual_seed(seed))


def check_count(n: int) -> None:
    if n <= 0:
        raise UserError(f"--n must be ≥ 1 (got {n})")


def resolve_class(run: GeneratorRun, spec: str | int) -> int:
    """A class name or index (as text or int) → index; UserError naming the classes otherwise."""
    names = run.class_names
    text = str(spec).strip()
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
        return int(text)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    raise UserError(f"unknown class '{text}': give a name ({shown}) or an index 0-{len(names) - 1}")


def sample_unconditional(run: GeneratorRun, n: int, seed: int = 0) -> SampleSet:
    check_count(n)
    z = latents(run, n, seed)
    if run.mode == "class":
        labels = torch.arange(n) % len(run.class_names)
        return SampleSet(generate(run, z, labels), labels.numpy(), f"{n} images, balanced classes",
                         len(run.class_names))
    if run.mode == "embedding":
        method = run.bank_method
        embeddings, labels = run.bank().sample(n, method, generator=torch.Generator().manual_seed(seed + 1))
        return SampleSet(generate(run, z, embeddings), None if labels is None else labels.numpy(),
                         f"{n} images from sampled embeddings ({method})", 8)
    return SampleSet(generate(run, z, None), None, f"{n} unconditional images", 8)


def sample_class(run: GeneratorRun, spec: str | int, n: int, seed: int = 0) -> SampleSet:
    check_count(n)
    label = resolve_class(run, spec)
    z = latents(run, n, seed)
    labels = torch.full((n,), label, dtype=torch.int64)
    if run.mode == "class":
        images = generate(run, z, labels)
    elif run.mode == "embedding":  # sampled embeddings of that class (its Gaussian in the condition bank)
        embeddings, _ = run.bank().sample(n, "gaussian", labels, generator=torch.Generator().manual_seed(seed + 1))
        images = generate(run, z, embeddings)
    else:
        raise UserError("--class needs a class- or embedding-conditional generator; this one is unconditional "
                        "(conditioning: none)")
    return SampleSet(images, labels.numpy(), f"{n} images of class '{run.class_names[label]}'", 8)


def sample_like(run: GeneratorRun, image_path: str | Path, n: int, seed: int = 0) -> SampleSet:
    check_count(n)
    _need_embedding_mode(run, "--like")
    given = read_given_image(image_path, run.image_shape)
    return variations_of(run, given, n, seed, f"{n} variations of {image_path}")


def variations_of(run: GeneratorRun, given: Tensor, n: int, seed: int = 0, description: str | None = None) -> SampleSet:
    """``n`` images conditioned on the embedding of ``given`` (uint8 (C, S, S) at the run's shape)."""
    _need_embedding_mode(run, "variations")
    embedding = embed_images(run.encoder(), given[None], run.layer)
    images = generate(run, latents(run, n, seed), embedding.expand(n, -1))
    return SampleSet(images, None, description or f"{n} variations of a given image", min(n + 1, 9),
                     given=given[None])


def sample_interpolation(run: GeneratorRun, first: str | Path, second: str | Path, n: int,
                         seed: int = 0) -> SampleSet:
    check_count(n)
    _need_embedding_mode(run, "--interpolate")
    given = torch.stack([read_given_image(path, run.image_shape) for path in (first, second)])
    return interpolation_between(run, given, n, seed, f"{n} steps from {first} to {second}")


def interpolation_between(run: GeneratorRun, given: Tensor, n: int, seed: int = 0,
                          description: str | None = None) -> SampleSet:
    """``n`` images along the great circle between the embeddings of ``given`` (uint8 (2, C, S, S)), one z."""
    _need_embedding_mode(run, "interpolation")
    ends = embed_images(run.encoder(), given, run.layer)
    path = slerp(ends[0], ends[1], torch.linspace(0, 1, n))
    z = latents(run, 1, seed).expand(n, -1)  # one z: only the condition moves
    return SampleSet(generate(run, z, path), None, description or f"{n} steps between two given images", n + 2,
                     given=given)


def sample_for_images(run: GeneratorRun, images: Tensor, ids: list[str], labels: np.ndarray, seed: int = 0,
                      batch_size: int = 500) -> SampleSet:
    """One sample conditioned on each real image's embedding (the run's final samples in embedding mode)."""
    embeddings = embed_images(run.encoder(), images, run.layer, batch_size)
    generated = generate(run, latents(run, len(images), seed), embeddings, batch_size)
    return SampleSet(generated, labels, f"{len(images)} images, each conditioned on one training image", 8,
                     condition_ids=list(ids))


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points (T, D) on the great circle from unit vector ``a`` to ``b`` at fractions ``t`` (T,)."""
    angle = torch.arccos((a @ b).clamp(-1 + 1e-7, 1 - 1e-7))
    weights_a = torch.sin((1 - t) * angle) / torch.sin(angle)
    weights_b = torch.sin(t * angle) / torch.sin(angle)
    return weights_a[:, None] * a[None] + weights_b[:, None] * b[None]


def read_given_image(path: str | Path, image_shape: tuple[int, int, int]) -> Tensor:
    """A user's image → uint8 (C, S, S) at the run's shape (resized with the data's crop policy).

    Refused: a missing or undecodable file, and an image smaller than half the run's size on its
    short side (upscaling it more than 2× would condition on blur, not on the image)."""
    channels, size, _ = image_shape
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        array, (width, height), _ = decode_to_array(path, size, channels, "crop")
    except ImageDecodeError as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    if min(width, height) * 2 < size:
        raise UserError(f"image {path} is {width}x{height} px: too small for this {size} px "
                        f"generator (the short side must be ≥ {(size + 1) // 2} px)")
    return torch.from_numpy(array.copy())  # decoded arrays are read-only views of the PIL image


def _need_embedding_mode(run: GeneratorRun, flag: str) -> None:
    if run.mode != "embedding":
        raise UserError(f"{flag} needs an embedding-conditional generator (conditioning: embedding); "
                        f"this one is conditioned on '{run.mode}'")


def final_sample_set(run: GeneratorRun, split, n: int, seed: int) -> SampleSet:
    """A training run's final samples, what ``evaluate generated --fake <run>`` scores: balanced classes
    (class), one sample per random training image with its id and class (embedding), or noise alone (none)."""
    if n == 0:
        return SampleSet(torch.zeros(0, *run.image_shape, dtype=torch.uint8), None, "no samples", 8)
    if run.mode != "embedding":
        return sample_unconditional(run, n, seed)
    rows = np.random.default_rng(seed).choice(len(split), n, replace=n > len(split))
    return sample_for_images(run, split.uint8_batch(rows), [split.ids[i] for i in rows],
                             split.labels.numpy()[rows], seed)
