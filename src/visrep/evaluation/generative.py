"""`visrep evaluate generated`: score any set of images in an independent evaluator's feature space.

Steps: load the evaluator (hashes checked) → the real reference (a held-out split of its data) →
the images to score (folder | .npz | generator run; refused if the generator declares the
evaluator's weights) → N images per side, equal, seeded → features once per image (the real side and
the floor read from the evaluator's scoring cache when an earlier scoring left them:
:mod:`visrep.evaluation.scoring_cache`) → metrics for the model, the same metrics for a real-vs-real
floor, optional in-loop and Inception columns → ``metrics.json``, ``report.md``, ``report.html`` and
image grids in a run directory. Features are scaled by :func:`feature_scale` before FID and KID.

What the floor compares, per metric (the fairest real stand-in for "generated"):
FID/KID/PRDC/per-class KID/CAS — N random training images vs the same real reference;
GAN-test — the evaluator on the held-out reference images (training images would show train accuracy);
memorisation — validation images (held out from training) vs the training set;
embedding consistency — two different real images of the same class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from visrep.config import GenerativeEvalConfig, GenerativeEvalOptions
from visrep.data.prepare import PreparedData
from visrep.errors import UserError
from visrep.evaluation.cas import CasRecipe, classification_accuracy_score
from visrep.evaluation.conditional_metrics import gan_test, per_class_kid
from visrep.evaluation.degenerate import degenerate_warnings
from visrep.evaluation.distribution_metrics import fid, kid, knn_radii, prdc
from visrep.evaluation.embedding_consistency import embedding_consistency, real_pair_cosines
from visrep.evaluation.evaluator import Evaluator, extract_features, load_evaluator
from visrep.evaluation.fake_sources import ImageSet, TargetFormat, load_image_set
from visrep.evaluation.inception import inception_network, inception_scores
from visrep.inference.independence import check_independent
from visrep.evaluation.memorisation import feature_space, memorisation_report, nearest_distances, pixel_neighbours
from visrep.evaluation.real_sources import RealReference, load_real_reference
from visrep.evaluation.scoring_cache import cache_key, cache_path, load_cached, save_cached
from visrep.hardware.distributed import broadcast_from_main, current_info, resolve_device, setup_distributed
from visrep.hardware.precision import resolve_precision
from visrep.hardware.record import compute_record
from visrep.runs import create_run

SMALL_N = 2000  # below this FID's upward bias is large: read KID


@dataclass
class Side:
    """One set of images and what the evaluator sees in it."""
    images: torch.Tensor  # (N, C, S, S) uint8
    labels: np.ndarray | None  # (N,) intended / true class
    features: np.ndarray  # (N, D) float32
    logits: np.ndarray  # (N, K) float32
    condition_ids: list[str] | None = None
    knn_radii: np.ndarray | None = None  # (N,) k-NN radii, computed once when this is the real side of PRDC
    rows: np.ndarray | None = None  # (N,) rows of the split the images came from, for real sides


@dataclass
class Context:
    """Everything shared by the model's and the floor's scoring."""
    opts: object
    evaluator: Evaluator
    reference: RealReference
    real: Side  # N held-out real images
    bank_images: torch.Tensor  # (M, C, S, S) uint8 training images searched for memorisation
    bank_features: torch.Tensor  # (M, D) unit-length evaluator features
    memorisation_reference: dict  # nearest-training distances of the real reference {"features", "pixels"}
    feature_scale: float  # every side's features are multiplied by it (see feature_scale())
    bank_rows: np.ndarray  # (M,) training-split rows of the bank
    real_features_unscaled: np.ndarray  # (N, D) as the evaluator gave them: what the cache keeps
    cached_floor: dict | None = None  # the real-vs-real floor read from the scoring cache
    timing: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.evaluator.class_names)


def evaluate_generated(cfg: GenerativeEvalConfig, progress: bool = True,
                       data: PreparedData | None = None) -> tuple[Path, dict]:
    """Score ``cfg.generative.fake`` against real data; returns (run directory, metrics). ``data``: the
    evaluator's data already prepared (the pipeline's), checked against its manifest, instead of preparing it."""
    threads = cfg.generative.threads
    if not threads:
        return _evaluate(cfg, progress, data)
    # torch and NumPy's BLAS keep separate thread pools; limit both. Spinning BLAS threads on a busy
    # machine made a 179x179 matrix product take 10 ms instead of 0.1 ms.
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            return _evaluate(cfg, progress, data)
    finally:
        torch.set_num_threads(previous)


def _evaluate(cfg: GenerativeEvalConfig, progress: bool, data: PreparedData | None = None) -> tuple[Path, dict]:
    started = time.perf_counter()
    opts = cfg.generative
    _check_options(opts)
    device = resolve_device(opts.device, key="generative.device")
    dist = setup_distributed(device)  # under torchrun: features sharded over the ranks, rank 0 writes
    evaluator = load_evaluator(Path(opts.evaluator).expanduser(), opts.weights, opts.precision, device)
    reference = load_real_reference(evaluator, opts.real, progress, data)
    fake = load_image_set(opts.fake, _target_format(evaluator), progress)
    independence = _check_independence(evaluator, fake, opts.fake)
    n = choose_n(opts, len(reference.data.splits[reference.split]), len(fake), len(reference.data.splits["train"]))
    in_loop = _load_in_loop(opts, fake, evaluator, device) if opts.in_loop else None
    inception = inception_network(opts.inception_weights) if opts.inception_weights else None
    # only now: a refused or mistyped request leaves nothing behind; --overwrite never deletes what is read
    run = create_run(cfg, "generated", dist.is_main, reads=_paths_read(evaluator, reference, fake, in_loop),
                     restartable=True)
    if dist.is_main:
        run.write_json("compute.json", compute_record(device, resolve_precision(opts.precision, device), False))
    loaded = time.perf_counter()
    cache = _cache_location(opts, evaluator, reference, n, device)
    context = _build_context(opts, evaluator, reference, n, cache, progress)
    fake_side = _side(evaluator, fake.subset(_pick(len(fake), n, _rng(opts, "fake"))), opts, progress, "generated",
                      context.feature_scale)
    metrics = _header(opts, evaluator, reference, fake, n, independence)
    # what the user must see even when only reading the console: blank or collapsed images, files left out
    metrics["alerts"] = fake.source.get("left_out", []) + degenerate_warnings(fake_side.images, context.real.images)
    metrics["warnings"] += metrics["alerts"]
    metrics["feature_scale"] = context.feature_scale
    metrics["model"] = score_side(fake_side, context, progress)
    if opts.floor:
        metrics["floor"] = context.cached_floor or score_floor(context, n, progress)
    if cache is not None and context.timing["scoring_cache"] == "miss" and dist.is_main:
        save_cached(cache[1], cache[0], _cached_arrays(context), metrics.get("floor"))
    if in_loop is not None:
        metrics["in_loop"] = score_in_loop(in_loop, fake_side, context)
    if inception is not None:
        metrics["inception"] = {**inception_scores(inception, context.real.images, fake_side.images),
                                "weights": str(opts.inception_weights)}
    metrics["timing"] = {"load_seconds": loaded - started, **context.timing,
                         "total_seconds": time.perf_counter() - started, "processes": dist.world_size}
    if dist.is_main:
        _write_outputs(run, metrics, context, fake_side)
    return run.path, metrics


def _check_options(opts: GenerativeEvalOptions) -> None:
    if not opts.evaluator:
        raise UserError("give the evaluator run: --evaluator RUN (train one with `visrep train evaluator`)")
    if not opts.fake:
        raise UserError("give the images to score: --fake <folder | .npz | generator run>")
    if opts.n is not None and opts.n < opts.prdc_k + 2:
        raise UserError(f"-n must be at least {opts.prdc_k + 2} (PRDC needs more than k={opts.prdc_k} points per set)")
    if not 0 < opts.memorisation_quantile < 1:
        raise UserError("generative.memorisation_quantile must be in (0, 1)")


def _paths_read(evaluator: Evaluator, reference: RealReference, fake: ImageSet, in_loop) -> tuple[Path, ...]:
    """Folders this scoring reads beyond those its options name: the evaluator's data and, with
    --in-loop auto, the conditioning run that generator.json names."""
    paths = [evaluator.run_path, Path(reference.description["source"])]
    if fake.conditioning_run:
        paths.append(Path(fake.conditioning_run))
    if in_loop is not None:
        paths.append(in_loop.run_path)
    return tuple(paths)


def _target_format(evaluator: Evaluator) -> TargetFormat:
    channels, size, _ = evaluator.network.image_shape
    return TargetFormat(size, channels, str(evaluator.cfg.data.resize), tuple(evaluator.class_names))


def _check_independence(evaluator: Evaluator, fake: ImageSet, what: str) -> str:
    """Refuse a generator that used the evaluator's weights; say how far independence was verified."""
    check_independent(evaluator.hashes, fake.declared_hashes, str(what))
    if fake.declared_hashes is None:
        return "not declared by the source: independence not verified"
    return f"verified against {len(fake.declared_hashes)} declared network hash(es)"


