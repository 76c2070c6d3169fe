"""Training on every training image (data.val_fraction=0): no per-epoch validation, last weights only,
an evaluation without temperature scaling, and clear errors for what needs a validation split."""

import json
from pathlib import Path

import pytest
from conftest import comparable_history

from visrep.config import ClassifierConfig, load_config
from visrep.data.prepare import prepare_data
from visrep.errors import UserError
from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics
from visrep.inference.loading import load_classifier, saved_weights
from visrep.training import classifier as classifier_loop
from visrep.training.classifier import train_classifier

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
NO_VAL = ("data.val_fraction=0", "eval.weights=last")


def _cfg(tmp_path, *overrides):
    return load_config(TINY, [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/cache", *overrides],
                       schema=ClassifierConfig)


@pytest.fixture(scope="module")
def no_val_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noval")
    return train_classifier(_cfg(tmp, "run.name=noval", *NO_VAL), progress=False)


def test_trains_on_every_non_test_image_and_keeps_last_weights_only(no_val_run):
    cfg = load_classifier(no_val_run)[1]
    data = prepare_data(cfg.data, progress=False)
    with_val = prepare_data(_cfg(no_val_run.parent.parent, "data.val_fraction=0.1").data, progress=False)
    assert len(data.splits["val"]) == 0
    assert len(data.splits["train"]) == len(with_val.splits["train"]) + len(with_val.splits["val"])
    history = [json.loads(line) for line in (no_val_run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 4 and all(h["val_acc"] is None and h["val_loss"] is None for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((no_val_run / "metrics.json").read_text())
    assert metrics["best_epoch"] is None and metrics["best_val_acc"] is None and metrics["overfitting"] is None
    assert (no_val_run / "last.safetensors").is_file() and (no_val_run / "curves.png").is_file()
    assert not (no_val_run / "best.safetensors").exists()


def test_test_evaluation_reports_calibration_without_temperature(no_val_run):
    metrics = evaluate_classifier(no_val_run, "test")
    assert metrics["accuracy"] > 0.5  # chance is 0.1
    calibration = metrics["calibration"]
    assert calibration["temperature"] is None and calibration["ece_after"] is None
    assert 0 <= calibration["ece_before"] <= 1
    assert "temperature scaling not fitted" in format_metrics(metrics)
    out = no_val_run / "eval-test-last"
    assert (out / "reliability_before_temperature.png").is_file()
    assert not (out / "reliability_after_temperature.png").exists()
    summary = json.loads((out / "curves_summary.json").read_text())
    assert summary["best_epoch"] is None and "no validation split" in summary["overfitting_reason"]


def test_what_needs_a_validation_split_says_so(no_val_run):
    with pytest.raises(UserError, match="no validation split"):
        evaluate_classifier(no_val_run, "val")
    with pytest.raises(UserError, match="trained without a validation split, so it has no best weights"):
        evaluate_classifier(no_val_run, "test", weights="best")
    assert saved_weights(no_val_run) == "last"


def test_resumed_no_val_run_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Interrupted after epoch 2 of 4 (its checkpoint written), then resumed with tensorboard on."""
    reference = train_classifier(_cfg(tmp_path, "run.name=ref", *NO_VAL), progress=False)
    end_epoch = classifier_loop.end_epoch

    def interrupt_after_epoch_2(loop, epoch, *args):
        end_epoch(loop, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(classifier_loop, "end_epoch", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(_cfg(tmp_path, "run.name=stopped", *NO_VAL), progress=False)
    monkeypatch.undo()
    stopped = tmp_path / "runs" / "stopped"
    config = stopped / "config.yaml"
    config.write_text(config.read_text().replace("tensorboard: false", "tensorboard: true"))
    resumed = train_classifier(load_config(config, schema=ClassifierConfig), resume=stopped, progress=False)
    history = comparable_history(resumed)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and all(h["val_acc"] is None for h in history)
    assert history == comparable_history(reference)
    assert not (resumed / "best.safetensors").exists()
    assert any((resumed / "tensorboard").iterdir())


@pytest.mark.parametrize("override, message", [("eval.weights=best", "no best epoch"),
                                               ("train.early_stopping_patience=2", "needs a validation split")])
def test_no_val_config_that_cannot_work_fails_before_any_run_exists(tmp_path, override, message):
    overrides = [*NO_VAL, override] if override.startswith("train") else ["data.val_fraction=0", override]
    with pytest.raises(UserError, match=message):
        train_classifier(_cfg(tmp_path, *overrides), progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_evaluator_and_pipeline_without_a_val_split_use_the_last_weights(no_val_run, tmp_path, capsys):
    from visrep.evaluation.evaluator import load_evaluator
    from visrep.training.evaluator import train_evaluator
    from visrep.pipeline import run_pipeline

    evaluator_cfg = load_config(REPO / "configs" / "evaluator_tiny.yaml",
                                [f"run.root={tmp_path}/runs", "run.name=evaluator", *NO_VAL], schema=ClassifierConfig)
    evaluator = train_evaluator(evaluator_cfg, conditioning_run=no_val_run, progress=False)
    record = json.loads((evaluator / "evaluator.json").read_text())
    assert record["weights"] == "last" and record["conditioning"]["weights_sha256"]
    assert load_evaluator(evaluator).registered  # the recorded (last) weights, their hash checked
    root = run_pipeline(REPO / "configs" / "pipeline_tiny.yaml",
                        [f"run.root={tmp_path}/pipe", "data.val_fraction=0", "classifier.eval.weights=last",
                         "stages=[data,classifier,embeddings,report]"], progress=False)
    classifier = root / "classifier"
    assert (classifier / "eval-test-last" / "metrics.json").is_file() and not (classifier / "eval-val-last").exists()
    assert json.loads((root / "embeddings" / "embed.json").read_text())["weights"] == "last"
    assert "section id='embeddings'" in (root / "report" / "report.html").read_text()
