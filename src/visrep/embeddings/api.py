"""The Python API the later stages (GAN, diffusion, evaluation) use.

    from visrep.embeddings import load_embeddings, embed_images, nearest_neighbours

    train = load_embeddings("runs/clf", layer="penultimate", split="train")    # EmbeddingSet
    stats = load_class_stats("runs/clf", "penultimate")                         # per-class μ, Σ
    centres = load_kmeans("runs/clf", "penultimate")                            # k-means centres
    e = embed_images("runs/clf", uint8_images, layer="penultimate")             # (N, D) float32
    idx, sim = nearest_neighbours(e, train, k=5)                                # (N, 5) each

``source`` is a classifier run (its ``embeddings/`` folder is used) or an embeddings folder.
Pass ``manifest_hash`` to make sure stored embeddings belong to the data you are training on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from visrep.data.transforms import Normalization
from visrep.embeddings.extract import forward_batch, resolve_layers
from visrep.embeddings.inputs import as_nchw, to_model_input
from visrep.representations.neighbours import nearest_neighbours  # noqa: F401  (part of this API)
from visrep.representations.pooling import check_pooling
from visrep.embeddings.stats import ClassStats, KMeansCentres, read_class_stats, read_kmeans
from visrep.representations.store import (SPLIT_NAMES, EmbeddingSet, embeddings_root, layer_folder, load_embedding_set, read_json,
                                     split_file, stored_layers)
from visrep.errors import UserError
from visrep.hardware.precision import check_precision
from visrep.inference.batches import batched


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


def load_class_stats(source: str | Path, layer: str = "penultimate") -> ClassStats:
    """Per-class mean/variance/(covariance) of the train embeddings at ``layer``."""
    return read_class_stats(layer_folder(_layer_root(source, layer), layer) / "class_stats.safetensors")


def load_kmeans(source: str | Path, layer: str = "penultimate") -> KMeansCentres:
    """k-means centres of the train embeddings at ``layer``."""
    return read_kmeans(layer_folder(_layer_root(source, layer), layer) / "kmeans.safetensors")


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


class Embedder:
    """A trained classifier ready to embed new images at any of its layers.

    ``Embedder.from_run("runs/clf")`` loads weights, the run's normalisation and image shape.
    """

    def __init__(self, model: torch.nn.Module, normalization: Normalization, image_shape: tuple[int, int, int],
                 precision: str = "auto", device: torch.device | None = None, channels_last: bool = True):
        check_precision(precision)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.eval().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.normalization, self.image_shape, self.precision = normalization, tuple(image_shape), precision

    @classmethod
    def from_run(cls, run_path: str | Path, weights: str = "best", precision: str = "auto",
                 device: torch.device | None = None) -> "Embedder":
        from visrep.inference.loading import load_classifier

        run_path = Path(run_path)
        model, cfg = load_classifier(run_path, weights)
        normalization = Normalization.from_dict(read_json(run_path / "normalization.json"))
        config = model.config
        image_shape = (config["in_channels"], config["image_size"], config["image_size"])
        return cls(model, normalization, image_shape, precision, device, bool(cfg.train.channels_last))

    @property
    def layers(self) -> list[str]:
        return list(self.model.feature_layers)

    @torch.no_grad()
    def embed(self, images, layers: str | list[str] = "penultimate", pooling: str = "avg",
              l2_normalize: bool = False, batch_size: int = 512, convert: bool = False) -> Tensor | dict[str, Tensor]:
        """Embeddings of ``images`` (see visrep.embeddings.inputs for accepted forms).

        Returns a float32 tensor (N, D) (or (N, C, H, W) for pooling="spatial") for one layer name,
        or {layer: tensor} for a list. With the pooling and batch size of a stored extraction (512 by
        default, as ``visrep embed``) the same images give exactly the stored values; other batch sizes
        can differ in the last bf16 bits.
        """
        check_pooling(pooling)
        names = resolve_layers(self.model, [layers] if isinstance(layers, str) else layers)
        images = as_nchw(images)
        collected: dict[str, list[Tensor]] = {name: [] for name in names}
        for raw in batched(images, batch_size):  # converted batch by batch: memory stays small
            batch = to_model_input(raw, self.image_shape, self.normalization, convert)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            pooled = forward_batch(self.model, batch, self.device, self.precision, names, pooling, l2_normalize)[1]
            for name in names:
                collected[name].append(pooled[name].cpu())
        result = {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in collected.items()}
        return result[names[0]] if isinstance(layers, str) and layers not in ("all", "stages") else result


def embed_images(classifier: str | Path | Embedder, images, layer: str | list[str] = "penultimate",
                 pooling: str = "avg", l2_normalize: bool = False, batch_size: int = 512, convert: bool = False,
                 weights: str = "best") -> Tensor | dict[str, Tensor]:
    """Embed new images with a trained classifier (a run directory or an :class:`Embedder`) at ``layer``.

    Wrong channels or size raise UserError unless ``convert=True`` (see visrep.embeddings.inputs).
    """
    embedder = classifier if isinstance(classifier, Embedder) else Embedder.from_run(Path(classifier), weights)
    return embedder.embed(images, layer, pooling, l2_normalize, batch_size, convert)