def choose_n(opts: GenerativeEvalOptions, n_real: int, n_fake: int, n_train: int) -> int:
    """N equal for both sides: the requested one, or min(max_n, available) when none is requested."""
    available = min(n_real, n_fake, n_train) if opts.floor else min(n_real, n_fake)
    if opts.n is None:
        n = min(opts.max_n, available)
        if n < opts.prdc_k + 2:
            raise UserError(f"only {available} images available per side; need at least {opts.prdc_k + 2}")
        return n
    if opts.n > available:
        raise UserError(f"-n {opts.n} is more than is available: {n_fake} to score, {n_real} real reference"
                        + (f", {n_train} training images for the floor" if opts.floor else ""))
    return int(opts.n)


RNG_STREAMS = {"real": 1, "bank": 2, "fake": 3, "floor": 4, "val": 5}  # one seeded stream per draw


def _rng(opts: GenerativeEvalOptions, purpose: str) -> np.random.Generator:
    """The draw for ``purpose``: independent of which other draws happen (a cached real side skips some)."""
    return np.random.default_rng([int(opts.seed), RNG_STREAMS[purpose]])


def _pick(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(total, n, replace=False)) if n < total else np.arange(total)


def feature_scale(real_features: np.ndarray) -> float:
    """1 / RMS of the real reference's features: after it their mean square is 1.

    The evaluator's penultimate features (global pool, before the linear head) have a magnitude set
    by training, not by meaning. One constant per evaluator and real reference brings them to unit
    mean square, which keeps KID's kernel (x·y/D + 1)³ in its intended range (unscaled 512-d ResNet
    features made it ±0.74 around 0.04) and FID comparable between evaluators. PRDC and the
    cosine-based memorisation and consistency checks do not change.
    """
    rms = float(np.sqrt(np.mean(np.square(real_features, dtype=np.float64))))
    return 1.0 / rms if rms > 0 else 1.0


