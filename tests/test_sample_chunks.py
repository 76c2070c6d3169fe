"""`visrep sample` in chunks: the images do not depend on the chunking (GAN, sampled embeddings, DDPM),
memory holds one chunk, an n that cannot fit on the disk is refused before anything is written, and
a SIGKILLed command is finished by running it again, to the files of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from visrep.cli import main
from visrep.config import DiffusionConfig, GanConfig, load_config
from visrep.errors import UserError
from visrep.generate import chunked, npz_stream, outputs, sample

DiskUsage = namedtuple("DiskUsage", "total used free")


@pytest.fixture(scope="session")
def generator_runs(tiny_trained_run, tmp_path_factory) -> dict[str, Path]:
    """A tiny class GAN, embedding GAN and class diffusion model (seconds), trained once per session."""
    from visrep.training.diffusion import train_diffusion
    from visrep.training.gan import train_gan

    root = tmp_path_factory.mktemp("sample-chunk-runs")
    common = [f"run.root={root}", f"data.cache_dir={root / 'cache'}"]
    gan = [*common, f"gan.conditioning_run={tiny_trained_run}", "gan.final_samples=0"]
    diffusion = [*common, f"diffusion.conditioning_run={tiny_trained_run}", "diffusion.final_samples=0"]
    return {
        "class": train_gan(load_config(REPO / "configs" / "gan_tiny.yaml", [*gan, "run.name=class"], GanConfig),
                           progress=False),
        "embedding": train_gan(load_config(REPO / "configs" / "gan_tiny.yaml",
                                           [*gan, "run.name=embedding", "gan.conditioning=embedding",
                                            "train.steps=4"], GanConfig), progress=False),
        "diffusion": train_diffusion(load_config(REPO / "configs" / "diffusion_tiny.yaml",
                                                 [*diffusion, "run.name=diffusion"], DiffusionConfig), progress=False),
    }


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "samples.npz") as archive:
        return {name: archive[name] for name in archive.files}


def _same_folders(first: Path, second: Path) -> None:
    a, b = _arrays(first), _arrays(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
    assert (first / "grid.png").read_bytes() == (second / "grid.png").read_bytes()
    assert not (first / ".partial").exists() and not (second / ".partial").exists()


# ---- (a) the images do not depend on the chunking --------------------------------------------------
# DDPM draws fresh noise at every step: the case where a sampler's own draws could follow the chunking
SAMPLING = {"class": [], "embedding": [], "diffusion": ["--solver", "ddpm", "--steps", "2", "--guidance", "1.5"]}


@pytest.mark.parametrize("kind", ["class", "embedding", "diffusion"])
def test_chunked_folder_equals_the_whole_set_at_any_chunk_size(kind, generator_runs, tmp_path, monkeypatch):
    """Blocks of 4 images, chunks of 1, 2, 3 blocks and all at once: the same samples.npz and grid; and the
    in-memory set of the library (all blocks in one go) is the same images."""
    from visrep.generate.generator_run import load_generator_run

    monkeypatch.setattr(sample, "DRAW_BLOCK", 4)
    run, n = generator_runs[kind], 30  # 8 blocks, the last one short
    for chunk in (4, 8, 12, 10_000):
        monkeypatch.setattr(chunked, "CHUNK_MAX_IMAGES", chunk)
        assert main(["sample", str(run), "--n", str(n), "--out", str(tmp_path / str(chunk)), *SAMPLING[kind]]) == 0
        _same_folders(tmp_path / "4", tmp_path / str(chunk))
    saved = _arrays(tmp_path / "4")
    assert saved["images"].shape == (n, 1, 8, 8) and len(np.unique(saved["images"], axis=0)) == n
    sampling = {"solver": "ddpm", "steps": 2, "guidance": 1.5} if kind == "diffusion" else None
    whole = sample.sample_unconditional(load_generator_run(run, sampling=sampling), n, seed=0)
    assert np.array_equal(whole.images.numpy(), saved["images"])
    if kind != "embedding":  # embedding runs: the Gaussian sampler's classes
        assert np.array_equal(whole.labels, saved["labels"])


def test_the_first_images_of_a_seed_do_not_depend_on_n(generator_runs, monkeypatch):
    from visrep.generate.generator_run import load_generator_run

    monkeypatch.setattr(sample, "DRAW_BLOCK", 4)
    run = load_generator_run(generator_runs["embedding"])
    few, many = (sample.sample_unconditional(run, n, seed=3) for n in (6, 13))
    assert torch.equal(few.images, many.images[:6]) and np.array_equal(few.labels, many.labels[:6])


# ---- (b) memory holds one chunk -------------------------------------------------------------------------
def test_memory_holds_one_chunk_whatever_n(generator_runs, tmp_path, monkeypatch):
    """n = 25 chunks: the generator never sees more than a block, and no more than one chunk of images is
    made, written or read back at a time."""
    from visrep.generate import generator_run as loading

    monkeypatch.setattr(sample, "DRAW_BLOCK", 4)
    monkeypatch.setattr(chunked, "CHUNK_MAX_IMAGES", 8)
    seen = {"generator": [], "chunks": [], "npz parts": []}
    load, make, read = loading.load_generator_run, sample.generate_blocks, chunked._chunk_arrays

    def recording_load(*args, **kwargs):
        run = load(*args, **kwargs)
        run.generator.register_forward_pre_hook(lambda module, inputs: seen["generator"].append(len(inputs[0])))
        return run

    def recording_make(*args, **kwargs):
        images, labels = make(*args, **kwargs)
        seen["chunks"].append(len(images))
        return images, labels

    def recording_read(*args, **kwargs):
        for array in read(*args, **kwargs):
            seen["npz parts"].append(len(array))
            yield array

    monkeypatch.setattr(loading, "load_generator_run", recording_load)
    monkeypatch.setattr(sample, "generate_blocks", recording_make)
    monkeypatch.setattr(chunked, "_chunk_arrays", recording_read)
    assert main(["sample", str(generator_runs["class"]), "--n", "200", "--out", str(tmp_path / "many")]) == 0
    assert len(_arrays(tmp_path / "many")["images"]) == 200
    assert max(seen["generator"]) == 4 and sum(seen["generator"]) == 200
    assert max(seen["chunks"]) == 8 and len(seen["chunks"]) == 25
    assert max(seen["npz parts"]) == 8 and sum(seen["npz parts"]) == 2 * 200  # images, then labels


def test_streamed_npz_reads_back_like_savez_compressed(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 3, 5, 5), dtype=np.uint8)
    labels, ids = rng.integers(0, 10, 37), np.asarray([f"cat/{i}.png" for i in range(37)])
    outputs.write_npz(tmp_path / "new.npz", sample.SampleSet(torch.from_numpy(images), labels, "", 8,
                                                               condition_ids=list(ids)))
    with open(tmp_path / "old.npz", "wb") as stream:
        np.savez_compressed(stream, images=images, labels=labels.astype(np.int64), condition_ids=ids)
    new, old = np.load(tmp_path / "new.npz"), np.load(tmp_path / "old.npz")
    assert new.files == old.files
    assert all(new[name].dtype == old[name].dtype and np.array_equal(new[name], old[name]) for name in old.files)
    parts = npz_stream.NpyMember((37, 3, 5, 5), np.dtype(np.uint8), lambda: [images[:10], images[10:]])
    npz_stream.write_npz_streamed(tmp_path / "parts.npz", {"images": parts})
    assert np.array_equal(np.load(tmp_path / "parts.npz")["images"], images)


# ---- (c) the disk check ------------------------------------------------------------------------------------
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_an_n_that_cannot_fit_on_the_disk_is_refused_before_anything_is_written(generator_runs, tmp_path,
                                                                                   monkeypatch, capsys):
    from visrep.generate import generator_run as loading

    made = []
    load = loading.load_generator_run

    def recording_load(*args, **kwargs):
        run = load(*args, **kwargs)
        run.generator.register_forward_pre_hook(lambda module, inputs: made.append(len(inputs[0])))
        return run

    monkeypatch.setattr(loading, "load_generator_run", recording_load)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 2**20, 2**20))  # 1 MiB free
    out = tmp_path / "deep" / "samples"
    assert main(["sample", str(generator_runs["class"]), "--n", "20000", "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    # 20,000 × (64 image + 8 label bytes) = 1.4 MB, twice (chunks + samples.npz): more than the 1 MiB free
    assert "--n 20000 needs up to" in err and "0.0 GiB is free" in err and str(tmp_path) in err, err
    assert not (tmp_path / "deep").exists() and not made
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 0, 10**9))  # 1 GB free: it fits
    assert main(["sample", str(generator_runs["class"]), "--n", "20000", "--out", str(out)]) == 0
    assert len(_arrays(out)["images"]) == 20000


def test_bad_flags_are_one_line_naming_the_flag(generator_runs, tmp_path, capsys):
    run, out = str(generator_runs["diffusion"]), str(tmp_path / "a")
    for argv, flag in ((["--guidance", "nan"], "--guidance"), (["--guidance", "inf"], "--guidance"),
                       (["--classifier-scale", "nan"], "--classifier-scale"),
                       (["--guidance-interval", "nan", "1"], "--guidance-interval")):
        assert main(["sample", run, *argv, "--out", out]) == 2
        assert f"{flag} must be a finite number" in _one_error_line(capsys)
    given = tmp_path / "given.png"
    from PIL import Image

    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8)).save(given)
    embedding = str(generator_runs["embedding"])
    assert main(["sample", embedding, "--interpolate", str(given), str(given), "--n", "1", "--out", out]) == 2
    assert "--interpolate needs --n ≥ 2 steps" in _one_error_line(capsys)
    assert main(["sample", embedding, "--like", str(tmp_path), "--out", out]) == 2
    assert "is a folder, not an image file" in _one_error_line(capsys)
    assert not (tmp_path / "a").exists()


# ---- (d) kill safety ------------------------------------------------------------------------------------
def _interrupt_at_chunk(monkeypatch, index: int) -> None:
    """Stop the command (as Ctrl-C would) just before chunk ``index`` is written."""
    write = chunked._write_chunk

    def stopping_write(path, images, labels):
        if path.name == f"chunk-{index:08d}.npz":
            raise KeyboardInterrupt
        write(path, images, labels)

    monkeypatch.setattr(chunked, "_write_chunk", stopping_write)


def test_the_same_command_resumes_and_another_request_starts_again(generator_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sample, "DRAW_BLOCK", 4)
    monkeypatch.setattr(chunked, "CHUNK_MAX_IMAGES", 8)
    run, out = str(generator_runs["class"]), tmp_path / "out"
    for seed in ("0", "1"):
        assert main(["sample", run, "--n", "30", "--seed", seed, "--out", str(tmp_path / f"reference-{seed}")]) == 0
    with monkeypatch.context() as patch:
        _interrupt_at_chunk(patch, 2)
        assert main(["sample", run, "--n", "30", "--out", str(out)]) == 130
    assert sorted(path.name for path in (out / ".partial").iterdir()) == [
        "chunk-00000000.npz", "chunk-00000001.npz", "request.json"]
    capsys.readouterr()
    assert main(["sample", run, "--n", "30", "--out", str(out)]) == 0
    assert f"resuming {out}: 16 of 30 images already generated" in capsys.readouterr().out
    _same_folders(out, tmp_path / "reference-0")

    with monkeypatch.context() as patch:  # an unfinished folder, then another request: started again
        _interrupt_at_chunk(patch, 1)
        assert main(["sample", run, "--n", "30", "--out", str(out), "--overwrite"]) == 130
    assert main(["sample", run, "--n", "30", "--seed", "1", "--out", str(out)]) == 0
    assert f"{out} holds unfinished samples of another request (different seed); starting again" in \
        capsys.readouterr().out
    _same_folders(out, tmp_path / "reference-1")
    assert main(["sample", run, "--n", "30", "--seed", "1", "--out", str(out)]) == 2  # finished: as before
    assert "already exists" in _one_error_line(capsys)


def test_a_kill_while_partial_is_removed_is_finished_by_the_same_command(generator_runs, tmp_path, monkeypatch,
                                                                          capsys):
    run, out = str(generator_runs["class"]), tmp_path / "out"
    def interrupted(partial: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(chunked, "_remove_partial", interrupted)
        assert main(["sample", run, "--n", "12", "--out", str(out)]) == 130
    assert (out / "generator.json").is_file() and (out / ".partial" / "request.json").is_file()
    before = (out / "samples.npz").read_bytes()
    assert main(["sample", run, "--n", "12", "--out", str(out)]) == 0  # nothing to make: .partial removed
    assert not (out / ".partial").exists() and (out / "samples.npz").read_bytes() == before


def test_overwrite_and_resume_never_take_someone_elses_folder(generator_runs, tmp_path, capsys):
    run, out = str(generator_runs["class"]), tmp_path / "out"
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / "notes.txt").write_text("mine")  # not a chunk: someone else's folder
    assert main(["sample", run, "--n", "4", "--out", str(out), "--overwrite"]) == 2
    assert "not a sample folder written by `visrep sample`" in _one_error_line(capsys)
    assert (out / ".partial" / "notes.txt").read_text() == "mine"


def _wait_for_chunks(partial: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if partial.is_dir() and len(list(partial.glob("chunk-*.npz"))) >= count:
            return
        time.sleep(0.005)


def _start(cwd: Path, argv: list[str], chunk: int) -> subprocess.Popen:
    """``python -m visrep ARGV`` in chunks of ``chunk`` images, on one thread (the same kernels in every process)."""
    env = {**os.environ, "VISREP_CACHE": str(cwd / "cache"), "VISREP_THREADS": "1", "VISREP_SAMPLE_CHUNK": str(chunk)}
    return subprocess.Popen([sys.executable, "-m", "visrep", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow(reason="3 launches and 10,000 DDPM images, ~15 s; make test keeps the resume and restart rules "
                         "in process (test_the_same_command_resumes_and_another_request_starts_again, "
                         "test_a_kill_while_partial_is_removed_is_finished_by_the_same_command)")
def test_sigkill_then_the_same_command_gives_the_uninterrupted_files(generator_runs, tiny_trained_run, tmp_path,
                                                                      monkeypatch, capsys):
    """5,000 DDPM images in 10 chunks: killed once 2 are written, run again: the files of an uninterrupted run
    (made at the same time, in one chunk). Meanwhile the folder is not taken for finished samples."""
    from visrep.evaluation.fake_sources import TargetFormat, load_image_set

    command = ["sample", str(generator_runs["diffusion"]), "-n", "5000", "--solver", "ddpm", "--steps", "2",
               "--guidance", "1"]
    victim, reference = tmp_path / "victim", tmp_path / "reference"
    killed = _start(tmp_path, [*command, "--out", str(victim)], 500)
    uninterrupted = _start(tmp_path, [*command, "--out", str(reference)], 5000)
    _wait_for_chunks(victim / ".partial", 2, killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL, f"finished before the kill: {killed.stderr.read()[-2000:]}"
    chunks = len(list((victim / ".partial").glob("chunk-*.npz")))
    assert 2 <= chunks < 10 and [path.name for path in victim.iterdir()] == [".partial"]

    target = TargetFormat(8, 1, "crop", tuple(str(i) for i in range(10)))
    with pytest.raises(UserError, match="unfinished `visrep sample` folder"):
        load_image_set(victim, target, progress=False)
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["evaluate", "generated", "--evaluator", str(tiny_trained_run), "--fake", str(victim),
                 f"run.root={tmp_path / 'scores'}"]) == 2
    assert "unfinished `visrep sample` folder" in _one_error_line(capsys)

    resumed = _start(tmp_path, [*command, "--out", str(victim)], 500)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert f"resuming {victim}: {chunks * 500} of 5000 images already generated" in stdout
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-3000:]
    _same_folders(victim, reference)
    assert len(_arrays(victim)["images"]) == 5000
    manifests = [json.loads((folder / "generator.json").read_text()) for folder in (victim, reference)]
    assert manifests[0] == manifests[1]
