"""A pipeline's cost: each stage's estimate, from the recipe that stage runs, summed.

The classifier and evaluator are estimated as their own configs are (FLOP-scaled reference
throughput), the GAN and the diffusion model by timing their steps here with the pipeline's
classifier as the conditioning one. The light stages get what they do in proportion: decoding the
photos once (by their bytes), one forward of every image for the embeddings, a fixed allowance for
the analysis, scoring and report figures.
"""

from __future__ import annotations

from pathlib import Path

from visrep.doctor.classifier_cost import Throughput, estimate_classifier, forward_flops, reference_flops, \
    train_images
from visrep.doctor.generator_cost import estimate_generator

DECODE_BYTES_PER_S = 50e6  # compressed JPEG bytes decoded per second with draft reduction (bench_decode: 12 MP)
LIGHT_STAGE_SECONDS = {"embeddings": 5.0, "generative": 10.0, "report": 10.0}  # plots, kNN, scoring, HTML
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)


def estimate_pipeline(path: Path, reference: Throughput, overrides: list[str] | None = None) -> dict:
    """{"stages": {stage: seconds}, "seconds", "notes"} of a pipeline config (with ``section.key=value``
    overrides, as `visrep pipeline` takes them); UserError if it cannot be read."""
    from visrep.pipeline.config import load_pipeline, stage_config

    pipeline = load_pipeline(path, overrides)
    configs = {stage: stage_config(pipeline, stage) for stage in pipeline.stages if stage != "report"}
    stages, notes = {}, []
    for stage in pipeline.stages:
        seconds, note = _stage_seconds(stage, configs, reference)
        stages[stage] = seconds
        if note:
            notes.append(f"{stage}: {note}")
    return {"stages": stages, "seconds": sum(stages.values()), "notes": notes}


def _stage_seconds(stage: str, configs: dict, reference: Throughput) -> tuple[float, str]:
    if stage == "data":
        return _decode_seconds(configs["data"].data), ""
    if stage in ("classifier", "evaluator"):
        estimate = estimate_classifier(configs[stage], reference)
        return estimate["seconds"], "" if estimate["images"] else estimate["note"]
    if stage in ("gan", "diffusion"):
        estimate = estimate_generator(stage, configs[stage], configs.get("classifier"))
        return estimate["seconds"], estimate["note"]
    if stage == "embeddings" and "classifier" in configs:
        return LIGHT_STAGE_SECONDS[stage] + _embedding_seconds(configs["classifier"], reference), ""
    return LIGHT_STAGE_SECONDS.get(stage, 0.0), ""


def _decode_seconds(data_cfg) -> float:
    """Reading every image file once (later runs use the decoded cache)."""
    folder = Path(str(data_cfg.source)).expanduser()
    if not folder.is_dir():
        return 0.0
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / DECODE_BYTES_PER_S


def _embedding_seconds(classifier_cfg, reference: Throughput) -> float:
    """One forward of every image (train, val and test) through the classifier."""
    from omegaconf import OmegaConf

    data = classifier_cfg.data
    images = _all_images(data)
    if not images or data.image_size is None:
        return 0.0
    options = OmegaConf.to_container(classifier_cfg.model.options, resolve=True)
    flops = forward_flops(classifier_cfg.model.name, data.channels or 3, data.image_size, **options)
    return images * (flops / reference_flops()) * FORWARD_SHARE / reference.images_per_s


def _all_images(data_cfg) -> float:
    """Every image of the data, all splits: the files of a folder here, else the training split scaled back up."""
    folder = Path(str(data_cfg.source)).expanduser()
    if folder.is_dir():
        return float(sum(1 for path in folder.rglob("*") if path.is_file()))
    images, _ = train_images(data_cfg)
    return images / max(1e-9, (1 - data_cfg.val_fraction) * (1 - data_cfg.test_fraction))