def _featurised(evaluator: Evaluator, images, labels, opts: GenerativeEvalOptions, progress: bool, desc: str, scale: float = 1.0,
                **ids) -> Side:
    """The evaluator's (scaled) features and logits of uint8 images (N, C, H, W) as a Side; ``ids``:
    the Side's condition_ids or rows."""
    features, logits = extract_features(evaluator.network, images, opts.batch_size, progress, desc)
    return Side(images, labels, features * np.float32(scale), logits, **ids)


def _side(evaluator: Evaluator, image_set: ImageSet, opts: GenerativeEvalOptions, progress: bool, desc: str, scale: float) -> Side:
    return _featurised(evaluator, image_set.images, image_set.labels, opts, progress, desc, scale,
                       condition_ids=image_set.condition_ids)


def _split_side(evaluator: Evaluator, split, rows: np.ndarray, opts: GenerativeEvalOptions, progress: bool, desc: str,
                scale: float = 1.0) -> Side:
    return _featurised(evaluator, split.uint8_batch(rows), split.labels.numpy()[rows], opts, progress, desc, scale,
                       rows=rows)


# ---- shared context --------------------------------------------------------------------------

def _cache_location(opts: GenerativeEvalOptions, evaluator: Evaluator, reference: RealReference, n: int, device) -> tuple | None:
    """(key, path) of this scoring's cached real side, or None with generative.cache off."""
    if not opts.cache:
        return None
    key = cache_key(evaluator, reference, opts, n, resolve_precision(opts.precision, device).precision,
                    torch.device(device).type)
    return key, cache_path(evaluator.run_path, key)


def _build_context(opts: GenerativeEvalOptions, evaluator: Evaluator, reference: RealReference, n: int, cache: tuple | None,
                   progress: bool) -> Context:
    started = time.perf_counter()
    cached = _agreed_cache(load_cached(cache[1], cache[0]) if cache is not None else None)
    context = (_context_from_cache(opts, evaluator, reference, *cached) if cached is not None
               else _compute_context(opts, evaluator, reference, n, progress))
    context.timing["scoring_cache"] = "off" if cache is None else "hit" if cached is not None else "miss"
    context.timing["real_side_seconds"] = time.perf_counter() - started
    return context


