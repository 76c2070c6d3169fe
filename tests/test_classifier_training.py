"""Classifier training, checkpoints, resume and evaluation on a shrunk config (seconds)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from conftest import comparable_history, sigkill_at_random_step, start_visrep

from visrep.config import ClassifierConfig, load_config
from visrep.evaluation.classifier_eval import evaluate_classifier
from visrep.inference.loading import load_classifier
from visrep.inference.predict import predict_logits
from visrep.data.prepare import prepare_data
from visrep.training.classifier import train_classifier

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


def _cfg(tmp_path, *overrides):
    return load_config(TINY, [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/cache", *overrides],
                       schema=ClassifierConfig)


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    return train_classifier(_cfg(tmp, "run.name=base"), progress=False)


def test_training_lowers_loss_and_beats_chance(trained_run):
    history = _history(trained_run)
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.5  # chance is 0.1
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["best_val_acc"] == max(h["val_acc"] for h in history)
    for name in ("best.safetensors", "last.safetensors", "curves.png", "curves.csv", "manifest.json"):
        assert (trained_run / name).is_file(), name


def test_checkpoint_round_trip_gives_identical_logits(trained_run):
    model, cfg = load_classifier(trained_run, "last")
    again, _ = load_classifier(trained_run, "last")
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    tensors = load_file(str(trained_run / "last.safetensors"))
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())


def test_eval_weights_from_config_chooses_the_checkpoint_and_folder(trained_run):
    from visrep.errors import UserError

    metrics = evaluate_classifier(trained_run, "val", weights="last")
    assert metrics["weights"] == "last" and (trained_run / "eval-val-last" / "metrics.json").is_file()
    best = evaluate_classifier(trained_run, "val")  # tiny.yaml leaves eval.weights at best
    assert best["weights"] == "best" and (trained_run / "eval-val" / "metrics.json").is_file()
    with pytest.raises(UserError, match="best or last"):
        evaluate_classifier(trained_run, "val", weights="final")


def test_diverged_run_gets_one_clear_error_and_no_eval_folder(trained_run, monkeypatch):
    from visrep.errors import UserError
    from visrep.evaluation import classifier_eval

    def nan_logits(*args, **kwargs):
        logits, labels = predict_logits(*args, **kwargs)
        logits[0, 0] = np.nan  # one bad score is enough to make every metric meaningless
        return logits, labels

    monkeypatch.setattr(classifier_eval, "predict_logits", nan_logits)
    with pytest.raises(UserError, match="NaN/Inf logits on test: the run diverged"):
        evaluate_classifier(trained_run, "test", weights="last", tta_flip=False)
    assert not (trained_run / "eval-test-last").exists()


def test_cli_no_tta_overrides_a_run_configured_for_tta(trained_run, capsys):
    from visrep.cli import main

    cfg_file = trained_run / "config.yaml"
    original = cfg_file.read_text()
    cfg_file.write_text(original.replace("tta_flip: false", "tta_flip: true").replace("tta_translate: 0",
                                                                                      "tta_translate: 1"))
    try:
        assert main(["evaluate", "classifier", str(trained_run), "--split", "val", "--no-tta"]) == 0
        plain = json.loads((trained_run / "eval-val" / "metrics.json").read_text())
        assert plain["tta_flip"] is False and plain["tta_translate"] == 0
        assert main(["evaluate", "classifier", str(trained_run), "--split", "val"]) == 0
        assert (trained_run / "eval-val-tta-shift1" / "metrics.json").is_file()
    finally:
        cfg_file.write_text(original)


def test_evaluation_metrics_equal_sklearn(trained_run):
    metrics = evaluate_classifier(trained_run, "test")
    model, cfg = load_classifier(trained_run)
    data = prepare_data(cfg.data, progress=False)
    logits, labels = predict_logits(model, data.loader("test", 100), torch.device("cpu"), cfg.train.precision)
    predictions = logits.argmax(1)
    assert metrics["n"] == len(data.splits["test"])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predictions), abs=1e-12)
    assert metrics["precision"]["macro"] == pytest.approx(precision_score(labels, predictions, average="macro",
                                                                          zero_division=0), abs=1e-12)
    assert metrics["recall"]["weighted"] == pytest.approx(recall_score(labels, predictions, average="weighted",
                                                                       zero_division=0), abs=1e-12)
    assert metrics["f1"]["macro"] == pytest.approx(f1_score(labels, predictions, average="macro"), abs=1e-12)
    out = trained_run / "eval-test"
    for name in ("confusion_matrix.png", "confusion_matrix_normalised.png", "confusion_matrix.json", "curves.png",
                 "reliability_before_temperature.png", "reliability_after_temperature.png", "metrics.json"):
        assert (out / name).is_file(), name


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    common = ["train", "classifier", "--config", str(TINY), "train.epochs=10", f"run.root={tmp_path}/runs"]
    reference = start_visrep(tmp_path, *common, "--name", "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    victim = start_visrep(tmp_path, *common, "--name", "victim")
    where = sigkill_at_random_step(victim, tmp_path / "runs" / "victim" / "checkpoints", epochs=10)
    assert not (tmp_path / "runs" / "victim" / "metrics.json").exists()

    resumed = start_visrep(tmp_path, "train", "classifier", "--resume", str(tmp_path / "runs" / "victim"))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    ref_run, victim_run = tmp_path / "runs" / "reference", tmp_path / "runs" / "victim"
    assert comparable_history(victim_run) == comparable_history(ref_run), where
    ref_weights, victim_weights = load_file(str(ref_run / "last.safetensors")), load_file(str(victim_run / "last.safetensors"))
    assert all(torch.equal(ref_weights[k], victim_weights[k]) for k in ref_weights)
    assert "resumed from state-" in (victim_run / "log.txt").read_text()


def test_resume_falls_back_past_a_corrupt_latest_checkpoint(tmp_path):
    run = train_classifier(_cfg(tmp_path, "run.name=r", "train.epochs=3"), progress=False)
    states = sorted((run / "checkpoints").glob("state-*.pt"))
    assert [p.name for p in states] == ["state-00002.pt", "state-00003.pt"]  # keep_checkpoints=2
    states[-1].write_bytes(states[-1].read_bytes()[:1000])  # truncated newest
    (run / "metrics.json").unlink()  # as if it crashed while writing the newest state
    from visrep.runs import load_run_config

    train_classifier(load_run_config(run, ClassifierConfig), resume=run, progress=False)
    log = (run / "log.txt").read_text()
    assert "skipping unreadable checkpoint state-00003.pt" in log and "resumed from state-00002.pt" in log
    assert len(_history(run)) == 3
