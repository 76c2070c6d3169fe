"""The pipeline trusts only what it can check: a finished stage whose files were damaged runs again (with
the stages built on it), and a folder the pipeline did not make is refused before any stage runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from visrep.cli import main
from visrep.pipeline import run_pipeline
from visrep.pipeline.config import STAGES
from visrep.pipeline.state import MARKER, ROOT_MARKER

from conftest import REPO, write_image
from malformed_cases import snapshot

TINY = REPO / "configs" / "pipeline_tiny.yaml"
BUILT_ON_THE_GAN = ("gan", "generative", "report")


def markers(root: Path) -> dict[str, dict]:
    return {stage: json.loads((root / stage / MARKER).read_text()) for stage in STAGES
            if (root / stage / MARKER).is_file()}


def private_copy(tiny_pipeline: Path, tmp_path: Path) -> Path:
    """The shared pipeline copied (it must stay as it is for the other tests); runs with run.root=tmp_path."""
    copy = tmp_path / tiny_pipeline.name
    shutil.copytree(tiny_pipeline, copy)
    return copy


def damage(path: Path) -> bytes:
    """Random bytes of the same length in place of the file (what a bad disk or copy leaves); returns them."""
    noise = np.random.default_rng(0).bytes(path.stat().st_size)
    path.write_bytes(noise)
    return noise


def every_path(root: Path) -> set[str]:
    """Files and folders alike, so that a new empty folder shows too."""
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def pipeline_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["pipeline", "--config", str(TINY), f"run.root={tmp_path}", *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---- a damaged finished stage ----------------------------------------------------------------------

def test_damaged_gan_weights_rebuild_the_gan_and_what_reads_it(tiny_pipeline, tmp_path, capsys):
    root = private_copy(tiny_pipeline, tmp_path)
    noise = damage(root / "gan" / "generator_ema.safetensors")
    before = markers(root)
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "generator_ema.safetensors changed" in line]
    assert len(said) == 1 and said[0].startswith(
        "[gan] gan/generator_ema.safetensors changed since the stage finished (damaged?): running it again"), out
    for stage in STAGES:
        assert (f"[{stage}] running" in out) == (stage in BUILT_ON_THE_GAN), out
    load_file(root / "gan" / "generator_ema.safetensors")  # the rebuilt weights load
    kept = list(root.glob("gan.replaced-*"))
    assert len(kept) == 1 and str(kept[0]) in said[0]  # set aside, not deleted, and the line says where
    assert (kept[0] / "generator_ema.safetensors").read_bytes() == noise
    after = markers(root)
    assert {stage for stage in STAGES if after[stage] != before[stage]} == set(BUILT_ON_THE_GAN)
    assert (root / "report" / "report.html").is_file() and list(root.glob("report.replaced-*"))


def test_a_rebuilt_pipeline_is_whole_again(tiny_pipeline, tmp_path, capsys):
    """The generative stage writes its scoring cache into the evaluator after the evaluator finished: a cache,
    not damage (nor are the log lines later stages append to earlier runs' log.txt)."""
    root = private_copy(tiny_pipeline, tmp_path)
    damage(root / "evaluator" / "best.safetensors")
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    assert "[evaluator] evaluator/best.safetensors changed" in capsys.readouterr().out
    assert list((root / "evaluator" / "scoring_cache").iterdir())
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    assert capsys.readouterr().out.count("done earlier with this config") == len(STAGES)


def test_a_missing_output_counts_as_damage(tiny_pipeline, tmp_path, capsys):
    root = private_copy(tiny_pipeline, tmp_path)
    (root / "report" / "report.md").unlink()
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    out = capsys.readouterr().out
    assert "[report] report/report.md is missing since the stage finished" in out
    assert (root / "report" / "report.md").is_file()


def test_stages_built_on_a_stage_rebuilt_by_an_earlier_run_run_again(tiny_pipeline, tmp_path, capsys):
    """Keys are config hashes: a GAN rebuilt with the same config keeps its key, so the scoring of the damaged
    weights must be told apart by what it was built from, across invocations too."""
    root = private_copy(tiny_pipeline, tmp_path)
    damage(root / "gan" / "generator_ema.safetensors")
    run_pipeline(TINY, [f"run.root={tmp_path}"], only="gan", progress=False)
    capsys.readouterr()
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    out = capsys.readouterr().out
    for stage in ("generative", "report"):
        assert f"[{stage}] the 'gan' stage it reads was rebuilt after it finished: running it again" in out, out
    assert "[diffusion] done earlier" in out and "[gan] done earlier" in out


def test_only_refuses_to_read_a_damaged_stage(tiny_pipeline, tmp_path, capsys):
    root = private_copy(tiny_pipeline, tmp_path)
    damage(root / "gan" / "generator_ema.safetensors")
    before = snapshot(root)
    assert main(pipeline_argv(tmp_path, "--only", "generative")) == 2
    line = one_error_line(capsys)
    assert "reads the 'gan' stage" in line and "gan/generator_ema.safetensors changed" in line, line
    assert snapshot(root) == before


def test_markers_from_before_output_hashes_still_count_as_done(tiny_pipeline, tmp_path, capsys):
    root = private_copy(tiny_pipeline, tmp_path)
    (root / ROOT_MARKER).unlink()
    for stage, marker in markers(root).items():  # what an earlier visrep wrote: no hashes, no pipeline.json
        old = {name: value for name, value in marker.items() if name not in ("outputs", "upstream_outputs")}
        (root / stage / MARKER).write_text(json.dumps(old))
    run_pipeline(TINY, [f"run.root={tmp_path}"], progress=False)
    assert capsys.readouterr().out.count("done earlier with this config") == len(STAGES)
    assert (root / ROOT_MARKER).is_file()  # the stage markers told it the folder is the pipeline's


# ---- folders the pipeline did not make --------------------------------------------------------------

def _standalone_run(runs: Path) -> Path:
    assert main(["data", "inspect", "digits", "--name", "mine", f"run.root={runs}"]) == 0
    return runs / "mine"


def _photos(runs: Path) -> Path:
    write_image(runs / "mine" / "holiday" / "beach.png", np.random.default_rng(0))
    return runs / "mine"


@pytest.mark.parametrize("make", [_standalone_run, _photos], ids=["standalone run", "folder of photos"])
def test_the_pipeline_never_writes_into_a_folder_it_did_not_make(tmp_path, capsys, make):
    folder = make(tmp_path / "runs")
    files, paths = snapshot(folder), every_path(folder)
    capsys.readouterr()
    assert main(pipeline_argv(tmp_path / "runs", "run.name=mine")) == 2
    line = one_error_line(capsys)
    assert str(folder) in line and "run.name" in line, line
    assert snapshot(folder) == files and every_path(folder) == paths


def test_an_empty_folder_counts_as_new(tmp_path, capsys):
    (tmp_path / "tiny-pipeline").mkdir()
    run_pipeline(TINY, [f"run.root={tmp_path}"], only="data", progress=False)
    assert (tmp_path / "tiny-pipeline" / ROOT_MARKER).is_file()
    assert (tmp_path / "tiny-pipeline" / "data" / MARKER).is_file()


def _foreign_gan_folder(root: Path) -> None:
    write_image(root / "gan" / "photo.png", np.random.default_rng(0))


def test_a_foreign_stage_folder_is_refused_before_any_stage_runs(tmp_path, capsys):
    root = tmp_path / "tiny-pipeline"
    run_pipeline(TINY, [f"run.root={tmp_path}"], only="data", progress=False)  # a partly done pipeline
    _foreign_gan_folder(root)
    files, paths = snapshot(root), every_path(root)
    capsys.readouterr()
    assert main(pipeline_argv(tmp_path)) == 2
    line = one_error_line(capsys)
    assert str(root / "gan") in line and "was not made by this pipeline" in line, line
    assert snapshot(root) == files and every_path(root) == paths  # not even the classifier started


def test_a_fresh_root_with_only_a_foreign_stage_folder_is_refused(tmp_path, capsys):
    root = tmp_path / "tiny-pipeline"
    _foreign_gan_folder(root)
    files, paths = snapshot(root), every_path(root)
    assert main(pipeline_argv(tmp_path)) == 2
    assert str(root) in one_error_line(capsys)
    assert snapshot(root) == files and every_path(root) == paths
