"""The training split's embedding conditions at one layer, as a generator conditions on them.

A generator conditioned on a classifier's embeddings needs the training images' unit-length,
average-pooled embeddings at its layer (and the condition bank fitted on them). The embeddings
stage has usually stored exactly these (``<classifier run>/embeddings/<layer>/train.safetensors``
and ``bank.safetensors``): they are read when they were taken from the same weights file (sha256),
the same data (manifest hash, same sample order) and average-pooled or already a vector. Otherwise
they are computed with the stage's own extraction code (:mod:`visrep.representations.extract`, same
batch size), so that stored and fresh embeddings are the same numbers, and returned as an
:class:`EmbeddingSet` the caller stores in its run the way the stage does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from visrep.data.prepare import PreparedData
from visrep.inference.independence import file_sha256
from visrep.representations.embed import EXTRACTION_BATCH
from visrep.representations.bank import BANK_FILE, ConditionBank, read_bank
from visrep.representations.extract import extract_features
from visrep.representations.store import EmbeddingSet, layer_folder, load_embedding_set, split_file

BANK_SEED = 0  # k-means seed of a generator's bank (the stage's analysis.seed default)


@dataclass
class TrainEmbeddings:
    embeddings: Tensor  # (N, D) float32 unit length, in the training split's order
    source: str  # where they came from: the stored file, or "computed"
    computed: EmbeddingSet | None  # the fresh extraction, to be stored beside the generator (None: read)
    stored_meta: dict = field(default_factory=dict)  # the stored file's metadata (read: what a bank must match)


def extraction_metadata(run_path: Path, weights: str, manifest_hash: str, pooling: str, l2_normalize: bool,
                        precision: str, model) -> dict:
    """What every embeddings file carries: the classifier run and weights (by sha256), the data, the settings."""
    run_path = Path(run_path).resolve()
    return {"classifier_run": str(run_path), "classifier_run_id": run_path.name, "weights": weights,
            "weights_sha256": file_sha256(run_path / f"{weights}.safetensors"), "manifest_hash": manifest_hash,
            "pooling": pooling, "l2_normalized": bool(l2_normalize), "precision": precision,
            "model": dict(getattr(model, "config", {}))}


def embeddings_folder(classifier_run: Path, given: str | None = None) -> Path:
    """Where the embeddings stage's files are looked for: ``given``, else ``<classifier run>/embeddings``."""
    return Path(given).expanduser() if given else Path(classifier_run) / "embeddings"


def train_embeddings(classifier_run: Path, weights: str, encoder, data: PreparedData, layer: str, root: Path,
                     progress: bool = False) -> TrainEmbeddings:
    """The unit-length training embeddings at ``layer``: the stored ones under ``root`` when they match, else
    computed."""
    stored = stored_train_set(classifier_run, weights, data, layer, root, encoder.precision)
    if stored is not None:
        return TrainEmbeddings(_unit(stored.flat()), str(split_file(root, layer, "train")), None, stored.metadata)
    fresh = extract_train_set(classifier_run, weights, encoder, data, layer, progress)
    return TrainEmbeddings(_unit(fresh.flat()), "computed", fresh)


def stored_train_set(classifier_run: Path, weights: str, data: PreparedData, layer: str, root: Path,
                     precision: str) -> EmbeddingSet | None:
    """The embeddings stage's training embeddings at ``layer`` if they belong to these weights and this data,
    computed at this ``precision`` setting (bf16 and fp32 embeddings differ in the eighth bit)."""
    path = split_file(root, layer, "train")
    if not path.is_file():
        return None
    stored = load_embedding_set(path)
    meta = stored.metadata
    vector_layer = len(meta.get("layer_output_shape", [])) == 1  # pooling leaves a vector as it is
    same = (meta.get("weights_sha256") == file_sha256(Path(classifier_run) / f"{weights}.safetensors")
            and meta.get("manifest_hash") == data.manifest["hash"] and stored.ids == list(data.splits["train"].ids)
            and (meta.get("pooling") == "avg" or vector_layer) and meta.get("precision") == precision)
    return stored if same else None


def extract_train_set(classifier_run: Path, weights: str, encoder, data: PreparedData, layer: str,
                      progress: bool = False) -> EmbeddingSet:
    """The stage's extraction of the training split at ``layer`` (average-pooled, not normalised)."""
    model = encoder.classifier
    loader = data.loader("train", EXTRACTION_BATCH, channels_last=encoder.channels_last)
    extraction = extract_features(model, loader, [layer], "avg", False, encoder.precision,
                                  device=encoder.scale.device, progress=progress, description=f"embed train {layer}")
    metadata = {**extraction_metadata(classifier_run, weights, data.manifest["hash"], "avg", False,
                                      encoder.precision, model),
                "layer_module": model.feature_layers[layer], "layer_output_shape": list(extraction.raw_shapes[layer])}
    return EmbeddingSet(extraction.features[layer], extraction.labels, list(data.splits["train"].ids), "train", layer,
                        list(data.class_names), metadata)


def _unit(features: Tensor) -> Tensor:
    return F.normalize(features.float(), dim=1)


def bank_metadata(layer: str, clusters: int, seed: int, embeddings_meta: dict) -> dict[str, str]:
    """What a bank was fitted on (text values): the layer, k-means settings, weights and data."""
    return {"layer": layer, "clusters": str(clusters), "seed": str(seed),
            "weights_sha256": str(embeddings_meta.get("weights_sha256", "")),
            "manifest_hash": str(embeddings_meta.get("manifest_hash", ""))}


def condition_bank(conditions: TrainEmbeddings, labels: Tensor, num_classes: int, clusters: int, root: Path,
                   layer: str) -> ConditionBank:
    """The stored bank beside stored embeddings when it was fitted with these k-means settings, else fitted."""
    if conditions.computed is None:
        path = layer_folder(root, layer) / BANK_FILE
        if path.is_file():
            tensors, meta = read_bank(path)
            wanted = {"layer": layer, "clusters": str(clusters), "seed": str(BANK_SEED),
                      "weights_sha256": conditions.stored_meta.get("weights_sha256"),
                      "manifest_hash": conditions.stored_meta.get("manifest_hash")}
            if all(meta.get(key) == value for key, value in wanted.items()):
                return ConditionBank.from_tensors(tensors, path)
    return ConditionBank.fit(conditions.embeddings, labels, num_classes, clusters, BANK_SEED)

