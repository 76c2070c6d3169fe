"""Malformed-input cases for `visrep pipeline`, in the style of tests/malformed_cases.py: each case(tmp)
sets up files under tmp and returns CLI argv that must end with exit code 2, a single ``error:`` line, no
traceback, and no change to anything saved before (everything stays under tmp: run.root={tmp}/runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import write_image

REPO = Path(__file__).resolve().parents[1]
PIPELINE = str(REPO / "configs" / "pipeline_tiny.yaml")


def _runs(tmp: Path) -> str:
    return f"run.root={tmp}/runs"


def pipeline_into_a_standalone_run(tmp):
    """run.name names another command's run: the pipeline must not add its stage folders to it."""
    from visrep.cli import main

    assert main(["data", "inspect", "digits", _runs(tmp), "--name", "inspected"]) == 0
    return ["pipeline", "--config", PIPELINE, _runs(tmp), "run.name=inspected"]


def pipeline_with_a_foreign_stage_folder(tmp):
    """A partly done pipeline whose gan/ folder is someone else's: refused before the classifier starts."""
    from visrep.cli import main

    assert main(["pipeline", "--config", PIPELINE, _runs(tmp), "--only", "data"]) == 0
    write_image(tmp / "runs" / "tiny-pipeline" / "gan" / "photo.png", np.random.default_rng(0))
    return ["pipeline", "--config", PIPELINE, _runs(tmp)]


PIPELINE_CASES = [pipeline_into_a_standalone_run, pipeline_with_a_foreign_stage_folder]
