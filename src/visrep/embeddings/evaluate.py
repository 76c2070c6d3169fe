"""Analyse stored embeddings, layer by layer, and write the comparison table.

Per layer (files in ``<embeddings>/<layer>/``): ``analysis.json`` with kNN and linear-probe accuracy
on val and test, silhouette and dimensionality on a train subsample; ``map.png`` (PCA, t-SNE and
UMAP when installed, on a test subsample); ``retrieval.png`` (test queries, nearest train images).
The deepest analysed layer (the penultimate by default) is also searched for near-duplicate images
between and inside the splits (``near_duplicates.json`` / ``.png``; rule in
:mod:`visrep.embeddings.near_duplicates`): on flowers17 the deep layers found every known copy with no
false alarm, while the stem, which sees colour more than content, flagged different photos.
Then ``analysis.md`` / ``analysis.json`` in the embeddings folder compare every analysed layer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from visrep.embeddings.analysis import dimensionality, knn_accuracy, linear_probe, silhouette, subsample
from visrep.embeddings.near_duplicate_outputs import write_near_duplicates
from visrep.embeddings.near_duplicates import DuplicateRule
from visrep.representations.neighbours import nearest_neighbours
from visrep.embeddings.plots import map_coordinates, plot_maps, save_retrieval_grid
from visrep.embeddings.report import write_report
from visrep.representations.store import (SPLIT_NAMES, EmbeddingSet, embeddings_root, layer_folder, load_embedding_set,
                                     read_json, split_file, stored_layers, write_json)
from visrep.embeddings.threads import single_threaded_numerics
from visrep.errors import UserError


def analyse_embeddings(source: Path, options, layers: list[str] | None = None, data=None,
                       logger: logging.Logger | None = None) -> dict:
    """Analyse ``layers`` (default: every stored layer) of the embeddings at ``source`` (an embeddings
    folder or a classifier run); ``options`` is an AnalysisOptions. Returns the table as a dict."""
    root = embeddings_root(source)
    logger = logger or _default_logger()
    available = stored_layers(root)
    layers = list(layers) if layers else available
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise UserError(f"no stored embeddings for layer(s) {', '.join(missing)} in {root}; "
                        f"stored: {', '.join(available) or 'none'}")
    check_analysis_options(options)
    data = data if data is not None else _data_of(root, logger)
    deepest = max(layers, key=available.index)  # the model's order: input → output
    for layer in layers:
        with single_threaded_numerics():
            result = analyse_layer(root, layer, options, data, duplicates=options.near_duplicates and layer == deepest)
        write_json(layer_folder(root, layer) / "analysis.json", result)
        logger.info("analysed %s: %s", layer, _one_line(result))
    table = write_report(root)
    logger.info("analysis table: %s", root / "analysis.md")
    return table


def analyse_layer(root: Path, layer: str, options, data=None, duplicates: bool = False) -> dict:
    """Every measure for one layer → a JSON-ready dict (accuracies in [0, 1], ``seconds`` per part);
    ``duplicates``: search it for near-duplicate images too."""
    sets = _load_layer(root, layer)
    train = sets["train"]
    held_out = {split: sets[split] for split in ("val", "test") if split in sets}
    shown = next((held_out[split] for split in ("test", "val") if split in held_out), train)
    result = {"layer": layer, "shape": list(train.features.shape[1:]), "dim": train.dim,
              "layer_output_shape": train.metadata.get("layer_output_shape"),
              "weights_sha256": train.metadata.get("weights_sha256"), "manifest_hash": train.manifest_hash,
              "pooling": train.metadata.get("pooling"), "l2_normalized": train.metadata.get("l2_normalized"),
              "n": {split: len(embeddings) for split, embeddings in sets.items()}, "knn_k": options.knn_k,
              "probe_c": options.probe_c, "seconds": {}}
    parts = {"knn": lambda: {"knn": {split: knn_accuracy(train.flat(), train.labels, e.flat(), e.labels,
                                                         options.knn_k) for split, e in held_out.items()}},
             "probe": lambda: _probe(train, held_out, options),
             "geometry": lambda: _geometry(train, options),
             "map": lambda: {"map": _write_map(root, layer, shown, options)}}
    if data is not None:
        parts["retrieval"] = lambda: {"retrieval": _write_retrieval(root, layer, shown, train, data, options)}
    if duplicates:
        parts["near_duplicates"] = lambda: {"near_duplicates": _near_duplicates(root, layer, train, held_out, data,
                                                                                options)}
    for name, measure in parts.items():
        started = time.perf_counter()
        result.update(measure())
        result["seconds"][name] = round(time.perf_counter() - started, 3)
    return result


def _load_layer(root: Path, layer: str) -> dict[str, EmbeddingSet]:
    sets = {split: load_embedding_set(split_file(root, layer, split)) for split in SPLIT_NAMES
            if split_file(root, layer, split).is_file()}
    if "train" not in sets:
        raise UserError(f"layer {layer} in {root} has no train embeddings: the analysis needs them "
                        "(bank for kNN, fit for the probe); extract with --splits train,val,test")
    return sets


def _probe(train: EmbeddingSet, held_out: dict[str, EmbeddingSet], options) -> dict:
    probe = linear_probe(train.flat(), train.labels, {split: (e.flat(), e.labels) for split, e in held_out.items()},
                         options.probe_c, options.probe_max_iter, options.seed)
    converged = probe.pop("converged")
    probe.pop("fit_seconds")
    return {"probe": probe, "probe_converged": converged}


def _geometry(train: EmbeddingSet, options) -> dict:
    """Silhouette and dimensionality on a seeded train subsample (both cost O(n²) or more)."""
    rows = subsample(len(train), options.sample_points, options.seed)
    sample = train.flat()[torch.from_numpy(rows)]
    return {"silhouette": silhouette(sample, train.labels[rows].numpy()), **dimensionality(sample),
            "sample_points": len(rows)}


def check_analysis_options(options) -> None:
    for key in ("knn_k", "probe_max_iter", "sample_points", "map_points", "retrieval_k"):
        if getattr(options, key) < 1:
            raise UserError(f"analysis.{key} must be ≥ 1 (got {getattr(options, key)})")
    if options.probe_c <= 0:
        raise UserError(f"analysis.probe_c must be > 0 (got {options.probe_c})")
    if not -1 <= options.duplicate_min_similarity <= 1:
        raise UserError(f"analysis.duplicate_min_similarity is a cosine similarity, in [-1, 1] "
                        f"(got {options.duplicate_min_similarity})")
    if options.duplicate_z <= 0:
        raise UserError(f"analysis.duplicate_z must be > 0 (robust standard deviations; got {options.duplicate_z})")


def _write_map(root: Path, layer: str, shown: EmbeddingSet, options) -> dict:
    rows = subsample(len(shown), options.map_points, options.seed)
    points = shown.flat()[torch.from_numpy(rows)].numpy()
    labels = shown.labels[rows].numpy()
    maps = map_coordinates(points, options.seed)
    path = plot_maps(maps, labels, shown.class_names, f"{layer} — {shown.split} split", layer_folder(root, layer) / "map.png")
    return {"file": path.name, "split": shown.split, "points": len(rows), "methods": list(maps)}


def _write_retrieval(root: Path, layer: str, queries: EmbeddingSet, bank: EmbeddingSet, data, options) -> dict:
    """Rows: a query image from ``queries``' split, then its nearest ``bank`` (train) images."""
    _check_same_images(queries, data)
    _check_same_images(bank, data)
    chosen = _query_positions(queries.labels.numpy(), len(queries.class_names), options.retrieval_queries)
    k = min(options.retrieval_k, len(bank))
    neighbours, _ = nearest_neighbours(queries.flat()[torch.from_numpy(chosen)], bank, k)
    hits = (bank.labels[neighbours] == queries.labels[chosen].unsqueeze(1)).sum(1)
    query_images = data.splits[queries.split].uint8_batch(chosen)
    neighbour_images = data.splits[bank.split].uint8_batch(neighbours.flatten().numpy())
    neighbour_images = neighbour_images.view(len(chosen), k, *neighbour_images.shape[1:])
    labels = [f"{queries.class_names[int(queries.labels[q])]}: {int(h)}/{k}" for q, h in zip(chosen, hits)]
    correct = bank.labels[neighbours] == queries.labels[chosen].unsqueeze(1)  # (Q, k)
    path = save_retrieval_grid(query_images, neighbour_images, labels, layer_folder(root, layer) / "retrieval.png",
                               correct)
    return {"file": path.name, "query_split": queries.split, "queries": len(chosen), "k": k,
            "precision_at_k": float(hits.sum()) / (len(chosen) * k)}


