"""`visrep evaluate generated` killed mid-way: a re-run of the same command starts the unfinished
scoring again (saying so) and ends with what an uninterrupted run writes; a killed run is never
taken as finished (metrics.json, its last file, is absent)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np

from conftest import start_visrep
from visrep.cli import main


def _fakes(path: Path, count: int = 120) -> Path:
    """8 px grey images with labels, something to score against the tiny digits classifier."""
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (count, 1, 8, 8), dtype=np.uint8), labels=rng.integers(0, 10, count))
    return path


def _argv(cwd: Path, evaluator: Path, fake: Path, name: str) -> list[str]:
    return ["evaluate", "generated", "--evaluator", str(evaluator), "--fake", str(fake), "--name", name,
            f"run.root={cwd}/runs", "generative.cache=false", "--no-cas"]


def _kill_once_started(process, run: Path, timeout: float = 120) -> None:
    """SIGKILL as soon as the run folder holds its config: scoring has begun, metrics.json is not there."""
    deadline = time.time() + timeout
    while not (run / "config.yaml").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the scoring finished before it could be killed"


def _comparable(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("timing")
    return metrics


def test_killed_scoring_is_started_again_and_matches_an_uninterrupted_one(tiny_trained_run, tmp_path, capsys,
                                                                          monkeypatch):
    """Only the killed command runs in a process of its own (to be killed); the others run in this one."""
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    fake = _fakes(tmp_path / "fake.npz")
    assert main(_argv(tmp_path, tiny_trained_run, fake, "reference")) == 0

    victim_run = tmp_path / "runs" / "victim"
    _kill_once_started(start_visrep(tmp_path, *_argv(tmp_path, tiny_trained_run, fake, "victim")), victim_run)
    assert victim_run.is_dir() and not (victim_run / "metrics.json").exists()

    capsys.readouterr()
    assert main(_argv(tmp_path, tiny_trained_run, fake, "victim")) == 0
    assert "unfinished 'generated' run" in capsys.readouterr().err
    assert _comparable(victim_run) == _comparable(tmp_path / "runs" / "reference")
    grids = sorted(path.name for path in (tmp_path / "runs" / "reference").glob("*.png"))
    assert grids and all((victim_run / name).read_bytes() == (tmp_path / "runs" / "reference" / name).read_bytes()
                         for name in grids)

    finished = (victim_run / "metrics.json").read_bytes()  # a finished scoring is refused, as before
    assert main(_argv(tmp_path, tiny_trained_run, fake, "victim")) == 2
    assert "already exists" in capsys.readouterr().err
    assert (victim_run / "metrics.json").read_bytes() == finished
