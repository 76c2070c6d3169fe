"""The Python API for a classifier run's representations, stored or new.

    from visrep.embeddings import load_embeddings, load_bank, embed_images, nearest_neighbours

    train = load_embeddings("runs/clf", layer="penultimate", split="train")    # EmbeddingSet
    bank = load_bank("runs/clf", "penultimate")                                 # class Gaussians, k-means centres
    e = embed_images("runs/clf", uint8_images, layer="penultimate")             # (N, D) float32
    idx, sim = nearest_neighbours(e, train, k=5)                                # (N, 5) each

``source`` is a classifier run (its ``embeddings/`` folder is used) or an embeddings folder.
Pass ``manifest_hash`` to make sure stored embeddings belong to the data you are training on. The
generators read the same files through :mod:`visrep.representations.train_embeddings`.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from visrep.errors import UserError
from visrep.inference.encoder import FrozenEncoder
from visrep.representations.bank import BANK_FILE, ConditionBank
from visrep.representations.embed import EXTRACTION_BATCH, embed
from visrep.representations.neighbours import nearest_neighbours
from visrep.representations.store import (SPLIT_NAMES, EmbeddingSet, embeddings_root, layer_folder,
                                          load_embedding_set, read_json, split_file, stored_layers)

__all__ = ["EmbeddingSet", "embed_images", "load_bank", "load_embeddings", "nearest_neighbours"]


def load_embeddings(source: str | Path, layer: str = "penultimate", split: str = "train",
                    manifest_hash: str | None = None) -> EmbeddingSet:
    """Stored embeddings of ``split`` at ``layer``. Raises UserError naming what is stored when
    the layer or split is missing, and when ``manifest_hash`` (your data's) differs from theirs."""
    root = _layer_root(source, layer)
    path = split_file(root, layer, split)
    if not path.is_file():
        stored = [name for name in SPLIT_NAMES if split_file(root, layer, name).is_file()]
        raise UserError(f"no {split} embeddings for layer {layer} in {root}; stored splits: {', '.join(stored) or 'none'}")
    embeddings = load_embedding_set(path)
    _check_manifest(embeddings.manifest_hash, manifest_hash, root)
    _check_classifier_unchanged(root, embeddings)
    return embeddings


def load_bank(source: str | Path, layer: str = "penultimate") -> ConditionBank:
    """The condition bank fitted on the train embeddings at ``layer`` (class Gaussians and k-means centres of
    the unit-length average-pooled embeddings; written where the stored embeddings are those)."""
    path = layer_folder(_layer_root(source, layer), layer) / BANK_FILE
    if not path.is_file():
        raise UserError(f"no condition bank for layer {layer} in {path.parent}: it is written for average-pooled "
                        "embeddings with at least 2 training images per class (embeddings from before the bank "
                        "existed: run `visrep embed RUN --overwrite`)")
    return ConditionBank.load(path)


def _layer_root(source: str | Path, layer: str) -> Path:
    root = embeddings_root(Path(source))
    if layer not in stored_layers(root):
        raise UserError(f"no embeddings for layer '{layer}' in {root}; stored layers: "
                        f"{', '.join(stored_layers(root)) or 'none'} (extract more with `visrep embed --layers`)")
    return root


def _check_manifest(stored: str, expected: str | None, root: Path) -> None:
    if expected is not None and stored != expected:
        raise UserError(f"data mismatch: the embeddings in {root} were taken from data with manifest {stored[:12]}, "
                        f"but your data has manifest {expected[:12]}")


def _check_classifier_unchanged(root: Path, embeddings: EmbeddingSet) -> None:
    """Embeddings inside a classifier run must match that run's data (the run may have been retrained)."""
    run_manifest = root.parent / "manifest.json"
    if root.name == "embeddings" and run_manifest.is_file():
        recorded = read_json(run_manifest)["hash"]
        if recorded != embeddings.manifest_hash:
            raise UserError(f"data mismatch: {root.parent} now has manifest {recorded[:12]}, but its stored "
                            f"embeddings were taken with manifest {embeddings.manifest_hash[:12]}; re-run "
                            f"`visrep embed {root.parent} --overwrite`")


def embed_images(classifier: str | Path | FrozenEncoder, images, layer: str | list[str] = "penultimate",
                 pooling: str = "avg", l2_normalize: bool = False, batch_size: int = EXTRACTION_BATCH,
                 convert: bool = False, weights: str = "best") -> Tensor | dict[str, Tensor]:
    """Embed new images with a trained classifier (a run directory or its :class:`FrozenEncoder`) at ``layer``.

    Wrong channels or size raise UserError unless ``convert=True`` (see visrep.representations.inputs). With
    the pooling and batch size of a stored extraction (512 by default, as ``visrep embed``) the same images give
    exactly the stored values; other batch sizes can differ in the last bf16 bits.
    """
    encoder = classifier if isinstance(classifier, FrozenEncoder) else FrozenEncoder.from_run(Path(classifier), weights)
    return embed(encoder, images, layer, pooling, l2_normalize, batch_size, convert)