def _agreed_cache(cached):
    """Rank 0's hit or miss on every rank (under torchrun a rank that computed the features alone would
    wait in a collective for ever); a rank that cannot read what rank 0 read is one clear error."""
    hit = broadcast_from_main(cached is not None, current_info())
    if hit and cached is None:
        raise UserError("the evaluator's scoring cache is readable by process 0 but not by this one (no shared "
                        "filesystem?): set generative.cache=false")
    return cached if hit else None


def _compute_context(opts: GenerativeEvalOptions, evaluator: Evaluator, reference: RealReference, n: int, progress: bool) -> Context:
    started = time.perf_counter()
    held_out = reference.data.splits[reference.split]
    real = _split_side(evaluator, held_out, _pick(len(held_out), n, _rng(opts, "real")), opts, progress,
                       "real reference")
    unscaled = real.features.copy()
    scale = feature_scale(unscaled)
    real.features *= np.float32(scale)
    train = reference.data.splits["train"]
    limit = opts.memorisation_bank or len(train)
    bank = _split_side(evaluator, train, _pick(len(train), min(limit, len(train)), _rng(opts, "bank")), opts,
                       progress, "training images", scale)
    bank_features = feature_space(bank.features)
    features_done = time.perf_counter()
    memorisation_reference = _nearest_training(real, bank.images, bank_features)
    context = Context(opts, evaluator, reference, real, bank.images, bank_features, memorisation_reference, scale,
                      bank.rows, unscaled)
    context.timing.update({"real_features_seconds": features_done - started,
                           "reference_memorisation_seconds": time.perf_counter() - features_done,
                           "real_images_featurised": len(real.images) + len(bank.images)})
    return context


def _context_from_cache(opts: GenerativeEvalOptions, evaluator: Evaluator, reference: RealReference, arrays: dict, floor: dict | None
                        ) -> Context:
    """The context rebuilt from cached arrays; images come from the (decode-cached) prepared data."""
    held_out, train = reference.data.splits[reference.split], reference.data.splits["train"]
    rows = arrays["real_rows"]
    scale = feature_scale(arrays["real_features"])
    real = Side(held_out.uint8_batch(rows), held_out.labels.numpy()[rows],
                arrays["real_features"] * np.float32(scale), arrays["real_logits"],
                knn_radii=arrays["real_knn_radii"], rows=rows)
    bank_features = torch.as_tensor(arrays["bank_features"])  # stored unit-length, as feature_space left them
    reference_nearest = {"features": arrays["reference_features"], "pixels": arrays["reference_pixels"],
                         "features_index": arrays["reference_features_index"],
                         "pixels_index": arrays["reference_pixels_index"]}
    return Context(opts, evaluator, reference, real, train.uint8_batch(arrays["bank_rows"]), bank_features,
                   reference_nearest, scale, arrays["bank_rows"], arrays["real_features"], cached_floor=floor)


def _cached_arrays(context: Context) -> dict[str, np.ndarray]:
    """What _context_from_cache needs, with the real features unscaled (the scale is recomputed from them)."""
    real, nearest = context.real, context.memorisation_reference
    return {"real_rows": real.rows, "real_features": context.real_features_unscaled,
            "real_logits": real.logits, "real_knn_radii": real.knn_radii, "bank_rows": context.bank_rows,
            "bank_features": context.bank_features.numpy(), "reference_features": nearest["features"],
            "reference_pixels": nearest["pixels"], "reference_features_index": nearest["features_index"],
            "reference_pixels_index": nearest["pixels_index"]}


def _nearest_training(side: Side, bank_images: torch.Tensor, bank_features: torch.Tensor) -> dict:
    """{"features": distances, "pixels": distances, "features_index", "pixels_index"} to the nearest training image."""
    feature_distances, feature_index = nearest_distances(feature_space(side.features), bank_features)
    pixel_distances, pixel_index = pixel_neighbours(side.images, bank_images)
    return {"features": feature_distances, "pixels": pixel_distances, "features_index": feature_index,
            "pixels_index": pixel_index}


# ---- scoring ---------------------------------------------------------------------------------

