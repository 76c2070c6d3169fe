"""``visrep sample`` writes its folder in chunks (:func:`write_plan_folder`), so that memory does not grow
with ``--n`` and a killed command is finished by running it again:

1. the disk is checked against the most the folder can need, before anything is written;
2. the request (generator weights, what was asked, n, seed, sampling settings, chunk layout) is
   recorded in ``.partial/request.json``;
3. each chunk of whole draw blocks is generated and written atomically to ``.partial/chunk-NNNNNNNN.npz``
   (uncompressed: fast to write, and its size is known before it is made);
4. once every chunk exists, ``samples.npz`` is streamed from them (each ``.npy`` member into the zip,
   chunk by chunk, never whole in memory), then ``grid.png``, then ``generator.json`` — the mark of a
   finished folder, written last — and ``.partial`` is removed.

Run again with the same request, an unfinished folder resumes from the chunks it holds (the images
do not depend on the chunking: :mod:`visrep.generate.sample`); with another request it starts again.
A finished folder is replaced only with ``--overwrite``, and only a folder this module wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from visrep.errors import UserError
from visrep.generate import sample as plans
from visrep.generate.generator_run import DENOISER_WEIGHTS, GENERATOR_WEIGHTS, GUIDE_WEIGHTS, GeneratorRun
from visrep.generate.npz_stream import NpyMember, write_npz_streamed
from visrep.generate.outputs import (GRID_FILE, MAX_GRID_IMAGES, PARTIAL_DIR, REQUEST_FILE, SAMPLES_FILE, chunk_index,
                                     chunk_name, is_sample_folder, refuse_unless_ours, write_generator_manifest,
                                     write_grid)
from visrep.generate.sample import SamplePlan, SampleSet
from visrep.hardware.distributed import DistInfo, broadcast_from_main
from visrep.inference.independence import GENERATOR_MANIFEST, file_sha256
from visrep.runs import atomic_write_text
from visrep.storage import atomic_write

CHUNK_BYTES = 64 * 2**20  # uint8 image bytes per chunk: what one chunk holds in memory (+ one block's float work)
CHUNK_MAX_IMAGES = 10_000  # and at most this many images: a killed command redoes at most one chunk
CHUNK_ENV = "VISREP_SAMPLE_CHUNK"  # images per chunk instead (rounded down to whole draw blocks, at least one)
LABEL_BYTES = 8  # int64 class per image
CHUNK_FILE_OVERHEAD = 4096  # bytes of zip and .npy headers in one chunk file (measured: under 600)
NPZ_OVERHEAD = 2**20  # headers and deflate's worst-case growth beyond 0.1 % (zlib: 0.03 % + 13 bytes)


@dataclass
class FolderState:
    """What a run of ``visrep sample`` finds in its --out folder, decided before anything is written."""
    # new | resume | restart (an unfinished folder of another request) | replace (--overwrite) | finished (all
    # written but a leftover .partial of this request)
    action: str
    done: set[int] = field(default_factory=set)  # chunks already written (resume)
    note: str | None = None  # the line that says so (resume, restart)
    reclaimable: int = 0  # bytes of our own files removed before writing (restart, replace)


def write_plan_folder(out: Path, run: GeneratorRun, plan: SamplePlan, overwrite: bool = False,
                      guide: str | Path | None = None, sampling: dict | None = None, progress: bool = True,
                      say: Callable[[str], None] = print) -> Path:
    """A sample folder for ``plan``, written chunk by chunk (see the module docstring); a re-run of the same
    request finishes a killed one. Under torchrun every rank generates its share of each chunk and rank 0
    writes; ``out`` matters on rank 0 only."""
    out = Path(out)
    chunk = chunk_images(run.image_shape)
    request = sample_request(run, plan, chunk, guide, sampling)
    missing = _decided_on_main(lambda: _start_folder(out, plan, run.image_shape, request, chunk, overwrite, say),
                               run.dist)
    if missing is None:  # finished by an earlier run, killed while it removed .partial: now removed
        return out
    _generate_chunks(out / PARTIAL_DIR, run, plan, chunk, missing, progress)
    if run.dist.is_main:
        _finish_folder(out, run, plan, chunk, guide, sampling, progress)
    return out


def chunk_images(image_shape: tuple[int, ...]) -> int:
    """Images per chunk: whole draw blocks (the images do not depend on it), at least one, at most
    CHUNK_BYTES of uint8 images and CHUNK_MAX_IMAGES; ``VISREP_SAMPLE_CHUNK`` sets the count instead."""
    wanted = _chunk_from_environment()
    if wanted is None:
        wanted = min(CHUNK_MAX_IMAGES, CHUNK_BYTES // int(np.prod(image_shape)))
    return max(1, wanted // plans.DRAW_BLOCK) * plans.DRAW_BLOCK


def _chunk_from_environment() -> int | None:
    text = os.environ.get(CHUNK_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{CHUNK_ENV} must be a whole number of images ≥ 1 (got '{text}')")
    return int(text)


def sample_request(run: GeneratorRun, plan: SamplePlan, chunk: int, guide: str | Path | None,
                   sampling: dict | None) -> dict:
    """Everything the images of a folder depend on, as JSON: a re-run resumes only when all of it is equal."""
    weights = next(run.path / name for name in (GENERATOR_WEIGHTS, DENOISER_WEIGHTS) if (run.path / name).is_file())
    guide_record = None if guide is None else [str(Path(guide).resolve()), file_sha256(Path(guide) / GUIDE_WEIGHTS)]
    request = {"run": str(run.path.resolve()), "weights_sha256": file_sha256(weights), "asked": plan.asked,
               "n": plan.n, "seed": plan.seed, "sampling": sampling, "device": run.device.type, "guide": guide_record,
               "image_shape": list(run.image_shape), "draw_block": plans.DRAW_BLOCK, "chunk_images": chunk}
    return json.loads(json.dumps(request))  # as it reads back: tuples become lists


def _decided_on_main(decide: Callable[[], list[int] | None], info: DistInfo) -> list[int] | None:
    """``decide()`` on rank 0 only (it touches the folder), its result on every rank; a refusal there is
    raised on every rank, so that no rank waits for a chunk that will never be made."""
    if not info.enabled:
        return decide()
    outcome: tuple[str, object] | None = None
    if info.is_main:
        try:
            outcome = ("ok", decide())
        except UserError as err:
            outcome = ("refused", str(err))
    kind, value = broadcast_from_main(outcome, info)
    if kind == "refused":
        raise UserError(value)
    return value


def _start_folder(out: Path, plan: SamplePlan, image_shape: tuple[int, ...], request: dict, chunk: int,
                  overwrite: bool, say: Callable[[str], None]) -> list[int] | None:
    """Check, then claim or resume ``out``: the chunks still to make (None: the folder is finished). Nothing is
    written before the checks."""
    chunks = -(-plan.n // chunk)
    state = inspect_folder(out, request, chunks, overwrite)
    if state.action == "finished":
        _remove_partial(out / PARTIAL_DIR)
        return None
    check_disk(out, plan, image_shape, chunk, state.done, state.reclaimable)
    if state.note:
        say(state.note)
    _prepare_folder(out, request, state)
    return [index for index in range(chunks) if index not in state.done]  # listed once it is known to fit


def inspect_folder(out: Path, request: dict, chunks: int, overwrite: bool) -> FolderState:
    """What to do with ``out`` for ``request`` (``chunks`` in all); refuses a folder that is not ours, and a
    finished one without ``overwrite``. Reads only."""
    if not out.exists():
        return FolderState("new")
    if not out.is_dir() or not is_sample_folder(out):
        refuse_unless_ours(out, overwrite)  # not ours: refused, whatever the flag
    partial, finished = out / PARTIAL_DIR, (out / GENERATOR_MANIFEST).is_file()
    recorded = _read_request(partial)
    if partial.is_dir() and recorded == request:
        if finished:  # generator.json is written last: only the removal of .partial was cut short
            return FolderState("finished")
        done = _written_chunks(partial, chunks)
        images = _rows_in(done, request["chunk_images"], request["n"])
        return FolderState("resume", done, f"resuming {out}: {images} of {request['n']} images already generated")
    if partial.is_dir() and not finished:
        return FolderState("restart", note=f"{out} holds unfinished samples of another request "
                                           f"({_differences(recorded, request)}); starting again",
                           reclaimable=_folder_bytes(out))
    refuse_unless_ours(out, overwrite)
    return FolderState("replace", reclaimable=_folder_bytes(out))


def _read_request(partial: Path) -> dict | None:
    try:
        return json.loads((partial / REQUEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def _differences(recorded: dict | None, request: dict) -> str:
    if recorded is None:
        return "its request record is missing"
    keys = [key for key in request if recorded.get(key) != request[key]]
    return "different " + ", ".join(keys)


def _written_chunks(partial: Path, chunks: int) -> set[int]:
    indices = (chunk_index(entry.name) for entry in os.scandir(partial))
    return {index for index in indices if index is not None and index < chunks}


def _rows_in(chunks: Iterable[int], chunk: int, n: int) -> int:
    """Images in the chunks of these indices (the last chunk may be short)."""
    return sum(min(chunk, n - index * chunk) for index in chunks)




def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def check_disk(out: Path, plan: SamplePlan, image_shape: tuple[int, ...], chunk: int, done: set[int],
               reclaimable: int = 0) -> None:
    """Refuse, before anything is written, a request whose files may not fit on the disk of ``out``: the
    chunks still to write (all but ``done``) plus samples.npz (uncompressed at worst, as the chunks stay
    until it is written) and the grid; ``reclaimable``: bytes of ours removed first."""
    needed = bytes_needed(plan, image_shape, chunk, done)
    where = _nearest_existing(out)
    free = shutil.disk_usage(where).free + reclaimable
    if needed > free:
        shape = "×".join(map(str, image_shape))
        content = f"{plan.n} images of {shape} bytes" + (" + labels" if plan.labelled else "")
        raise UserError(f"--n {plan.n} needs up to {needed / 2**30:.1f} GiB on the disk of {where} ({content}, "
                        f"held as chunks until samples.npz is written), and {free / 2**30:.1f} GiB is free: "
                        f"lower --n or give --out on a larger disk")


def bytes_needed(plan: SamplePlan, image_shape: tuple[int, ...], chunk: int, done: set[int]) -> int:
    """Upper bound, in bytes, on what the folder still adds to the disk when chunks ``done`` are written.
    Arithmetic only: an absurd n is refused without listing its chunks."""
    per_image = int(np.prod(image_shape)) + (LABEL_BYTES if plan.labelled else 0)
    rows_to_make = plan.n - _rows_in(done, chunk, plan.n)
    chunks = rows_to_make * per_image + CHUNK_FILE_OVERHEAD * (-(-plan.n // chunk) - len(done))
    npz = plan.n * per_image + plan.n * per_image // 1000 + NPZ_OVERHEAD
    grid = (min(plan.n, MAX_GRID_IMAGES) + 2) * 3 * (image_shape[-1] + 2) ** 2 + NPZ_OVERHEAD  # RGB tiles, padded
    return chunks + npz + grid


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def _prepare_folder(out: Path, request: dict, state: FolderState) -> None:
    """``out/.partial`` ready for chunks: replaced or restarted folders removed first, the request recorded,
    and temporary files a killed write left behind removed."""
    if state.action in ("restart", "replace"):
        shutil.rmtree(out)
    partial = out / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    for entry in [*out.iterdir(), *partial.iterdir()]:
        if entry.is_file() and _is_our_temporary(entry.name):
            entry.unlink()
    if state.action != "resume":
        atomic_write_text(partial / REQUEST_FILE, json.dumps(request, indent=1, sort_keys=True) + "\n")


def _is_our_temporary(name: str) -> bool:
    """atomic_write's temporary file of one of our files (".<name>.<random, no dots>"), left by a kill."""
    target = name[1:].rsplit(".", 1)[0]
    ours = {SAMPLES_FILE, GRID_FILE, GENERATOR_MANIFEST, REQUEST_FILE}
    return name.startswith(".") and (target in ours or chunk_index(target) is not None)


