"""Tie the stages together: each stage's folder, and the runs it reads, set in its config.

Every stage writes into ``<pipeline>/<stage>/``. The generators and the evaluator refer to the
pipeline's classifier; the generative stage scores each generator the pipeline has with its
evaluator, in ``<pipeline>/generative/<generator>/``.
"""

from __future__ import annotations

from visrep.errors import UserError
from visrep.inference.independence import check_architecture_differs
from visrep.pipeline.config import GENERATORS, NEEDS, Pipeline, stage_config


def resolved_configs(pipeline: Pipeline) -> dict:
    """stage → its config with the pipeline's paths set, for every stage of the pipeline (all validated now,
    so that a mistake in a late stage is reported before the first one runs)."""
    configs = {stage: place(pipeline, stage, stage_config(pipeline, stage)) for stage in pipeline.stages}
    embed_section = pipeline.sections["embeddings"].get("embed") or {}
    if "embeddings" in configs and "classifier" in configs and "weights" not in embed_section:
        configs["embeddings"].embed.weights = configs["classifier"].eval.weights  # the weights its report shows
    if "evaluator" in configs and "classifier" in configs:  # refused now, not after the classifier has trained
        try:
            check_architecture_differs(configs["evaluator"], configs["classifier"])
        except UserError as err:
            raise UserError(f"evaluator: {err}") from None
    return configs


def place(pipeline: Pipeline, stage: str, cfg):
    if stage == "report":
        return cfg
    if stage == "embeddings":
        cfg.embed.out = str(pipeline.stage_dir("embeddings"))
        cfg.embed.overwrite = True  # the pipeline's own folder; a finished one is set aside first
        return cfg
    cfg.run.root = str(pipeline.root if stage != "generative" else pipeline.stage_dir("generative"))
    cfg.run.name = stage
    cfg.run.overwrite = False
    if stage in GENERATORS:
        cfg[stage].conditioning_run = str(pipeline.stage_dir("classifier"))
        if "embeddings" in pipeline.stages:  # its stored embeddings and bank are the generator's when they match
            cfg[stage].embeddings = str(pipeline.stage_dir("embeddings"))
    if stage == "generative":
        cfg.generative.evaluator = str(pipeline.stage_dir("evaluator"))
        # the conditioning classifier's numbers, labelled optimistic: this pipeline's classifier where it has one
        # (a moved pipeline folder then still finds it), else the run each generator.json names
        cfg.generative.in_loop = str(pipeline.stage_dir("classifier")) if "classifier" in pipeline.stages else "auto"
    return cfg


def upstream(pipeline: Pipeline, stage: str) -> list[str]:
    """The stages of this pipeline whose outputs ``stage`` reads."""
    if stage == "generative":
        wanted = (*NEEDS[stage], *GENERATORS)
    elif stage == "report":
        wanted = tuple(name for name in pipeline.stages if name != "report")
    else:
        wanted = NEEDS[stage]
    return [name for name in pipeline.stages if name in wanted]


def generators(pipeline: Pipeline) -> list[str]:
    return [stage for stage in GENERATORS if stage in pipeline.stages]
