"""The trained classifier run a generator is conditioned and guided by, and the conditions it gives.

Shared by the GAN and the diffusion loops. The run must be a finished *classifier* run (never the
evaluator, which must stay independent of the generators), trained on the same data manifest and
image shape as the generator. In ``embedding`` mode the training split's embeddings and the
condition bank sampled embeddings come from (RCG) are the embeddings stage's when it stored them
for the same weights and data, else computed by the same code
(:mod:`visrep.representations.train_embeddings`); the GAN also takes their kNN neighbourhoods (IC-GAN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from visrep.config import DiffusionOptions, GanOptions
from visrep.data.prepare import PreparedData
from visrep.errors import UserError
from visrep.representations.bank import ConditionBank
from visrep.representations.conditions import neighbourhoods
from visrep.representations.layer_choice import LayerChoice, choose_layer
from visrep.representations.learned_sampler import SAMPLER_FILE, LearnedSampler, SamplerRecipe, recipe_from
from visrep.representations.store import EmbeddingSet, save_embedding_set, split_file, write_json
from visrep.representations.train_embeddings import condition_bank, embeddings_folder, train_embeddings
from visrep.generate.generator_run import CONDITION_BANK, ENCODER_NORMALIZATION, ENCODER_WEIGHTS
from visrep.inference.encoder import FrozenEncoder
from visrep.inference.independence import EVALUATOR_RECORD, weights_hashes
from visrep.inference.loading import check_finished, saved_weights
from visrep.runs import Run
from visrep.storage import read_json, save_weights



@dataclass
class Conditioning:
    """The trained classifier whose representations the generator uses (frozen)."""
    run: Path
    encoder: FrozenEncoder
    weights_file: Path
    hashes: dict  # {"tensors", "file"}: see visrep.inference.independence


@dataclass
class TrainingConditions:
    """Conditions of the training split: labels always; embeddings, neighbourhoods and bank in embedding mode."""
    labels: Tensor  # (N,) int64
    embeddings: Tensor | None = None  # (N, D) unit length
    neighbours: Tensor | None = None  # (N, k) int64 train rows, each row's own first (GAN only)
    bank: ConditionBank | None = None
    source: str | None = None  # where the embeddings came from: the embeddings stage's file, or "computed"
    computed: EmbeddingSet | None = None  # embeddings this run extracted itself, stored in its run directory
    layer_choice: LayerChoice | None = None  # the embeddings' layer and the rule that chose it
    learned: LearnedSampler | None = None  # embedding_sampler=learned: RCG's model of the embeddings


def load_conditioning(run_name: str | None, weights: str | None, layers, device: torch.device,
                      section: str) -> Conditioning:
    """The finished classifier run ``<section>.conditioning_run``, frozen, with every layer in ``layers``;
    one error line otherwise."""
    if not run_name:
        raise UserError(f"{section}.conditioning_run must name a trained classifier run (visrep train classifier)")
    run = Path(run_name).expanduser()
    if not run.is_dir():
        raise UserError(f"conditioning run not found: {run}")
    if (run / EVALUATOR_RECORD).is_file():
        raise UserError(f"{run} is an evaluator run: the generators must be conditioned on the classifier, "
                        "so that the evaluator stays independent of them")
    check_finished(run)
    stage = read_json(run / "metrics.json").get("stage") if (run / "metrics.json").is_file() else None
    if stage != "classifier":
        raise UserError(f"{run} is not a trained classifier run (its stage is '{stage}')")
    weights = weights or saved_weights(run)
    encoder = FrozenEncoder.from_run(run, weights, device=device)
    for layer in sorted(set(layers)):
        if layer not in encoder.feature_layers:
            raise UserError(f"the conditioning classifier has no layer '{layer}'; its layers are: "
                            f"{', '.join(encoder.feature_layers)}")
    weights_file = run / f"{weights}.safetensors"
    return Conditioning(run, encoder, weights_file, weights_hashes(weights_file))


def condition_layer(options: GanOptions | DiffusionOptions, key: str, requested: str | None = None,
                    maps_only: bool = False) -> LayerChoice:
    """A classifier layer a generator section reads (``requested``, default its embedding layer ``options.layer``)
    by its rule (:mod:`visrep.representations.layer_choice`); a missing run is left to :func:`load_conditioning`'s
    line."""
    requested = options.layer if requested is None else requested
    run = Path(options.conditioning_run).expanduser() if options.conditioning_run else None
    if run is None or not run.is_dir():
        return LayerChoice(requested, "")
    return choose_layer(requested, run, options.weights or saved_weights(run), key,
                        embeddings_folder(run, options.embeddings), maps_only)


def learned_recipe(options: GanOptions | DiffusionOptions) -> SamplerRecipe | None:
    """The learned sampler's recipe when the section samples embeddings with it (embedding mode only)."""
    if options.conditioning != "embedding" or options.embedding_sampler != "learned":
        return None
    return recipe_from(options.learned_sampler)