def _generate_chunks(partial: Path, run: GeneratorRun, plan: SamplePlan, chunk: int, missing: list[int],
                     progress: bool) -> None:
    """Each missing chunk generated (every rank its share of the blocks) and written by rank 0."""
    bar = tqdm(total=plan.n, initial=plan.n - _rows_in(missing, chunk, plan.n), desc="sampling", unit="img",
               leave=False, mininterval=1.0, disable=not (progress and run.dist.is_main) or None)
    for index in missing:
        shown = [0]  # images of this chunk already on the bar: the blocks this process made

        def show(count: int) -> None:
            shown[0] += count
            bar.update(count)

        images, labels = plans.generate_blocks(run, plan, _chunk_blocks(plan, chunk, index), on_block=show)
        bar.update(len(images) - shown[0])  # the blocks other ranks made
        if run.dist.is_main:
            _write_chunk(partial / chunk_name(index), images, labels)
    bar.close()


def _chunk_blocks(plan: SamplePlan, chunk: int, index: int) -> range:
    per_chunk = chunk // plans.DRAW_BLOCK
    return range(index * per_chunk, min((index + 1) * per_chunk, plan.blocks))


def _write_chunk(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    arrays = {"images": images.numpy()} | ({} if labels is None else {"labels": labels.numpy().astype(np.int64)})

    def write(temp) -> None:
        with open(temp, "wb") as stream:
            np.savez(stream, **arrays)

    atomic_write(path, write)


def _finish_folder(out: Path, run: GeneratorRun, plan: SamplePlan, chunk: int, guide: str | Path | None,
                   sampling: dict | None, progress: bool) -> None:
    """samples.npz streamed from the chunks, grid.png, generator.json (last), then .partial removed."""
    partial = out / PARTIAL_DIR
    files = [partial / chunk_name(index) for index in range(-(-plan.n // chunk))]
    image_shape = tuple(run.image_shape)
    members = {"images": NpyMember((plan.n, *image_shape), np.dtype(np.uint8),
                                   lambda: _chunk_arrays(files, "images", plan, chunk, image_shape, progress))}
    if plan.labelled:
        members["labels"] = NpyMember((plan.n,), np.dtype(np.int64),
                                      lambda: _chunk_arrays(files, "labels", plan, chunk, (), False))
    write_npz_streamed(out / SAMPLES_FILE, members)
    first = torch.from_numpy(_first_images(files))
    write_grid(out / GRID_FILE, SampleSet(first, None, plan.description, plan.columns, given=plan.given))
    write_generator_manifest(out, run.path, plan.description, guide, sampling)
    _remove_partial(partial)


def _remove_partial(partial: Path) -> None:
    """Chunks first, the request record last: a kill midway leaves a .partial that a re-run recognises."""
    for entry in partial.iterdir():
        if entry.name != REQUEST_FILE:
            entry.unlink()
    (partial / REQUEST_FILE).unlink(missing_ok=True)
    partial.rmdir()


def _chunk_arrays(files: list[Path], name: str, plan: SamplePlan, chunk: int, row_shape: tuple[int, ...],
                  progress: bool) -> Iterator[np.ndarray]:
    """Array ``name`` of each chunk in turn, checked against the shape its chunk must have."""
    for index, path in enumerate(tqdm(files, desc=f"writing {SAMPLES_FILE}", unit="chunk", leave=False,
                                      mininterval=1.0, disable=not progress or None)):
        rows = min(chunk, plan.n - index * chunk)
        try:
            with np.load(path) as archive:
                array = archive[name]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
            raise UserError(f"cannot read {path} ({str(err).splitlines()[0]}): delete it and run the same "
                            f"command again to make it anew") from None
        if array.shape != (rows, *row_shape):
            raise UserError(f"{path} holds {name} of shape {array.shape}, not {(rows, *row_shape)}: delete it "
                            f"and run the same command again to make it anew")
        yield array


def _first_images(files: list[Path]) -> np.ndarray:
    """The first MAX_GRID_IMAGES images, from as many chunks as they take (chunks smaller than the grid)."""
    parts, count = [], 0
    for path in files:
        if count >= MAX_GRID_IMAGES:
            break
        with np.load(path) as archive:
            parts.append(archive["images"][:MAX_GRID_IMAGES - count])
        count += len(parts[-1])
    return np.concatenate(parts)
