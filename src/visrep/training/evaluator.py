"""The evaluator stage: the classifier training loop on real data only, recorded as an evaluator.

An evaluator is a second classifier, of another architecture and seed than the conditioning CNN,
whose feature space scores the generators (see :mod:`visrep.evaluation.evaluator`). Training
records the weights' hashes (:mod:`visrep.inference.independence`) and the test accuracy in
``evaluator.json``; a run that shares the conditioning CNN's architecture, seed or weights is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import OmegaConf

from visrep.config import ClassifierConfig
from visrep.data.prepare import PreparedData, prepare_data
from visrep.errors import UserError
from visrep.hardware.distributed import current_info, resolve_device
from visrep.inference.independence import EVALUATOR_RECORD, check_architecture_differs, weights_hashes
from visrep.inference.loading import load_classifier, resolve_weights, saved_weights
from visrep.inference.predict import predict_logits
from visrep.runs import atomic_write_text, load_run_config
from visrep.storage import read_json
from visrep.training.classifier import train_classifier


def train_evaluator(cfg: ClassifierConfig | None = None, conditioning_run: Path | None = None, progress: bool = True,
                    resume: Path | None = None, data: PreparedData | None = None,
                    test_report: Callable[[Path, str, PreparedData | None], dict] | None = None) -> Path:
    """Train an evaluator per ``cfg`` (a ClassifierConfig) and record it as one; returns the run directory.

    With ``conditioning_run`` (the classifier whose embeddings condition the generators) the
    evaluator must differ from it in architecture and seed, and its hashes are recorded too.
    With ``resume`` (an interrupted evaluator run) training continues from its newest readable
    checkpoint; ``cfg`` may then be None to use the run's own saved config. ``data`` may pass the
    data already prepared from ``cfg.data``. ``test_report(run, weights, data)`` measures the recorded
    test accuracy ({"accuracy", "n"}); the CLI and the pipeline pass the full classifier evaluation, so
    that the test split is predicted once for both the record and the report (default: the accuracy alone).
    """
    if resume is not None:
        resume = Path(resume)
        check_resumable(resume)
        cfg = cfg if cfg is not None else load_run_config(resume, ClassifierConfig)
    elif cfg is None:
        raise UserError("train_evaluator needs a config (or resume= an interrupted evaluator run)")
    if cfg.eval.tta_translate:
        raise UserError("an evaluator scores with eval.tta_flip views only: set eval.tta_translate=0 "
                        "(its recorded test accuracy must be the accuracy of the function that scores)")
    # checked before training, on a resumed run too: a wrong pairing must not cost a training run
    conditioning = _conditioning_summary(cfg, conditioning_run) if conditioning_run else None
    started = time.perf_counter()
    run_path = train_classifier(cfg, resume=resume, progress=progress, stage="evaluator", data=data)
    if not current_info().is_main:  # under torchrun rank 0 measures and records the trained evaluator
        return run_path
    weights = resolve_weights(cfg, None)  # the checkpoint its eval.weights names (last without a val split)
    hashes = weights_hashes(run_path / f"{weights}.safetensors")
    if conditioning and hashes["tensors"] == conditioning["weights_sha256"]:
        raise UserError("the evaluator's weights are identical to the conditioning CNN's")  # cannot happen by chance
    test_metrics = (test_report or test_split_accuracy)(run_path, weights, data)
    record = {"stage": "evaluator", "weights": weights, "weights_sha256": hashes["tensors"],
              "weights_file_sha256": hashes["file"], "model": cfg.model.name,
              "model_options": _plain_options(cfg.model.options), "seed": int(cfg.run.seed),
              "test_accuracy": test_metrics["accuracy"], "test_n": test_metrics["n"],
              "seconds": time.perf_counter() - started, "resumed": resume is not None, "conditioning": conditioning}
    _write_record(run_path, record)
    return run_path


def check_resumable(run_path: Path) -> None:
    """Refuse, before any work, a directory that is not an interrupted classifier-loop training run.

    The training loop writes metrics.json only when it ends and evaluator.json is written after
    that, so either file means there is nothing left to resume. An interrupted evaluator cannot be
    told apart from an interrupted conditioning classifier by its files (only an unnamed run's
    folder, ``<stamp>-evaluator``, says which): resuming either records it as an evaluator.
    """
    if not run_path.is_dir():
        raise UserError(f"run directory not found: {run_path}")
    if (run_path / EVALUATOR_RECORD).is_file():
        raise UserError(f"{run_path} is a finished evaluator run ({EVALUATOR_RECORD} exists); nothing to resume")
    if (run_path / "metrics.json").is_file():
        stage = read_json(run_path / "metrics.json").get("stage", "unknown")
        raise UserError(f"{run_path} has finished (metrics.json of stage '{stage}', no {EVALUATOR_RECORD}); "
                        "nothing to resume as an evaluator")
    if not (run_path / "config.yaml").is_file():
        raise UserError(f"{run_path} is not a visrep run directory (no config.yaml)")
    if not list((run_path / "checkpoints").glob("state-*.pt")):
        raise UserError(f"{run_path} has no training checkpoints (checkpoints/state-*.pt): "
                        "not an interrupted evaluator run")


def test_split_accuracy(run_path: Path, weights: str, data: PreparedData | None = None) -> dict:
    """{"accuracy", "n"} of the run's ``weights`` on its test split, with its eval.tta_* views: the number
    ``visrep evaluate classifier`` reports (the same prediction), without its report files."""
    model, cfg = load_classifier(run_path, weights)
    data = data if data is not None else prepare_data(cfg.data, progress=False)
    device = resolve_device("auto", key="device")
    logits, labels = predict_logits(model.to(device), data.loader("test", 512), device, cfg.train.precision,
                                    cfg.eval.tta_flip, int(cfg.eval.tta_translate))
    if len(labels) == 0:
        raise UserError(f"{run_path} has an empty test split: an evaluator needs test images to report its accuracy")
    if not np.isfinite(logits).all():  # a diverged run: no accuracy to record
        raise UserError(f"the {weights} weights of {run_path} give NaN/Inf logits on test: the run diverged "
                        f"(see its metrics.jsonl); retrain it, e.g. with a lower train.lr")
    return {"accuracy": float((logits.argmax(1) == labels).mean()), "n": int(len(labels))}


def _conditioning_summary(cfg: ClassifierConfig, conditioning_run: Path) -> dict:
    run_path = Path(conditioning_run)
    conditioning_cfg = load_run_config(run_path, ClassifierConfig)
    check_architecture_differs(cfg, conditioning_cfg)
    hashes = weights_hashes(run_path / f"{saved_weights(run_path)}.safetensors")
    return {"run": str(conditioning_run), "model": conditioning_cfg.model.name, "seed": int(conditioning_cfg.run.seed),
            "weights_sha256": hashes["tensors"], "weights_file_sha256": hashes["file"]}


def _plain_options(options) -> dict:
    return OmegaConf.to_container(options, resolve=True) if OmegaConf.is_config(options) else dict(options)


def _write_record(run_path: Path, record: dict) -> None:
    """evaluator.json, and the evaluator's hashes and test accuracy added to metrics.json."""
    atomic_write_text(run_path / EVALUATOR_RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    metrics_path = run_path / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics.update({"stage": "evaluator", "weights_sha256": record["weights_sha256"],
                    "test_accuracy": record["test_accuracy"]})
    atomic_write_text(metrics_path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")

