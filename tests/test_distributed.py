"""Training under torchrun + DistributedDataParallel (gloo on CPU): the classifier loop so far (issue 24).

``data.batch_size`` is per process, so N processes at batch B take the steps of one process at N·B:
the same global batch, the same number of optimizer steps, and (with the same seed) nearly the same
loss curve. It is not identical: each process draws its own augmentation and BatchNorm normalises
over its own half of the batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"
TOLERANCE = 0.03  # largest allowed |Δ train loss| per epoch between 1 and 2 processes (measured: ≤ 0.009)


def _train(tmp_path: Path, name: str, processes: int, batch: int) -> Path:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    command = [*launcher, "-m", "visrep", "train", "classifier", "--config", str(TINY), f"run.root={tmp_path}",
               f"run.name={name}", f"data.batch_size={batch}", "train.threads=1"]
    env = {**os.environ, "VISREP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / name


def _curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_gloo_processes_follow_the_one_process_curve_and_their_checkpoint_loads_in_one(tmp_path):
    from visrep.evaluation.classifier_eval import evaluate_classifier

    one = _curve(_train(tmp_path, "one", 1, 128))
    two_run = _train(tmp_path, "two", 2, 64)
    two = _curve(two_run)
    assert [epoch["step"] for epoch in two] == [epoch["step"] for epoch in one]  # same global batch, same steps
    gaps = [abs(a["train_loss"] - b["train_loss"]) for a, b in zip(one, two)]
    assert max(gaps) < TOLERANCE, gaps
    assert two[-1]["train_loss"] < two[0]["train_loss"]  # it learns
    metrics = evaluate_classifier(two_run, "test")  # written by rank 0 under DDP, read by one plain process
    assert metrics["accuracy"] > 0.2
