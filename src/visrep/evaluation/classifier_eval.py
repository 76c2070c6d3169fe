"""`visrep evaluate classifier <run>`: the full classification report of a trained run.

Temperature scaling is fitted on the validation split and then applied to the evaluated split,
so a test report never tunes anything on test. A run trained without a validation split
(``data.val_fraction: 0``) gets its calibration before scaling only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from visrep.data.prepare import PreparedData, prepare_data
from visrep.errors import UserError
from visrep.evaluation.classification import (calibration_report, classification_metrics, reliability_bins,
                                              softmax_probabilities, apply_temperature, fit_temperature)
from visrep.figures import plot_confusion_matrix, plot_reliability_diagram
from visrep.hardware.distributed import resolve_device
from visrep.inference.predict import predict_logits
from visrep.inference.loading import check_finished, load_classifier, resolve_weights
from visrep.runs import check_manifest, open_run
from visrep.training.curves import write_curve_artefacts

SPLITS = ("train", "val", "test")


def evaluate_classifier(run_path: Path, split: str = "test", tta_flip: bool | None = None,
                        weights: str | None = None, tta_translate: int | None = None,
                        data: PreparedData | None = None, allow_partial: bool = False) -> dict:
    """Metrics of the run's ``weights`` on ``split``, artefacts in ``<run>/eval-<split>[-last][-tta...]``.

    ``weights``, ``tta_flip`` and ``tta_translate`` default to the run's ``eval:`` config. ``data``
    may pass the run's data already prepared (checked against its manifest), to skip preparing it again."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)} (got '{split}')")
    run = open_run(run_path)
    check_finished(run.path, allow_partial)
    model, cfg = load_classifier(run.path, weights)
    weights = resolve_weights(cfg, weights)
    data = data if data is not None else prepare_data(cfg.data)
    check_manifest(run.path, data.manifest)
    tta = cfg.eval.tta_flip if tta_flip is None else tta_flip
    shift = int(cfg.eval.tta_translate if tta_translate is None else tta_translate)
    if shift < 0:
        raise UserError(f"tta_translate must be ≥ 0 pixels (got {shift})")
    device = resolve_device("auto", key="device")
    model = model.to(device)
    predict = lambda name: predict_logits(model, data.loader(name, 512), device, cfg.train.precision,  # noqa: E731
                                          tta, shift)
    has_val = len(data.splits["val"]) > 0
    if split == "val" and not has_val:
        raise UserError(f"{run.path} has no validation split (trained with data.val_fraction=0): "
                        f"evaluate --split test or train")
    if len(data.splits[split]) == 0:
        raise UserError(f"{run.path} has an empty {split} split (data.{split}_fraction=0 or no {split}/ folder): "
                        f"evaluate another split (--split val or train)")
    logits, labels = predict(split)
    checked = {split: logits}
    if has_val:  # temperature scaling is fitted on val
        val_logits, val_labels = predict("val") if split != "val" else (logits, labels)
        checked["val"] = val_logits  # the same entry when split is val
    for name, scores in checked.items():
        if not np.isfinite(scores).all():  # a diverged run: no metric is meaningful, say so instead of sklearn's error
            raise UserError(f"the {weights} weights of {run.path} give NaN/Inf logits on {name}: the run diverged "
                            f"(see its metrics.jsonl); retrain it, e.g. with a lower train.lr")
    out = run.path / f"eval-{split}{'-last' if weights == 'last' else ''}{'-tta' if tta else ''}" \
                     f"{f'-shift{shift}' if shift else ''}"
    out.mkdir(exist_ok=True)
    metrics = classification_metrics(logits, labels, data.class_names, topk=tuple(cfg.eval.topk))
    temperature = fit_temperature(val_logits, val_labels) if has_val else None
    metrics["calibration"] = calibration_report(logits, labels, temperature, cfg.eval.calibration_bins)
    # on val the temperature was fitted to these very logits: "after" is then optimistic, and says so
    metrics["calibration"]["temperature_fitted_on_this_split"] = temperature is not None and split == "val"
    metrics.update({"split": split, "tta_flip": tta, "tta_translate": shift, "weights": weights,
                    "run": str(run.path)})
    _write_artefacts(out, metrics, logits, labels, temperature, data.class_names, cfg.eval.calibration_bins)
    _write_curves(run.path, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    run.logger.info("evaluated %s on %s: accuracy %.4f, macro F1 %.4f → %s", weights, split, metrics["accuracy"],
                    metrics["f1"]["macro"], out)
    return metrics


def evaluator_test_report(run_path: Path, weights: str, data: PreparedData | None = None) -> dict:
    """An evaluator's own report on its test split (``eval-test/``, as ``visrep evaluate classifier`` writes it),
    returning {"accuracy", "n"} for evaluator.json: one prediction for the record and the report."""
    metrics = evaluate_classifier(Path(run_path), "test", weights=weights, data=data)
    return {"accuracy": metrics["accuracy"], "n": metrics["n"]}


def _write_artefacts(out: Path, metrics: dict, logits, labels, temperature: float | None, class_names,
                     n_bins: int) -> None:
    (out / "classification_report.txt").write_text(metrics["report_text"])
    (out / "confusion_matrix.json").write_text(json.dumps({
        "classes": class_names, "raw": metrics["confusion_matrix"],
        "normalised": metrics["confusion_matrix_normalised"]}, indent=1))
    plot_confusion_matrix(metrics["confusion_matrix"], class_names, out / "confusion_matrix.png", normalised=False)
    plot_confusion_matrix(metrics["confusion_matrix_normalised"], class_names, out / "confusion_matrix_normalised.png",
                          normalised=True)
    if temperature is None:  # no val split to fit it on
        diagrams = {"before": (logits, "reliability (no temperature scaling)")}
    else:
        diagrams = {"before": (logits, f"reliability before temperature scaling (T={temperature:.2f})"),
                    "after": (apply_temperature(logits, temperature),
                              f"reliability after temperature scaling (T={temperature:.2f})")}
    for name, (scores, title) in diagrams.items():
        bins = reliability_bins(softmax_probabilities(scores), labels, n_bins)
        plot_reliability_diagram(bins, out / f"reliability_{name}_temperature.png", title)


def _write_curves(run_path: Path, out: Path) -> None:
    log = run_path / "metrics.jsonl"
    if not log.is_file():
        return
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not history:
        return
    summary = write_curve_artefacts(history, out)
    (out / "curves_summary.json").write_text(json.dumps(summary, indent=1))


def format_metrics(metrics: dict) -> str:
    lines = [f"{metrics['split']} (n={metrics['n']}, tta_flip={metrics['tta_flip']}, "
             f"tta_translate={metrics.get('tta_translate', 0)}):",
             f"  accuracy {metrics['accuracy']:.4f}  balanced {metrics['balanced_accuracy']:.4f}  "
             + "  ".join(f"{k} {v:.4f}" for k, v in metrics["top_k_accuracy"].items()),
             f"  precision macro {metrics['precision']['macro']:.4f} weighted {metrics['precision']['weighted']:.4f}",
             f"  recall    macro {metrics['recall']['macro']:.4f} weighted {metrics['recall']['weighted']:.4f}",
             f"  F1        macro {metrics['f1']['macro']:.4f} weighted {metrics['f1']['weighted']:.4f}",
             _calibration_line(metrics["calibration"])]
    return "\n".join(lines)


def _calibration_line(calibration: dict) -> str:
    if calibration["temperature"] is None:
        return f"  ECE {calibration['ece_before']:.4f} (no val split: temperature scaling not fitted)"
    where = ("fitted on this same val split: optimistic" if calibration.get("temperature_fitted_on_this_split")
             else "fitted on val")
    return (f"  ECE {calibration['ece_before']:.4f} → {calibration['ece_after']:.4f} after temperature "
            f"{calibration['temperature']:.3f} ({where})")
