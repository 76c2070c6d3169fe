"""The pipeline's config: one YAML with a shared ``data:`` and one section per stage.

Layout (configs/pipeline_digits.yaml is the worked example)::

    run:   {name: digits, root: runs}          # runs/digits/<stage>/ for every stage
    data:  {source: digits, image_size: 16}    # what the data is: every stage reads the same images
    stages: [data, classifier, ...]            # optional: which stages this pipeline has (default: all)
    classifier: {config: digits.yaml, train: {epochs: 15}}
    gan: {config: gan_digits.yaml}
    ...

A stage's config is built as: its schema's defaults ← the recipe its ``config:`` names (relative to
this file) ← the shared ``data:`` ← the section's own keys ← command-line overrides
(``gan.train.steps=100``). The pipeline then sets what ties the stages together: each stage's run
directory, the classifier run the generators and the evaluator refer to, and what is scored.
Stage seeds are stage settings (``evaluator.run.seed``): the evaluator must differ from the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from visrep.config import (ClassifierConfig, Config, DiffusionConfig, EmbedConfig, GanConfig, GenerativeEvalConfig,
                           check_dotlist, check_values, describe_error, read_yaml_mapping)
from visrep.errors import UserError
from visrep.runs import check_run_name

@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage: everything the pipeline knows of it besides its runner (``run_<stage>`` in
    :mod:`visrep.pipeline.stages`) and how it is tied to the others (:func:`visrep.pipeline.wiring.place`)."""
    schema: type | None  # its config (None: the report's own options)
    needs: tuple[str, ...] = ()  # stages whose outputs it reads, when the pipeline has them (their keys in its key)
    requires: tuple[str, ...] = ()  # stages it cannot run without in the same pipeline ("a|b": either)
    resumable: bool = False  # a training loop with checkpoints: a stage cut short continues
    generator: bool = False  # makes images the generative stage scores
    placed: tuple[str, ...] = ()  # keys of its own section the pipeline sets (left out of its key)


# The one table of stages, in the order they run: adding a stage is a row here and a run_<stage> function.
STAGE_TABLE = {
    "data": StageSpec(Config),
    "classifier": StageSpec(ClassifierConfig, needs=("data",), resumable=True),
    "embeddings": StageSpec(EmbedConfig, needs=("classifier",), requires=("classifier",),
                            placed=("embed.out", "embed.overwrite", "embed.device")),
    "evaluator": StageSpec(ClassifierConfig, needs=("data", "classifier"), resumable=True),
    "gan": StageSpec(GanConfig, needs=("classifier", "embeddings"), requires=("classifier",), resumable=True,
                     generator=True, placed=("gan.conditioning_run", "gan.embeddings")),
    "diffusion": StageSpec(DiffusionConfig, needs=("classifier", "embeddings"), requires=("classifier",),
                           resumable=True, generator=True,
                           placed=("diffusion.conditioning_run", "diffusion.embeddings")),
    "generative": StageSpec(GenerativeEvalConfig, needs=("evaluator",), requires=("evaluator", "gan|diffusion"),
                            placed=("generative.evaluator", "generative.fake", "generative.in_loop",
                                    "generative.threads", "generative.device")),
    "report": StageSpec(None, needs=("data",)),
}
STAGES = tuple(STAGE_TABLE)
NEEDS = {name: spec.needs for name, spec in STAGE_TABLE.items()}
REQUIRES = {name: spec.requires for name, spec in STAGE_TABLE.items() if spec.requires}
SCHEMAS = {name: spec.schema for name, spec in STAGE_TABLE.items() if spec.schema is not None}
RESUMABLE = tuple(name for name, spec in STAGE_TABLE.items() if spec.resumable)
GENERATORS = tuple(name for name, spec in STAGE_TABLE.items() if spec.generator)
TOP_LEVEL = ("run", "stages", *STAGES)  # "data" is both the shared data: and a stage


@dataclass
class ReportOptions:
    """What the report stage draws from the generators (sampling is seconds on digits, minutes on CIFAR-10)."""
    per_class: int = 8  # generated images per class in the class grids
    variations: int = 4  # given test images whose variations are shown (embedding-conditional generators)
    variations_per_image: int = 7
    interpolations: int = 2  # pairs of test images interpolated between
    interpolation_steps: int = 8
    guidance_scales: list = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])  # diffusion's CFG sweep
    seed: int = 0


@dataclass
class Pipeline:
    """A loaded pipeline config: where it runs, which stages it has, and each stage's raw section."""
    root: Path  # <run.root>/<run.name>: one sub-directory per stage
    stages: list[str]
    data: Any  # the shared data: section (OmegaConf)
    sections: dict[str, Any]  # stage → its section (OmegaConf dict), without the "config:" key
    recipes: dict[str, Path | None]  # stage → the recipe file its "config:" names
    source: Path | None  # the pipeline YAML

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage


def load_pipeline(path: str | Path | None, overrides: list[str] | None = None) -> Pipeline:
    """The pipeline YAML with ``section.key=value`` overrides; one UserError for any mistake in it."""
    if path is None:
        raise UserError("visrep pipeline needs --config (e.g. configs/pipeline_digits.yaml)")
    path = Path(path)
    raw = _merge_overrides(OmegaConf.create(read_yaml_mapping(path)), overrides or [])
    try:
        return _parse(raw, path)
    except (OmegaConfBaseException, ValueError) as err:  # e.g. a bad ${...} interpolation in a section
        raise UserError(f"{path}: {str(err).splitlines()[0]}") from None


