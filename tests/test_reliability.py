"""Safe loading, NaN guard, memory estimate, atomic writes and evaluator resume (issue: reliability)."""

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from conftest import comparable_history, sigkill_at_random_step, start_visrep
from visrep.config import ClassifierConfig, load_config
from visrep.errors import TrainingDiverged, UserError
from visrep.training import guards
from visrep.storage import load_state, save_state
from visrep.training.classifier import train_classifier

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
EVALUATOR_TINY = TINY.with_name("evaluator_tiny.yaml")


def _cfg(tmp_path, *overrides):
    return load_config(TINY, [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/cache", *overrides],
                       schema=ClassifierConfig)


class _Payload:
    """Unpickling this calls os.system: the classic malicious-checkpoint trick."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "state-00001.pt"
    with open(path, "wb") as stream:
        pickle.dump({"model": _Payload(marker)}, stream)
    with pytest.raises(UserError, match="could run code") as refused:
        load_state(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(refused.value)  # torch's advice to run the code is not repeated
    # the same file through torch's own zip format
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(UserError, match="could run code") as refused:
        load_state(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(refused.value)


def test_state_round_trip_and_atomic_write_leaves_no_temp_files(tmp_path):
    state = {"step": 3, "weights": torch.arange(4.0), "nested": {"lr": [0.1, 0.2]}}
    save_state(state, tmp_path / "s.pt")
    loaded = load_state(tmp_path / "s.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]


def test_nan_loss_stops_naming_stage_and_step_and_keeps_checkpoints(tmp_path, monkeypatch):
    run_cfg = _cfg(tmp_path, "run.name=nan", "train.epochs=3")
    real_step = __import__("visrep.training.classifier", fromlist=["x"]).train_step
    calls = {"n": 0}

    def poisoned(loop, images, labels):
        calls["n"] += 1
        if loop.state.epoch >= 1:  # first epoch clean, then NaN inputs
            images = images * float("nan")
        return real_step(loop, images, labels)

    monkeypatch.setattr("visrep.training.classifier.train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"classifier training stopped: loss is nan at step \d+ \(epoch 2\)"):
        train_classifier(run_cfg, progress=False)
    checkpoints = sorted((tmp_path / "runs" / "nan" / "checkpoints").glob("state-*.pt"))
    assert [p.name for p in checkpoints] == ["state-00001.pt"]
    assert torch.isfinite(load_state(checkpoints[0])["model"]["head.weight"]).all()


def test_isolated_bad_batches_can_be_skipped(tmp_path, monkeypatch):
    real_step = __import__("visrep.training.classifier", fromlist=["x"]).train_step
    seen = {"n": 0}

    def one_bad(loop, images, labels):
        seen["n"] += 1
        if seen["n"] == 3:
            images = images * float("inf")
        return real_step(loop, images, labels)

    monkeypatch.setattr("visrep.training.classifier.train_step", one_bad)
    run = train_classifier(_cfg(tmp_path, "run.name=skip", "train.epochs=1", "train.skip_bad_batches=1"),
                           progress=False)
    assert "batch skipped (1 of 1 allowed)" in (run / "log.txt").read_text()


def test_guard_accepts_huge_finite_gradients_and_rejects_nan_or_inf():
    # 1e25 squared overflows fp32: an L2-norm check would call this finite gradient Inf.
    weight, bias = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    weight.grad, bias.grad = torch.tensor([1e25, -1e25, 1.0]), torch.tensor([0.5, 2.0])
    guard = guards.NonFiniteGuard("classifier")
    assert guard.batch_is_usable(torch.tensor(1.0), [weight, bias], step=0, epoch=1)
    for bad in (float("nan"), float("inf")):
        bias.grad = torch.tensor([0.5, bad])
        with pytest.raises(TrainingDiverged, match="gradient is NaN/Inf at step 3"):
            guard.batch_is_usable(torch.tensor(1.0), [weight, bias], step=3, epoch=1)


def test_batch_that_cannot_fit_fails_early_with_a_suggestion(tmp_path, monkeypatch):
    monkeypatch.setattr(guards, "available_memory_bytes", lambda device: 64 * 2**20)  # pretend 64 MiB free
    with pytest.raises(UserError, match=r"data.batch_size=100000 needs about .* GiB .* try data.batch_size=\d+"):
        train_classifier(_cfg(tmp_path, "run.name=oom", "data.batch_size=100000"), progress=False)


def test_memory_estimate_scales_with_batch():
    from visrep.models import create_model

    model = create_model("fastcnn", 10, 1, 16, widths=[8, 16, 16])
    sample = torch.randn(4, 1, 16, 16)
    small, large = (guards.estimate_training_bytes(model, sample, b) for b in (10, 1000))
    assert large > 50 * small / 2


def _without_timings(record: dict) -> dict:
    return {key: value for key, value in record.items() if "second" not in key and key != "resumed"}


@pytest.mark.slow(reason="~20 s; the evaluator trains through the classifier's loop and checkpointer, whose SIGKILL "
                         "test (test_classifier_training) make test keeps: this adds the evaluator's record")
def test_sigkill_then_resume_evaluator_matches_uninterrupted_run(tmp_path):
    conditioning = train_classifier(_cfg(tmp_path, "run.name=conditioning", "train.epochs=1"), progress=False)
    common = ["train", "evaluator", "--config", str(EVALUATOR_TINY), f"run.root={tmp_path}/runs",  # 6 epochs
              "--conditioning", str(conditioning)]
    reference = start_visrep(tmp_path, *common, "--name", "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    victim = start_visrep(tmp_path, *common, "--name", "victim")
    where = sigkill_at_random_step(victim, tmp_path / "runs" / "victim" / "checkpoints", epochs=6)
    assert not (tmp_path / "runs" / "victim" / "evaluator.json").exists()

    # --conditioning again: checked and recorded as on a fresh run
    resumed = start_visrep(tmp_path, "train", "evaluator", "--resume", str(tmp_path / "runs" / "victim"),
                           "--conditioning", str(conditioning))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    ref_run, victim_run = tmp_path / "runs" / "reference", tmp_path / "runs" / "victim"
    assert comparable_history(victim_run) == comparable_history(ref_run), where
    for name in ("evaluator.json", "metrics.json"):  # stage "evaluator", weights hash, test accuracy, conditioning
        ref, got = (json.loads((run / name).read_text()) for run in (ref_run, victim_run))
        assert _without_timings(got) == _without_timings(ref), name
    record = json.loads((victim_run / "evaluator.json").read_text())
    assert record["stage"] == "evaluator" and record["resumed"] and record["conditioning"]["run"] == str(conditioning)
    assert "resumed from state-" in (victim_run / "log.txt").read_text()