def check_same_data(conditioning: Conditioning, data: PreparedData) -> None:
    """The generator must train on the images, splits and image shape its classifier was trained on."""
    theirs = read_json(conditioning.run / "manifest.json").get("hash")
    advice = "set the data section (source, image_size, channels, split fractions and seed) as in its config.yaml"
    if theirs != data.manifest["hash"]:
        raise UserError(f"the conditioning run {conditioning.run} was trained on other data (manifest "
                        f"{str(theirs)[:12]}…, this config's data {data.manifest['hash'][:12]}…): {advice}")
    if tuple(data.image_shape) != tuple(conditioning.encoder.image_shape):
        shape = "x".join(map(str, conditioning.encoder.image_shape))
        raise UserError(f"the conditioning run {conditioning.run} was trained on other data ({shape} images, this "
                        f"config's are {'x'.join(map(str, data.image_shape))}): {advice}")


def training_conditions(mode: str, layer: str, conditioning: Conditioning, data: PreparedData, kmeans_clusters: int,
                        knn_k: int | None = None, section: str = "gan", embeddings: str | None = None,
                        learned: SamplerRecipe | None = None, progress: bool = False) -> TrainingConditions:
    """Labels; in embedding mode also the embeddings, the bank and (``knn_k`` given) the neighbourhoods;
    ``embeddings``: the embeddings stage's folder (None: the conditioning run's); ``learned``: fit RCG's
    learned sampler of the embeddings with this recipe."""
    split = data.splits["train"]
    conditions = TrainingConditions(labels=split.labels.clone())
    if mode != "embedding":
        return conditions
    if knn_k is not None:
        smallest = int(torch.bincount(split.labels, minlength=len(data.class_names)).min())
        if knn_k > smallest:
            raise UserError(f"{section}.knn_k={knn_k} is larger than the smallest class ({smallest} training "
                            f"images): neighbourhoods would always mix classes; use {section}.knn_k ≤ {smallest}")
    root = embeddings_folder(conditioning.run, embeddings)
    found = train_embeddings(conditioning.run, conditioning.weights_file.stem, conditioning.encoder, data, layer, root,
                             progress)
    conditions.embeddings, conditions.source, conditions.computed = found.embeddings, found.source, found.computed
    if knn_k is not None:
        conditions.neighbours = neighbourhoods(conditions.embeddings, knn_k)
    conditions.bank = condition_bank(found, split.labels, len(data.class_names), kmeans_clusters, root, layer)
    if learned is not None:
        conditions.learned = LearnedSampler.fit(conditions.embeddings, learned)
    return conditions


def save_sampling_files(run: Run, conditioning: Conditioning, conditions: TrainingConditions) -> None:
    """What makes a generator run self-contained for ``visrep sample``: a copy of the classifier's
    weights and normalisation (to embed ``--like`` images) and the condition bank (sampled embeddings);
    embeddings it had to extract itself are kept as the embeddings stage keeps them (``embeddings/``)."""
    classifier = conditioning.encoder.classifier
    save_weights(classifier, run.file(ENCODER_WEIGHTS), classifier.config)
    # the normalisation, and the memory layout the classifier trained in (its embeddings depend on it)
    run.write_json(ENCODER_NORMALIZATION, {**read_json(conditioning.run / "normalization.json"),
                                           "channels_last": bool(conditioning.encoder.channels_last)})
    if conditions.bank is not None:
        conditions.bank.save(run.file(CONDITION_BANK))
    if conditions.learned is not None:
        conditions.learned.save(run.file(SAMPLER_FILE))
    if conditions.computed is not None:
        computed, root = conditions.computed, run.file("embeddings")
        save_embedding_set(split_file(root, computed.layer, "train"), computed)
        write_json(root / "embed.json", {**computed.metadata, "layers": [computed.layer], "splits": ["train"],
                                         "feature_layers": list(classifier.feature_layers)})


def declared_hashes(conditioning: Conditioning, uses: list[str], mode: str) -> list[str]:
    """The classifier's weight hashes a generator.json must declare: whenever any of it shaped the
    generator, and in class mode too (its data split and class order define the labels)."""
    return [conditioning.hashes["tensors"], conditioning.hashes["file"]] if uses or mode == "class" else []


def fixed_grid_inputs(mode: str, conditions: TrainingConditions, noise_dim: int, seed: int,
                      columns: int) -> tuple[Tensor, Tensor | None]:
    """(noise (R·columns, noise_dim), condition) of a run's progress grids: one row per class (class mode,
    at most 10), per random training image (embedding) or of free samples (none). Drawn from their own
    seeded generator, not the global RNG, whose stream the training draws must not depend on."""
    rng = torch.Generator().manual_seed(seed)
    rows = min(10, int(conditions.labels.max()) + 1) if mode == "class" else columns
    noise = torch.randn(rows * columns, noise_dim, generator=rng)
    if mode == "class":
        return noise, torch.arange(rows).repeat_interleave(columns)
    if mode == "embedding":
        picks = torch.randperm(len(conditions.labels), generator=rng)[:rows]
        return noise, conditions.embeddings[picks].repeat_interleave(columns, dim=0)
    return noise, None
