"""Embeddings on disk: one ``.safetensors`` file per (layer, split), self-describing.

Layout under an embeddings folder (default ``<classifier run>/embeddings``)::

    embed.json                      classifier run, weights, manifest hash, settings, throughput
    <layer>/train.safetensors       "embeddings" (N, D) or (N, C, H, W) float32, "labels" (N,) int64
    <layer>/val.safetensors, test.safetensors
    <layer>/bank.safetensors        the condition bank (visrep.representations.bank) of the unit-length
                                    average-pooled train embeddings: what the generators sample from
    <layer>/info.json               settings and extraction timing for this layer
    <layer>/analysis.json, map.png, retrieval.png    (written by the analysis)
    analysis.md, analysis.json      the table over every analysed layer

safetensors metadata holds strings only; lists (sample ids, class names) are stored as JSON text.
Every embeddings file carries: format, layer, split, pooling, l2_normalized, sample_ids, class_names,
classifier_run (path), classifier_run_id (its folder name), weights, weights_sha256, manifest_hash.
Files contain no time stamps: the same inputs give the same tensors and metadata (not always the
same bytes — safetensors writes metadata keys in hash-map order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save
from torch import Tensor

from visrep.errors import UserError
from visrep.storage import atomic_write
from visrep.storage import read_safetensors as read_tensor_file

FORMAT = "visrep-embeddings/1"
SPLIT_NAMES = ("train", "val", "test")
# metadata values stored as JSON text (everything else is a plain string)
JSON_KEYS = ("sample_ids", "class_names", "model", "shape", "l2_normalized", "feature_layers", "layer_output_shape")


@dataclass
class EmbeddingSet:
    """The embeddings of one split at one layer, with what they came from."""

    features: Tensor  # (N, D) or (N, C, H, W) float32, in split order
    labels: Tensor  # (N,) int64 class indices
    ids: list[str]  # (N,) sample ids from the data manifest
    split: str
    layer: str
    class_names: list[str]
    metadata: dict = field(default_factory=dict)  # pooling, l2_normalized, classifier_run, manifest_hash, ...

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def manifest_hash(self) -> str:
        return self.metadata["manifest_hash"]

    @property
    def dim(self) -> int:
        """D of the flattened vectors."""
        return int(self.features[0].numel()) if len(self) else 0

    def flat(self) -> Tensor:
        """(N, D) float32 view: spatial maps flattened C-major."""
        return self.features.reshape(len(self), -1)


def layer_folder(root: Path, layer: str) -> Path:
    return Path(root) / layer


def split_file(root: Path, layer: str, split: str) -> Path:
    return layer_folder(root, layer) / f"{split}.safetensors"


def save_embedding_set(path: Path, embeddings: EmbeddingSet) -> Path:
    metadata = {**embeddings.metadata, "format": FORMAT, "layer": embeddings.layer, "split": embeddings.split,
                "sample_ids": embeddings.ids, "class_names": embeddings.class_names,
                "shape": list(embeddings.features.shape)}
    tensors = {"embeddings": embeddings.features.contiguous(), "labels": embeddings.labels.to(torch.int64)}
    return write_safetensors(path, tensors, metadata)


def load_embedding_set(path: Path) -> EmbeddingSet:
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT or "embeddings" not in tensors:
        raise UserError(f"{path} is not a visrep embeddings file (format {metadata.get('format')!r})")
    ids, names = metadata.pop("sample_ids"), metadata.pop("class_names")
    return EmbeddingSet(tensors["embeddings"], tensors["labels"], ids, metadata["split"], metadata["layer"], names,
                        metadata)


def write_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict) -> Path:
    """Atomic write (temp file + fsync + rename); metadata values that are not strings become JSON."""
    text = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    payload = save({name: tensor.contiguous() for name, tensor in tensors.items()}, metadata=text)
    return atomic_write(Path(path), lambda temp: Path(temp).write_bytes(payload))


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict]:
    """(tensors, metadata with JSON values decoded); UserError when missing or unreadable."""
    tensors, raw = read_tensor_file(Path(path), "embeddings")
    try:
        return tensors, {key: _decode(key, value) for key, value in raw.items()}
    except ValueError as err:
        raise UserError(f"cannot read embeddings {path}: its metadata is damaged ({str(err)[:120]})") from None


def _decode(key: str, value: str):
    if key in JSON_KEYS:
        return json.loads(value)
    return value


def write_json(path: Path, data) -> Path:
    from visrep.runs import atomic_write_text

    return atomic_write_text(Path(path), json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    if not Path(path).is_file():
        raise UserError(f"file not found: {path}")
    return json.loads(Path(path).read_text())


def embeddings_root(source: Path) -> Path:
    """The embeddings folder for ``source``: that folder itself, or ``<classifier run>/embeddings``."""
    source = Path(source).expanduser()
    for candidate in (source, source / "embeddings"):
        if (candidate / "embed.json").is_file():
            return candidate
    if not source.exists():
        raise UserError(f"not found: {source}")
    raise UserError(f"no embeddings in {source}: run `visrep embed {source}` first, or pass an embeddings folder")


def stored_layers(root: Path) -> list[str]:
    """Layers with train/val/test files under ``root``, in the model's feature order when known."""
    order = read_json(root / "embed.json").get("feature_layers", []) if (root / "embed.json").is_file() else []
    present = sorted(path.name for path in Path(root).iterdir()
                     if path.is_dir() and any(path.glob("*.safetensors")))
    ranked = [layer for layer in order if layer in present]
    return ranked + [layer for layer in present if layer not in ranked]
