"""What to generate: images for a class, variations of a given image, an interpolation between two
images, or unconditional samples — each a :class:`SamplePlan`, drawn block by block, or a
:class:`SampleSet` held in memory.

Conditions per mode (the generator's ``mode``):

* ``class``: ``--class`` picks the label; unconditional draws balanced labels (i mod K), recorded.
* ``embedding``: ``--like`` embeds the given image with the run's copy of the conditioning
  classifier; ``--interpolate`` walks the great circle between two such embeddings with one fixed
  z; unconditional draws sampled embeddings from the run's condition bank (RCG), whose Gaussian
  sampler records the class it drew from; ``--class`` draws sampled embeddings of that class.
* ``none``: z only; ``--class``, ``--like`` and ``--interpolate`` have nothing to act on.

Blocks: everything random is drawn in blocks of ``DRAW_BLOCK`` images. Block b's latents z and
sampled embeddings come from generators seeded by (seed, b) alone, a full block is always drawn
(then cut to the images asked for), and the generator is called once per block. So the images of a
seed do not depend on how blocks are grouped — into the chunks a sample folder is written in
(:mod:`visrep.generate.chunked`), or over torchrun ranks — nor on ``n``: the first k images of a
request for n are those of a request for k. A diffusion run's DDPM noise is seeded per image by its
own z (:mod:`visrep.diffusion.sampler`), so it follows the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visrep.data.images import ImageDecodeError, decode_to_array
from visrep.errors import UserError
from visrep.representations.embed import embed_conditions
from visrep.generate.generator_run import GeneratorRun
from visrep.hardware.distributed import sharded_results
from visrep.inference.independence import file_sha256

DRAW_BLOCK = 500  # images per random draw and per generator call: changing it changes every seed's images
LATENT_STREAM, CONDITION_STREAM = 0, 1  # the independent random streams of one block
# one walk between two images: past this, neighbouring steps are closer than float32 can tell apart on
# the sphere and the row of images is a blur of repeats, not an interpolation
MAX_INTERPOLATION_STEPS = 10_000

# (block, rows: the block's image indices) → (condition (m, ...) or None, intended classes (m,) int64 or None)
Conditions = Callable[[int, range], tuple[Tensor | None, Tensor | None]]


@dataclass
class SampleSet:
    images: Tensor  # (N, C, S, S) uint8
    labels: np.ndarray | None  # (N,) intended class, when known
    description: str  # what was asked, for generator.json and the console
    columns: int  # images per grid row
    condition_ids: list[str] | None = None  # manifest ids of real conditioning images
    given: Tensor | None = None  # (M, C, S, S) uint8: the images given with --like / --interpolate, for the grid


@dataclass
class SamplePlan:
    """A request for ``n`` images, to be drawn block by block (see the module docstring)."""
    n: int
    seed: int
    description: str  # what was asked, for generator.json and the console
    columns: int  # images per grid row
    conditions: Conditions
    labelled: bool  # whether ``conditions`` gives classes (samples.npz then holds ``labels``)
    asked: dict  # what was asked, JSON-able: part of a sample folder's request record
    given: Tensor | None = None  # (M, C, S, S) uint8 given images, for the grid
    one_z: bool = False  # interpolation: every image has the first z, so that only the condition moves

    @property
    def blocks(self) -> int:
        return -(-self.n // DRAW_BLOCK)

    def rows(self, block: int) -> range:
        """The image indices of ``block``."""
        return range(block * DRAW_BLOCK, min((block + 1) * DRAW_BLOCK, self.n))


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float → 0..255 uint8 (rounded, clamped)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


# ---- drawing, block by block ---------------------------------------------------------------------
def block_generator(seed: int, block: int, stream: int) -> torch.Generator:
    """A CPU generator for one random stream of one block, seeded by (seed, block, stream) only."""
    state = np.random.SeedSequence([abs(seed), int(seed < 0), block, stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def block_latents(run: GeneratorRun, plan: SamplePlan, block: int) -> Tensor:
    """z (m, latent_dim) float32 for the block's m images (the first z of block 0 for each, with ``one_z``)."""
    count = len(plan.rows(block))
    if plan.one_z:
        return _full_block_latents(run, plan.seed, 0)[:1].expand(count, -1)
    return _full_block_latents(run, plan.seed, block)[:count]


def _full_block_latents(run: GeneratorRun, seed: int, block: int) -> Tensor:
    # always DRAW_BLOCK rows: a short last block has the first rows of a full one
    return torch.randn(DRAW_BLOCK, run.generator.latent_dim, generator=block_generator(seed, block, LATENT_STREAM))