def _near_duplicates(root: Path, layer: str, train: EmbeddingSet, held_out: dict[str, EmbeddingSet], data,
                     options) -> dict:
    if data is not None:  # thumbnails only from the very images these embeddings were taken from
        for embeddings in (train, *held_out.values()):
            _check_same_images(embeddings, data)
    rule = DuplicateRule(options.duplicate_min_similarity, options.duplicate_z)
    return write_near_duplicates(layer_folder(root, layer), train, held_out, rule, data)


def _query_positions(labels: np.ndarray, num_classes: int, count: int) -> np.ndarray:
    """Classes in turn (0, 1, 2, …), the first unused example of each: a fixed, readable selection."""
    per_class = [list(np.flatnonzero(labels == k)) for k in range(num_classes)]
    chosen, round_ = [], 0
    while len(chosen) < min(count, len(labels)):
        for positions in per_class:
            if round_ < len(positions) and len(chosen) < count:
                chosen.append(positions[round_])
        round_ += 1
    return np.asarray(chosen, dtype=np.int64)


def _check_same_images(embeddings: EmbeddingSet, data) -> None:
    if data.manifest["hash"] != embeddings.manifest_hash or data.splits[embeddings.split].ids != embeddings.ids:
        raise UserError(f"the data given for the retrieval grid is not the data these {embeddings.layer} "
                        f"embeddings were taken from (manifest {embeddings.manifest_hash[:12]})")


