"""The embedding stage: a trained classifier run → embeddings files (+ condition banks) → analysis.

``embed_classifier_run(run, cfg)`` is what ``visrep embed`` calls. It refuses a run whose data
manifest no longer matches its data (the embeddings would be labelled with the wrong images),
and never silently replaces a layer's existing embeddings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from visrep.data.prepare import PreparedData, prepare_data
from visrep.embeddings.evaluate import analyse_embeddings, check_analysis_options
from visrep.representations.bank import BANK_FILE, ConditionBank
from visrep.representations.extract import Extraction, extract_features, resolve_layers
from visrep.representations.pooling import check_pooling
from visrep.representations.store import (SPLIT_NAMES, EmbeddingSet, layer_folder, save_embedding_set, split_file,
                                     write_json)
from visrep.embeddings.threads import single_threaded_numerics
from visrep.representations.train_embeddings import bank_metadata, extraction_metadata
from visrep.errors import UserError
from visrep.inference.loading import check_finished, load_classifier
from visrep.hardware.distributed import resolve_device
from visrep.hardware.precision import check_precision, resolve_precision
from visrep.hardware.record import compute_record
from visrep.runs import check_manifest, environment_info, holds, open_run

WEIGHTS = ("best", "last")


def embed_classifier_run(run_path: Path, cfg, progress: bool = True, data: PreparedData | None = None) -> Path:
    """Extract ``cfg.embed.layers`` for ``cfg.embed.splits``, save them with each layer's condition bank (the
    generators' class Gaussians and k-means centres, for average-pooled or vector layers), then
    (``cfg.analysis.enabled``) analyse every layer. Returns the embeddings folder.

    ``cfg`` is an EmbedConfig; ``data`` may pass already prepared data of the same run (saves a reload).
    """
    options = cfg.embed
    _check_options(options)
    if cfg.analysis.enabled:
        check_analysis_options(cfg.analysis)  # fail before minutes of extraction, not after
    run = open_run(Path(run_path))
    check_finished(run.path, options.allow_partial)
    model, classifier_cfg = load_classifier(run.path, options.weights)
    layers = resolve_layers(model, list(options.layers))
    data = data or prepare_data(classifier_cfg.data, progress=progress)
    check_manifest(run.path, data.manifest)
    out = Path(options.out).expanduser() if options.out else run.path / "embeddings"
    _claim_layer_folders(out, layers, options.overwrite, [run.path, Path(str(classifier_cfg.data.source))])
    channels_last = bool(classifier_cfg.train.channels_last)
    model = _inference_model(model, channels_last, cfg.embed.device)
    summary = _extract_splits(run, model, data, layers, out, cfg, progress, channels_last)
    for layer in layers:
        write_json(layer_folder(out, layer) / "info.json",
                   {**summary, "layer": layer, "layer_module": model.feature_layers[layer]})
    write_json(out / "embed.json", summary)
    run.logger.info("embeddings of %s written to %s", ", ".join(layers), out)
    if cfg.analysis.enabled:
        analyse_embeddings(out, cfg.analysis, layers, data=data, logger=run.logger)
    return out


def _inference_model(model: torch.nn.Module, channels_last: bool, device: str = "auto") -> torch.nn.Module:
    model = model.to(resolve_device(device, key="embed.device"))
    if channels_last:  # as in training: the fast layout for bf16 convolutions on CPU
        model = model.to(memory_format=torch.channels_last)
    return model


def _extract_splits(run, model, data: PreparedData, layers: list[str], out: Path, cfg, progress: bool,
                    channels_last: bool) -> dict:
    """One pass per split (all layers together), saved at once; returns the embed.json summary."""
    options = cfg.embed
    base = _base_metadata(run.path, options, data, model)
    timings, head_accuracy = {}, {}
    for split in dict.fromkeys(options.splits):
        if len(data.splits[split]) == 0:
            run.logger.info("embed: split %s is empty, skipped", split)
            continue
        loader = data.loader(split, options.batch_size, channels_last=channels_last)
        extraction = extract_features(model, loader, layers, options.pooling, options.l2_normalize, options.precision,
                                      progress=progress, description=f"embed {split}")
        timings[split] = {"images": len(extraction.labels), "seconds": round(extraction.seconds, 3),
                          "images_per_s": round(extraction.images_per_s, 1)}
        head_accuracy[split] = extraction.head_accuracy
        run.logger.info("embedded %s: %d images, %d layer(s) in %.1f s (%.0f images/s)", split,
                        len(extraction.labels), len(layers), extraction.seconds, extraction.images_per_s)
        _save_split(out, split, extraction, data, base, model)
        if split == "train":
            _save_banks(out, extraction, data.class_names, base, options, cfg.analysis.seed, run.logger)
    device = next(model.parameters()).device
    compute = compute_record(device, resolve_precision(options.precision, device), channels_last)
    return {**base, "layers": layers, "splits": list(timings), "extraction": timings, "head_accuracy": head_accuracy,
            "feature_layers": list(model.feature_layers), "environment": environment_info(), "compute": compute}


def _check_options(options) -> None:
    check_pooling(options.pooling)
    check_precision(options.precision, "embed.precision")
    if options.weights not in WEIGHTS:
        raise UserError(f"embed.weights must be one of {', '.join(WEIGHTS)} (got '{options.weights}')")
    for key in ("batch_size", "kmeans_clusters"):
        if getattr(options, key) < 1:
            raise UserError(f"embed.{key} must be ≥ 1 (got {getattr(options, key)})")
    unknown = [split for split in options.splits if split not in SPLIT_NAMES]
    if unknown or not options.splits:
        raise UserError(f"unknown split(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                        f"choose from: {', '.join(SPLIT_NAMES)}")


def _claim_layer_folders(out: Path, layers: list[str], overwrite: bool, reads: list[Path]) -> None:
    """Make way for the layers' folders: --overwrite replaces only a layer folder this verb wrote (it holds
    info.json) and never one holding what this command reads (the classifier run, its data)."""
    existing = [layer for layer in layers if layer_folder(out, layer).exists()]
    if existing and not overwrite:
        raise UserError(f"{out} already has embeddings for {', '.join(existing)}; pass --overwrite "
                        "(embed.overwrite=true) to replace them, or --out to write elsewhere")
    for layer in existing:  # all checked before any is removed
        check_layer_replaceable(layer_folder(out, layer), reads)
    for layer in existing:
        shutil.rmtree(layer_folder(out, layer))


def check_layer_replaceable(folder: Path, reads: list[Path]) -> None:
    read = next((item for item in reads if holds(folder, item)), None)
    if read is not None:
        raise UserError(f"--overwrite would delete {folder}, which this command reads ({read}): choose another --out")
    written = ["info.json", *(f"{split}.safetensors" for split in SPLIT_NAMES)]  # a killed extraction: splits only
    if not folder.is_dir() or not any((folder / name).is_file() for name in written):
        raise UserError(f"{folder} was not written by visrep embed (no info.json or <split>.safetensors); "
                        f"--overwrite replaces only embeddings: choose another --out")


def _base_metadata(run_path: Path, options, data: PreparedData, model) -> dict:
    """What every file of this extraction carries: where the embeddings came from and how."""
    return extraction_metadata(run_path, options.weights, data.manifest["hash"], options.pooling,
                               options.l2_normalize, options.precision, model)


def _save_split(out: Path, split: str, extraction: Extraction, data: PreparedData, base: dict, model) -> None:
    ids = data.splits[split].ids
    for layer, features in extraction.features.items():
        metadata = {**base, "layer_module": model.feature_layers[layer],
                    "layer_output_shape": list(extraction.raw_shapes[layer])}
        embeddings = EmbeddingSet(features, extraction.labels, ids, split, layer, data.class_names, metadata)
        save_embedding_set(split_file(out, layer, split), embeddings)


def _save_banks(out: Path, extraction: Extraction, class_names: list[str], base: dict, options, seed: int,
                     logger) -> None:
    """Each layer's condition bank (``<layer>/bank.safetensors``), the one a generator conditioned on these
    weights, data and layer reads: fitted on the unit-length average-pooled embeddings, so only where the
    stored embeddings are those (pooling avg, or a layer that is already a vector)."""
    counts = torch.bincount(extraction.labels, minlength=len(class_names))
    if int(counts.min()) < 2:
        logger.info("no condition bank: a class has fewer than 2 training images (a class Gaussian needs 2)")
        return
    with single_threaded_numerics():  # k-means: scikit-learn's threads would fight torch's (see threads.py)
        for layer, features in extraction.features.items():
            if options.pooling != "avg" and len(extraction.raw_shapes[layer]) != 1:
                continue  # max/flatten/spatial maps are not the generators' conditions
            unit = F.normalize(features.reshape(len(features), -1).float(), dim=1)
            bank = ConditionBank.fit(unit, extraction.labels, len(class_names), options.kmeans_clusters, seed)
            bank.save(layer_folder(out, layer) / BANK_FILE, bank_metadata(layer, options.kmeans_clusters, seed, base))
