"""What each pipeline stage does: a thin call of the same API the stage's own CLI verb uses.

Each function takes the pipeline's working state, the stage's placed config and whether to resume
an interrupted run in the stage's folder, and writes everything into that folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from visrep.data.inspect import format_summary, summarize
from visrep.data.manifest import write_manifest
from visrep.data.prepare import PreparedData, prepare_data
from visrep.embeddings import embed_classifier_run
from visrep.evaluation.classifier_eval import evaluator_test_report, evaluate_classifier, format_metrics
from visrep.evaluation.generative import evaluate_generated
from visrep.evaluation.generative_report import enlarge
from visrep.figures import save_image_grid
from visrep.inference.loading import trained_without_val
from visrep.pipeline.config import STAGES, Pipeline
from visrep.pipeline.showcase import real_class_row
from visrep.pipeline.wiring import generators
from visrep.runs import create_run
from visrep.training.classifier import train_classifier
from visrep.training.diffusion import train_diffusion
from visrep.training.evaluator import train_evaluator
from visrep.training.gan import train_gan

EXAMPLES_PER_CLASS = 8  # real training images per class in data/examples.png
LOADER_KEYS = ("batch_size", "augment")  # data: keys that only the batch loaders read


@dataclass
class PipelineState:
    """What the stages of one invocation share: the pipeline, its configs, and data prepared once."""
    pipeline: Pipeline
    configs: dict
    progress: bool = True
    prepared: dict = field(default_factory=dict)  # what prepare_data reads of a data config → PreparedData

    def data_for(self, data_cfg) -> PreparedData:
        """Prepared once per distinct data: stages that differ only in batch size or augmentation (loader
        arguments, not part of the prepared data) share one copy of the decoded images."""
        key = json.dumps({name: value for name, value in OmegaConf.to_container(data_cfg, resolve=True).items()
                          if name not in LOADER_KEYS}, sort_keys=True)
        if key not in self.prepared:
            self.prepared[key] = prepare_data(data_cfg, progress=self.progress)
        return self.prepared[key]

    def folder(self, stage: str) -> Path:
        return self.pipeline.stage_dir(stage)


def run_data(state: PipelineState, cfg, resume: bool) -> None:
    """The split manifest, class counts per split and a grid of example images (the report's first section)."""
    data = state.data_for(cfg.data)
    run = create_run(cfg, "data")
    write_manifest(data.manifest, run.file("manifest.json"))
    run.write_json("normalization.json", data.normalization.to_dict())
    summary = summarize(data)
    run.write_json("data_summary.json", summary)
    _examples_grid(data, run.file("examples.png"))
    print(format_summary(summary))


def _examples_grid(data: PreparedData, path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [real_class_row(data.splits["train"], index, EXAMPLES_PER_CLASS, rng)
            for index in range(len(data.class_names))]
    save_image_grid(enlarge(torch.cat(rows)), path, nrow=EXAMPLES_PER_CLASS, row_labels=list(data.class_names))


def run_classifier(state: PipelineState, cfg, resume: bool) -> None:
    data = state.data_for(cfg.data)
    folder = state.folder("classifier")
    train_classifier(cfg, resume=folder if resume else None, progress=state.progress, data=data)
    for split in ("test",) if trained_without_val(folder) else ("val", "test"):
        print(format_metrics(evaluate_classifier(folder, split, data=data)))


def run_embeddings(state: PipelineState, cfg, resume: bool) -> None:
    classifier = state.configs.get("classifier")
    data = state.data_for(classifier.data) if classifier is not None else None
    embed_classifier_run(state.folder("classifier"), cfg, progress=state.progress, data=data)


def run_evaluator(state: PipelineState, cfg, resume: bool) -> None:
    folder = state.folder("evaluator")
    has_classifier = "classifier" in state.pipeline.stages
    conditioning = state.folder("classifier") if has_classifier else None
    data = state.data_for(cfg.data)
    # the evaluator's own report (eval-test/), as `visrep train evaluator` writes it: the same prediction that
    # gives the test accuracy evaluator.json records
    train_evaluator(cfg, conditioning, progress=state.progress, resume=folder if resume else None, data=data,
                    test_report=evaluator_test_report)


def run_gan(state: PipelineState, cfg, resume: bool) -> None:
    train_gan(cfg, resume=state.folder("gan") if resume else None, progress=state.progress,
              data=state.data_for(cfg.data))


def run_diffusion(state: PipelineState, cfg, resume: bool) -> None:
    train_diffusion(cfg, resume=state.folder("diffusion") if resume else None, progress=state.progress,
                    data=state.data_for(cfg.data))


def run_generative(state: PipelineState, cfg, resume: bool) -> None:
    """Each generator's final samples scored by the independent evaluator, beside the real-vs-real floor."""
    from visrep.evaluation.generative_report import format_markdown

    state.folder("generative").mkdir(parents=True, exist_ok=True)
    evaluator = state.configs.get("evaluator")  # its data, prepared once for the pipeline, is the real side's
    data = state.data_for(evaluator.data) if evaluator is not None else None
    for name in generators(state.pipeline):
        scoring = cfg.copy()
        scoring.run.name = name
        scoring.generative.fake = str(state.folder(name))
        _, metrics = evaluate_generated(scoring, progress=state.progress, data=data)
        print(f"{name}:\n{format_markdown(metrics)}")


def run_report(state: PipelineState, cfg, resume: bool) -> None:
    from visrep.pipeline.report import write_report

    html = write_report(state, cfg)
    print(f"report: {html}")


RUNNERS = {stage: globals()[f"run_{stage}"] for stage in STAGES}  # each stage of the table has its run_<stage>


def can_resume(folder: Path) -> bool:
    """A training run cut short (no metrics.json, written when training ends) with a checkpoint to continue
    from. Whether it is of the same config is the runner's check (the key it was started with)."""
    return (folder / "config.yaml").is_file() and not (folder / "metrics.json").is_file() \
        and any((folder / "checkpoints").glob("state-*.pt"))