def _data_of(root: Path, logger: logging.Logger):
    """The classifier run's data (for retrieval images), or None when that run is gone."""
    from visrep.config import ClassifierConfig
    from visrep.data.prepare import prepare_data
    from visrep.runs import check_manifest, load_run_config

    summary = read_json(root / "embed.json")
    run_path = Path(summary["classifier_run"])
    if not (run_path / "config.yaml").is_file():
        logger.info("classifier run %s not found: no retrieval grid", run_path)
        return None
    data = prepare_data(load_run_config(run_path, ClassifierConfig).data)
    check_manifest(run_path, summary["manifest_hash"])
    if data.manifest["hash"] != summary["manifest_hash"]:
        raise UserError(f"data mismatch: the embeddings in {root} were taken from manifest "
                        f"{summary['manifest_hash'][:12]}, but {run_path}'s data now has {data.manifest['hash'][:12]}")
    return data


def _one_line(result: dict) -> str:
    parts = [f"D={result['dim']}"]
    parts += [f"kNN {split} {value:.4f}" for split, value in result["knn"].items()]
    parts += [f"probe {split} {value:.4f}" for split, value in result["probe"].items()]
    parts.append(f"silhouette {result['silhouette']:.3f}, PCA95 {result['pca_dims_95']}")
    return ", ".join(parts)


def _default_logger() -> logging.Logger:
    logger = logging.getLogger("visrep.embeddings")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