@torch.no_grad()
def block_images(run: GeneratorRun, plan: SamplePlan, block: int) -> tuple[Tensor, Tensor | None]:
    """(uint8 images (m, C, S, S), intended classes (m,) or None) of one block, on the CPU: one generator call."""
    condition, labels = plan.conditions(block, plan.rows(block))
    z = block_latents(run, plan, block).to(run.device)
    condition = None if condition is None else condition.to(run.device)
    return to_uint8(run.generator(z, condition)).cpu(), labels


def generate_blocks(run: GeneratorRun, plan: SamplePlan, blocks: range,
                    on_block: Callable[[int], None] | None = None) -> tuple[Tensor, Tensor | None]:
    """The images (N, C, S, S) uint8 and classes (N,) or None of ``blocks``, in order. Under torchrun
    (``run.dist``) the blocks are shared out over the ranks and gathered: every rank gets all of them, block
    for block the images of one process. ``on_block(m)`` is called after each block this process makes."""

    def make(index: int) -> tuple[Tensor, Tensor | None]:
        made = block_images(run, plan, blocks[index])
        if on_block is not None:
            on_block(len(made[0]))
        return made

    parts = sharded_results(len(blocks), make, run.dist)
    images = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, *run.image_shape, dtype=torch.uint8)
    labels = torch.cat([p[1] for p in parts]) if parts and plan.labelled else None
    return images, labels


def sample_set(run: GeneratorRun, plan: SamplePlan) -> SampleSet:
    """All of ``plan`` in memory (for small n: the CLI writes large ones chunk by chunk)."""
    images, labels = generate_blocks(run, plan, range(plan.blocks))
    return SampleSet(images, None if labels is None else labels.numpy(), plan.description, plan.columns,
                     given=plan.given)


