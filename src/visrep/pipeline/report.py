"""The pipeline's report: ``<pipeline>/report/report.html`` (one self-contained file) and ``report.md``.

Read from what the stages left in their folders (nothing is recomputed, except the generators'
pictures, drawn with fixed seeds). Every figure is copied into ``report/figures/`` so the report
folder can be moved or shared on its own. Each section says what its numbers mean and which way is
good, for a reader who has never seen the project.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from visrep.pipeline.report_render import Image, Section, to_html, to_markdown
from visrep.pipeline.report_sections import (classifier_section, dataset_section, embeddings_section,
                                             evaluator_section, generated_section, metrics_section, summary_section,
                                             timing_section)
from visrep.pipeline.showcase import generator_pictures
from visrep.pipeline.wiring import generators
from visrep.runs import atomic_write_text

INTRO = [
    "What this pipeline did: it trained a CNN classifier on the images below, measured which of its layers "
    "carries the most transferable information (its embeddings), and used those representations to condition "
    "and guide the image generators. A second, independent network (the evaluator: another architecture and "
    "seed, trained on real images only) then judged the generated images, so that no generator is graded by the "
    "network that shaped it.",
    "How to read it: every generative number stands beside its real-vs-real floor, the value the same metric "
    "gives for fresh real images. A generator is as good as real data on a metric when it matches the floor. "
    "Numbers labelled 'in-loop, optimistic' come from the classifier that guided the generator and are shown "
    "only to expose how much a generator games its own judge.",
]


def write_report(state, options) -> Path:
    """Write report.html and report.md into the report stage's folder; returns the HTML file."""
    folder = state.folder("report")
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    sections = [section for section in _sections(state, options, figures) if section is not None]
    sections = [_localised(section, figures) for section in sections]
    title = f"visrep report: {state.pipeline.root.name}"
    atomic_write_text(folder / "report.md", to_markdown(title, INTRO, sections, folder))
    return atomic_write_text(folder / "report.html", to_html(title, INTRO, sections))


def _sections(state, options, figures: Path) -> list[Section | None]:
    stages = state.pipeline.stages
    folder = state.folder
    sections = [summary_section(state.pipeline, generators(state.pipeline)),
                dataset_section(folder("data")) if "data" in stages else None,
                classifier_section(folder("classifier")) if "classifier" in stages else None,
                embeddings_section(folder("embeddings")) if "embeddings" in stages else None,
                evaluator_section(folder("evaluator")) if "evaluator" in stages else None]
    data = _pictured_data(state)
    for name in generators(state.pipeline):
        pictures = generator_pictures(folder(name), name, data, options, figures) if data is not None else []
        sections.append(generated_section(name, folder(name), pictures, figures))
    if "generative" in stages:
        sections.append(metrics_section(folder("generative"), generators(state.pipeline)))
    sections.append(timing_section(state.pipeline))
    return sections


def _pictured_data(state):
    """The data the generators were trained on (their given test images come from it)."""
    for name in generators(state.pipeline):
        return state.data_for(state.configs[name].data)
    return None


def _localised(section: Section, figures: Path) -> Section:
    """Images copied into report/figures/ (named after their section), so the report folder stands alone."""
    blocks = []
    for index, block in enumerate(section.blocks):
        if isinstance(block, Image) and Path(block.path).parent.resolve() != figures.resolve():
            target = figures / f"{section.id}-{index:02d}-{Path(block.path).name}"
            shutil.copyfile(block.path, target)
            block = Image(target, block.alt, block.caption)
        blocks.append(block)
    return Section(section.id, section.title, blocks)