def score_side(side: Side, context: Context, progress: bool = False) -> dict:
    """Every metric for one set of images against the real reference."""
    opts, timing = context.opts, context.timing
    started = time.perf_counter()
    result = distribution_scores(context.real, side, opts)
    if side.labels is not None:
        result.update(conditional_scores(context, side, progress))
    timing["model_metrics_seconds"] = time.perf_counter() - started
    memorisation_started = time.perf_counter()
    nearest = _nearest_training(side, context.bank_images, context.bank_features)
    result["memorisation"] = memorisation_report(nearest, context.memorisation_reference,
                                                 opts.memorisation_quantile, opts.memorisation_flag_fraction)
    result["memorisation"]["nearest"] = nearest  # kept for the grid; dropped before writing JSON
    timing["model_memorisation_seconds"] = time.perf_counter() - memorisation_started
    if side.condition_ids is not None:
        result["embedding_consistency"] = _embedding_consistency(side, context, progress)
    return result


def distribution_scores(real: Side, fake: Side, opts: GenerativeEvalOptions) -> dict:
    if real.knn_radii is None:
        real.knn_radii = knn_radii(real.features, opts.prdc_k)
    return {"fid": fid(real.features, fake.features),
            "kid": kid(real.features, fake.features),
            "prdc": prdc(real.features, fake.features, opts.prdc_k, real_radii=real.knn_radii),
            "n": int(len(fake.features))}


def conditional_scores(context: Context, side: Side, progress: bool = False) -> dict:
    opts = context.opts
    result = {"gan_test": gan_test(side.logits, side.labels, context.class_names),
              "class_kid": per_class_kid(context.real.features, context.real.labels, side.features, side.labels,
                                         context.class_names)}
    if opts.cas:
        started = time.perf_counter()
        result["cas"] = _cas(context, side, progress)
        context.timing["cas_seconds"] = context.timing.get("cas_seconds", 0.0) + time.perf_counter() - started
    return result


def _cas(context: Context, side: Side, progress: bool = False) -> dict:
    """Train on ``side`` (N images), test on the whole held-out reference split."""
    held_out = context.reference.data.splits[context.reference.split]
    opts = context.opts
    recipe = CasRecipe(epochs=opts.cas_epochs, min_steps=opts.cas_min_steps, widths=tuple(opts.cas_widths),
                       seed=opts.seed)
    return classification_accuracy_score(side.images, side.labels, held_out.uint8_batch(np.arange(len(held_out))),
                                         held_out.labels.numpy(), len(context.class_names), recipe, progress)


def _embedding_consistency(side: Side, context: Context, progress: bool) -> dict:
    images = _images_by_id(context.reference, side.condition_ids)
    condition_features, _ = extract_features(context.evaluator.network, images, context.opts.batch_size, progress,
                                             "conditioning images")
    return embedding_consistency(side.features, condition_features, context.real.features, context.real.labels,
                                 context.opts.seed)


def _images_by_id(reference: RealReference, ids: list[str]) -> torch.Tensor:
    """uint8 images of the real dataset (any split) with these manifest ids."""
    where = {image_id: (name, row) for name, split in reference.data.splits.items()
             for row, image_id in enumerate(split.ids)}
    missing = [image_id for image_id in ids if image_id not in where]
    if missing:
        raise UserError(f"conditioning image id '{missing[0]}' is not in the real data "
                        f"({len(missing)} unknown); ids must match the data manifest")
    return torch.stack([reference.data.splits[name].uint8_batch(np.array([row]))[0]
                        for name, row in (where[image_id] for image_id in ids)])


def score_floor(context: Context, n: int, progress: bool) -> dict:
    """The same metrics for real images standing in for generated ones (see the module docstring)."""
    started = time.perf_counter()
    opts, data = context.opts, context.reference.data
    train = data.splits["train"]
    stand_in = _split_side(context.evaluator, train, _pick(len(train), n, _rng(opts, "floor")), opts, progress,
                           "floor images", context.feature_scale)
    floor = distribution_scores(context.real, stand_in, opts)
    floor.update(conditional_scores(context, stand_in, progress))
    floor["gan_test"] = gan_test(context.real.logits, context.real.labels, context.class_names)
    floor["memorisation"] = _floor_memorisation(context, n, progress)
    floor["embedding_consistency"] = _same_class_cosine(context)
    context.timing["floor_seconds"] = time.perf_counter() - started
    return floor