def _parse(raw, path: Path) -> Pipeline:
    unknown = [key for key in raw if key not in TOP_LEVEL]
    if unknown:
        raise UserError(f"unknown pipeline section '{unknown[0]}' in {path} (sections: {', '.join(TOP_LEVEL)})")
    stages = _stage_list(raw.get("stages"))
    for name in ("run", "data"):
        if raw.get(name) is not None and not OmegaConf.is_dict(raw.get(name)):
            raise UserError(f"{name}: in {path} must be a mapping of settings (got {raw.get(name)!r})")
    run = OmegaConf.merge({"name": path.stem, "root": "runs"}, raw.get("run") or {})
    extra = set(run) - {"name", "root"}
    if extra:
        raise UserError(f"run.{sorted(extra)[0]}: a pipeline's run: section has name and root only; "
                        f"seeds are stage settings (e.g. evaluator.run.seed=1)")
    name = str(run.name)
    check_run_name(name)
    sections, recipes = {}, {}
    for stage in STAGES:  # the data stage's section is the shared data: itself
        given = raw.get(stage) if stage != "data" else None
        if given is not None and not OmegaConf.is_dict(given):
            raise UserError(f"{stage}: in {path} must be a mapping of settings (got {given!r})")
        section = OmegaConf.create(OmegaConf.to_container(given, resolve=True) if given is not None else {})
        recipe = section.pop("config", None)
        recipes[stage] = _recipe_path(recipe, path.parent, stage) if recipe else None
        sections[stage] = section
    return Pipeline(Path(str(run.root)).expanduser() / name, stages, raw.get("data") or OmegaConf.create({}),
                    sections, recipes, path)


def stage_config(pipeline: Pipeline, stage: str):
    """The stage's validated config (its schema), before the pipeline ties it to the other stages."""
    if stage == "report":
        return _report_config(pipeline)
    schema = SCHEMAS[stage]
    layers = [OmegaConf.structured(schema)]
    if pipeline.recipes[stage] is not None:
        layers.append(_recipe(pipeline.recipes[stage], schema))
    if "data" in layers[0]:
        layers.append({"data": pipeline.data})
    layers.append(pipeline.sections[stage])
    try:
        cfg = OmegaConf.merge(*layers)
    except OmegaConfBaseException as err:
        raise UserError(f"{stage}: {describe_error(err)}") from None
    try:
        check_values(cfg)
    except UserError as err:
        raise UserError(f"{stage}: {err}") from None
    return cfg


def _report_config(pipeline: Pipeline):
    try:
        options = OmegaConf.merge(OmegaConf.structured(ReportOptions), pipeline.sections["report"])
        scales = [float(scale) for scale in options.guidance_scales]
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        message = describe_error(err) if isinstance(err, OmegaConfBaseException) else str(err)
        raise UserError(f"report: {message}") from None
    for key, least in (("per_class", 1), ("variations", 0), ("variations_per_image", 1), ("interpolations", 0),
                       ("interpolation_steps", 2)):
        if options[key] < least:
            raise UserError(f"report.{key} must be ≥ {least} (got {options[key]})")
    if any(scale < 0 for scale in scales):
        raise UserError(f"report.guidance_scales must be ≥ 0 (got {scales})")
    return options


def _recipe(path: Path, schema: type):
    """A stage recipe (e.g. configs/gan_digits.yaml) as a plain config, checked against the stage's schema."""
    loaded = OmegaConf.create(read_yaml_mapping(path))
    try:
        OmegaConf.merge(OmegaConf.structured(schema), loaded)
    except OmegaConfBaseException as err:
        raise UserError(f"{path}: {describe_error(err)}") from None
    return loaded


def _recipe_path(name: str, base: Path, stage: str) -> Path:
    candidate = Path(str(name)).expanduser()
    found = candidate if candidate.is_absolute() else base / candidate
    if not found.is_file():
        raise UserError(f"{stage}.config: recipe not found: {found}")
    return found


def _stage_list(listed) -> list[str]:
    if listed is None:
        return list(STAGES)
    if not OmegaConf.is_list(listed):
        raise UserError(f"stages: must be a list, e.g. [data, classifier, report] (got {listed!r})")
    names = [str(name) for name in listed]
    for name in names:
        if name not in STAGES:
            raise UserError(f"unknown stage '{name}' in stages: (stages: {', '.join(STAGES)})")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"stages: names '{twice[0]}' twice; list each stage once")
    for stage in names:
        for needed in REQUIRES.get(stage, ()):
            if not any(name in names for name in needed.split("|")):
                raise UserError(f"stages: '{stage}' needs the {' or '.join(needed.split('|'))} stage in the list")
    return [stage for stage in STAGES if stage in names]  # always run in dependency order


def select(pipeline: Pipeline, only: str | None, start: str | None) -> list[str]:
    """The stages to run now: all of the pipeline's, or ``--only a,b``, or ``--from stage`` onwards."""
    if only and start:
        raise UserError("give --only or --from, not both")
    if only:
        names = [name.strip() for name in only.split(",") if name.strip()]
        for name in names:
            if name not in STAGES:
                raise UserError(f"--only: unknown stage '{name}' (stages: {', '.join(STAGES)})")
            if name not in pipeline.stages:
                raise UserError(f"--only: this pipeline has no '{name}' stage (it has: {', '.join(pipeline.stages)})")
        if len(set(names)) < len(names):
            raise UserError("--only names a stage twice")
        return [stage for stage in pipeline.stages if stage in names]
    if start:
        if start not in pipeline.stages:
            raise UserError(f"--from: unknown stage '{start}' (this pipeline has: {', '.join(pipeline.stages)})")
        return pipeline.stages[pipeline.stages.index(start):]
    return list(pipeline.stages)


def _merge_overrides(raw, overrides: list[str]):
    check_dotlist(overrides, "stage.section.key=value (e.g. gan.train.steps=100)")
    try:
        return OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides))) if overrides else raw
    except OmegaConfBaseException as err:
        raise UserError(describe_error(err)) from None