@torch.no_grad()
def generate(run: GeneratorRun, z: Tensor, condition: Tensor | None, batch_size: int = 500) -> Tensor:
    """uint8 images (N, C, S, S) from the EMA generator for given z and conditions, in batches; under torchrun
    (``run.dist``) the batches are shared out over the ranks and gathered, batch for batch the images of one
    process."""

    def batch(index: int) -> Tensor:
        start = index * batch_size
        chunk = None if condition is None else condition[start:start + batch_size].to(run.device)
        return to_uint8(run.generator(z[start:start + batch_size].to(run.device), chunk)).cpu()

    parts = sharded_results(-(-len(z) // batch_size), batch, run.dist)
    return torch.cat(parts) if parts else torch.zeros(0, *run.image_shape, dtype=torch.uint8)


def latents(run: GeneratorRun, n: int, seed: int) -> Tensor:
    """z (n, latent_dim) of the first n images of any request with ``seed`` (block by block)."""
    blocks = [_full_block_latents(run, seed, block) for block in range(-(-n // DRAW_BLOCK))]
    return torch.cat(blocks)[:n] if blocks else torch.zeros(0, run.generator.latent_dim)


# ---- checks of a request -------------------------------------------------------------------------
def check_count(n: int) -> None:
    if n <= 0:
        raise UserError(f"--n must be ≥ 1 (got {n})")


def check_interpolation_steps(n: int) -> None:
    """An interpolation's --n counts its steps: the first is image A, the last image B."""
    if n < 2:
        raise UserError(f"--interpolate needs --n ≥ 2 steps (the first is image A, the last image B); got {n}")
    if n > MAX_INTERPOLATION_STEPS:
        raise UserError(f"--interpolate takes at most --n {MAX_INTERPOLATION_STEPS} steps between two images "
                        f"(got {n}): more would repeat the same images")


def check_finite(options: dict[str, float | list[float] | tuple[float, ...] | None]) -> None:
    """Each numeric option (flag → value, a list for a flag that takes several, None when not given) is finite:
    a NaN guidance scale makes every image black, and an infinite one NaN."""
    for flag, value in options.items():
        values = [] if value is None else value if isinstance(value, (list, tuple)) else [value]
        bad = next((number for number in values if not math.isfinite(number)), None)
        if bad is not None:
            raise UserError(f"{flag} must be a finite number (got {bad})")


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


def counted(n: int, noun: str) -> str:
    """'1 image', '5 images'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---- conditions of one block (bound with functools.partial into a plan's ``conditions``) --------------
def _no_condition(block: int, rows: range) -> tuple[None, None]:
    return None, None


def _balanced_classes(classes: int, block: int, rows: range) -> tuple[Tensor, Tensor]:
    labels = torch.arange(rows.start, rows.stop) % classes  # image i is of class i mod K
    return labels, labels


def _one_class(label: int, block: int, rows: range) -> tuple[Tensor, Tensor]:
    labels = torch.full((len(rows),), label, dtype=torch.int64)
    return labels, labels


def _sampled_embeddings(run: GeneratorRun, label: int | None, seed: int, block: int,
                        rows: range) -> tuple[Tensor, Tensor | None]:
    """Unit embeddings (m, D) from the run's embedding sampler (of class ``label`` when given: its class
    Gaussian), with their classes when the sampler knows them: a full block drawn, then cut."""
    wanted = None if label is None else torch.full((DRAW_BLOCK,), label, dtype=torch.int64)
    embeddings, labels = run.sampled_embeddings(DRAW_BLOCK, wanted, block_generator(seed, block, CONDITION_STREAM))
    return embeddings[:len(rows)], None if labels is None else labels[:len(rows)]


def _fixed_embedding(embedding: Tensor, block: int, rows: range) -> tuple[Tensor, None]:
    return embedding.expand(len(rows), -1), None  # embedding (1, D)


def _great_circle(ends: Tensor, n: int, block: int, rows: range) -> tuple[Tensor, None]:
    """Step i of n on the great circle between ``ends`` (2, D): the fraction i / (n − 1) of the way."""
    fractions = torch.arange(rows.start, rows.stop, dtype=torch.float64) / max(n - 1, 1)
    return slerp(ends[0], ends[1], fractions.float()), None


def _given_embeddings(embeddings: Tensor, labels: Tensor, block: int, rows: range) -> tuple[Tensor, Tensor]:
    return embeddings[rows.start:rows.stop], labels[rows.start:rows.stop]


# ---- plans ---------------------------------------------------------------------------------------
def plan_unconditional(run: GeneratorRun, n: int, seed: int = 0) -> SamplePlan:
    check_count(n)
    asked = {"what": "unconditional"}
    if run.mode == "class":
        classes = len(run.class_names)
        return SamplePlan(n, seed, f"{counted(n, 'image')}, balanced classes", classes,
                          partial(_balanced_classes, classes), True, asked)
    if run.mode == "embedding":
        method = run.bank_method
        # read (and checked) now: a damaged bank or sampler is one error line before anything is written
        run.learned_sampler() if method == "learned" else run.bank()
        return SamplePlan(n, seed, f"{counted(n, 'image')} from sampled embeddings ({method})", 8,
                          partial(_sampled_embeddings, run, None, seed), method == "gaussian", asked)
    return SamplePlan(n, seed, f"{counted(n, 'unconditional image')}", 8, _no_condition, False, asked)


def plan_class(run: GeneratorRun, spec: str | int, n: int, seed: int = 0) -> SamplePlan:
    check_count(n)
    label = resolve_class(run, spec)
    description = f"{counted(n, 'image')} of class '{run.class_names[label]}'"
    asked = {"what": "class", "class": label}
    if run.mode == "class":
        return SamplePlan(n, seed, description, 8, partial(_one_class, label), True, asked)
    if run.mode == "embedding":  # sampled embeddings of that class (its Gaussian in the condition bank)
        run.bank()  # read (and checked) before anything is written
        return SamplePlan(n, seed, description, 8, partial(_sampled_embeddings, run, label, seed),
                          True, asked)
    raise UserError("--class needs a class- or embedding-conditional generator; this one is unconditional "
                    "(conditioning: none)")


def plan_like(run: GeneratorRun, image_path: str | Path, n: int, seed: int = 0) -> SamplePlan:
    check_count(n)
    _need_embedding_mode(run, "--like")
    given = read_given_image(image_path, run.image_shape, "--like")
    plan = plan_variations(run, given, n, seed, f"{counted(n, 'variation')} of {image_path}")
    plan.asked = {"what": "like", "image": str(Path(image_path).resolve()), "sha256": file_sha256(image_path)}
    return plan


def plan_variations(run: GeneratorRun, given: Tensor, n: int, seed: int = 0,
                    description: str | None = None) -> SamplePlan:
    """``n`` images conditioned on the embedding of ``given`` (uint8 (C, S, S) at the run's shape)."""
    _need_embedding_mode(run, "variations")
    embedding = embed_conditions(run.encoder(), given[None], run.layer)  # (1, D)
    return SamplePlan(n, seed, description or f"{counted(n, 'variation')} of a given image", min(n + 1, 9),
                      partial(_fixed_embedding, embedding), False, {"what": "variations"}, given=given[None])


def plan_interpolation(run: GeneratorRun, first: str | Path, second: str | Path, n: int,
                       seed: int = 0) -> SamplePlan:
    check_interpolation_steps(n)
    _need_embedding_mode(run, "--interpolate")
    given = torch.stack([read_given_image(path, run.image_shape, "--interpolate") for path in (first, second)])
    plan = plan_interpolation_between(run, given, n, seed, f"{counted(n, 'step')} from {first} to {second}")
    plan.asked = {"what": "interpolate", "images": [str(Path(path).resolve()) for path in (first, second)],
                  "sha256": [file_sha256(path) for path in (first, second)]}
    return plan


def plan_interpolation_between(run: GeneratorRun, given: Tensor, n: int, seed: int = 0,
                               description: str | None = None) -> SamplePlan:
    """``n`` images along the great circle between the embeddings of ``given`` (uint8 (2, C, S, S)), one z."""
    _need_embedding_mode(run, "interpolation")
    ends = embed_conditions(run.encoder(), given, run.layer)  # (2, D)
    return SamplePlan(n, seed, description or f"{counted(n, 'step')} between two given images", n + 2,
                      partial(_great_circle, ends, n), False, {"what": "interpolation"}, given=given, one_z=True)


# ---- the same, in memory -------------------------------------------------------------------------
def sample_unconditional(run: GeneratorRun, n: int, seed: int = 0) -> SampleSet:
    return sample_set(run, plan_unconditional(run, n, seed))


def sample_class(run: GeneratorRun, spec: str | int, n: int, seed: int = 0) -> SampleSet:
    return sample_set(run, plan_class(run, spec, n, seed))


def variations_of(run: GeneratorRun, given: Tensor, n: int, seed: int = 0, description: str | None = None) -> SampleSet:
    return sample_set(run, plan_variations(run, given, n, seed, description))


def interpolation_between(run: GeneratorRun, given: Tensor, n: int, seed: int = 0,
                          description: str | None = None) -> SampleSet:
    return sample_set(run, plan_interpolation_between(run, given, n, seed, description))


def sample_for_images(run: GeneratorRun, images: Tensor, ids: list[str], labels: np.ndarray, seed: int = 0,
                      embeddings: Tensor | None = None) -> SampleSet:
    """One sample conditioned on each real image's embedding (the run's final samples in embedding mode);
    ``embeddings``: those images' conditions already computed (N, D), instead of embedding them again."""
    if embeddings is None:
        embeddings = embed_conditions(run.encoder(), images, run.layer)
    conditions = partial(_given_embeddings, embeddings, torch.as_tensor(np.asarray(labels), dtype=torch.int64))
    plan = SamplePlan(len(images), seed, f"{counted(len(images), 'image')}, each conditioned on one training image",
                      8, conditions, True, {"what": "training images"})
    made = sample_set(run, plan)
    made.labels, made.condition_ids = labels, list(ids)
    return made


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Points (T, D) on the great circle from unit vector ``a`` to ``b`` at fractions ``t`` (T,)."""
    angle = torch.arccos((a @ b).clamp(-1 + 1e-7, 1 - 1e-7))
    weights_a = torch.sin((1 - t) * angle) / torch.sin(angle)
    weights_b = torch.sin(t * angle) / torch.sin(angle)
    return weights_a[:, None] * a[None] + weights_b[:, None] * b[None]


def read_given_image(path: str | Path, image_shape: tuple[int, int, int], flag: str = "--like") -> Tensor:
    """A user's image → uint8 (C, S, S) at the run's shape (resized with the data's crop policy).

    Refused: a missing or undecodable file, a folder, and an image smaller than half the run's size on its
    short side (upscaling it more than 2× would condition on blur, not on the image)."""
    channels, size, _ = image_shape
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder, not an image file: give one image")
    if not path.is_file():
        raise UserError(f"{flag} image not found: {path}")
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


def final_sample_set(run: GeneratorRun, split, n: int, seed: int, embeddings: Tensor | None = None) -> SampleSet:
    """A training run's final samples, what ``evaluate generated --fake <run>`` scores: balanced classes
    (class), one sample per random training image with its id and class (embedding), or noise alone (none).
    ``embeddings``: the split's conditions (N, D) the run trained with, read instead of embedding the images."""
    if n == 0:
        return SampleSet(torch.zeros(0, *run.image_shape, dtype=torch.uint8), None, "no samples", 8)
    if run.mode != "embedding":
        return sample_unconditional(run, n, seed)
    rows = np.random.default_rng(seed).choice(len(split), n, replace=n > len(split))
    return sample_for_images(run, split.uint8_batch(rows), [split.ids[i] for i in rows],
                             split.labels.numpy()[rows], seed,
                             None if embeddings is None else embeddings[torch.as_tensor(rows)])