def _floor_memorisation(context: Context, n: int, progress: bool) -> dict | None:
    val = context.reference.data.splits["val"]
    if len(val) <= 1:
        return None
    side = _split_side(context.evaluator, val, _pick(len(val), min(n, len(val)), _rng(context.opts, "val")),
                       context.opts, progress, "validation images", context.feature_scale)
    nearest = _nearest_training(side, context.bank_images, context.bank_features)
    return memorisation_report(nearest, context.memorisation_reference, context.opts.memorisation_quantile,
                               context.opts.memorisation_flag_fraction)


def _same_class_cosine(context: Context) -> dict:
    cosines = real_pair_cosines(context.real.features, context.real.labels, True, context.opts.seed)
    return {"real_same_class_pairs": {"mean": float(cosines.mean()) if len(cosines) else None, "n": int(len(cosines))}}


def _load_in_loop(opts: GenerativeEvalOptions, fake: ImageSet, evaluator: Evaluator, device: torch.device) -> Evaluator:
    """The conditioning CNN, loaded like an evaluator (its hash is not checked: its numbers are labelled)."""
    run = fake.conditioning_run if opts.in_loop == "auto" else opts.in_loop
    if not run:
        raise UserError("--in-loop without a run needs a generator run whose generator.json names conditioning_run")
    network = load_evaluator(Path(run).expanduser(), None, opts.precision, device)  # best, or last without val
    if network.network.image_shape != evaluator.network.image_shape:
        raise UserError(f"in-loop network {run} takes {network.network.image_shape} images, not "
                        f"{evaluator.network.image_shape}")
    return network


def score_in_loop(network: Evaluator, fake_side: Side, context: Context) -> dict:
    """FID/KID/PRDC/GAN-test in the conditioning CNN's own space: optimistic by construction."""
    opts = context.opts
    real_in = _side(network, ImageSet(context.real.images, context.real.labels, None, {}), opts, False, "in-loop", 1.0)
    scale = feature_scale(real_in.features)  # the in-loop network's own scale, by the same rule
    real_in.features *= np.float32(scale)
    fake_in = _side(network, ImageSet(fake_side.images, fake_side.labels, None, {}), opts, False, "in-loop", scale)
    result = {"label": "in-loop, optimistic", "network": str(network.run_path),
              **distribution_scores(real_in, fake_in, opts)}
    if fake_in.labels is not None and list(network.class_names) == context.class_names:
        result["gan_test"] = gan_test(fake_in.logits, fake_in.labels, context.class_names)
    return result


# ---- outputs ---------------------------------------------------------------------------------

def _header(opts: GenerativeEvalOptions, evaluator: Evaluator, reference: RealReference, fake: ImageSet, n: int, independence: str) -> dict:
    warnings = []
    if not evaluator.registered:
        warnings.append("the evaluator is a plain classifier run, not one trained with `visrep train evaluator`")
    if fake.declared_hashes is None:
        warnings.append("the images do not declare which networks conditioned them: independence not verified")
    if n < SMALL_N:
        warnings.append(f"N = {n} is small: FID is biased upwards at small N, compare KID")
    if fake.source.get("converted_from"):
        channels, height, width = fake.source["converted_from"]
        shape = evaluator.network.image_shape
        warnings.append(f"the images ({channels}x{height}x{width}) were converted to the evaluator's "
                        f"{shape[0]}x{shape[1]}x{shape[2]} (channels and size) before scoring")
    return {"stage": "generative_evaluation", "n": n, "evaluator": evaluator.describe(),
            "real": reference.description, "fake": {**fake.source, "n_available": len(fake),
                                                     "has_labels": fake.labels is not None,
                                                     "has_condition_ids": fake.condition_ids is not None},
            "independence": independence, "warnings": warnings, "seed": int(opts.seed)}


def _write_outputs(run, metrics: dict, context: Context, fake_side: Side) -> None:
    from visrep.evaluation.generative_report import format_html, format_markdown, save_grids

    nearest = metrics["model"]["memorisation"].pop("nearest")
    metrics["grids"] = save_grids(run.path, context, fake_side, nearest)
    run.write_text("report.md", format_markdown(metrics))
    run.write_text("report.html", format_html(metrics))
    run.write_json("metrics.json", metrics)  # last: its presence says the scoring finished (a kill before → restart)
    run.logger.info("scored %d generated images against %d real ones in %.1f s → %s", metrics["n"], metrics["n"],
                    metrics["timing"]["total_seconds"], run.path)
