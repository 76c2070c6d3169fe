"""The doctor's report: the machine, its measured speed, and one estimate line per shipped config."""

from __future__ import annotations

from pathlib import Path

import torch

from visrep.errors import UserError
from visrep.hardware.cpu import read_cpu_info
from visrep.hardware.precision import resolve_precision
from visrep.hardware.threads import configure_process

from visrep.doctor.classifier_cost import REFERENCE, Throughput, estimate_config, measure_throughput

GENERATOR_SECTIONS = ("gan", "diffusion", "guide")
NAME_WIDTH = 28


def report(config_dir: Path | None, seconds_per_precision: float = 2.5) -> str:
    cpu, threads = read_cpu_info(), configure_process()
    auto = resolve_precision("auto", "cpu")
    lines = [f"CPU          {cpu.model}",
             f"flags        {' '.join(cpu.flags) or 'none of interest'} (torch kernels: {cpu.torch_capability})",
             f"native bf16  {'yes' if cpu.native_bf16 else 'no'}: {cpu.reason}",
             f"precision    auto picks {auto.precision} on the CPU",
             f"threads      {torch.get_num_threads()} ({threads.reason})",
             f"torch        {_torch_build()}", ""]
    rates = {p: measure_throughput(p, seconds_per_precision) for p in ("fp32", "bf16")}
    ref = REFERENCE
    lines.append(f"measured     training {ref['name']}{ref['widths']} at {ref['image_size']} px, batch {ref['batch']}:")
    for precision, rate in rates.items():
        marker = "  <- auto" if precision == auto.precision else ""
        lines.append(f"             {precision:5s} {rate.images_per_s:8.0f} img/s ({rate.steps} steps){marker}")
    if config_dir is not None and config_dir.is_dir():
        lines += ["", f"estimated time here with auto ({auto.precision}, {torch.get_num_threads()} threads; within "
                      "~2x): classifiers scaled from the measurement by FLOPs, generators from a few of their own "
                      "steps timed now, pipelines as the sum of their stages:"]
        for path in sorted(config_dir.glob("*.yaml")):
            lines.append(estimate_line(path, rates[auto.precision]))
    return "\n".join(lines)


def estimate_line(path: Path, reference: Throughput) -> str:
    """One config's estimate, or why it has none, in words; never an exception."""
    try:
        kind = config_kind(path)
        if kind == "pipeline":
            return _pipeline_line(path, reference)
        if kind in GENERATOR_SECTIONS:
            return _generator_line(path, kind)
        return _classifier_line(path, reference)
    except UserError as err:  # a config this estimate cannot read: say why in its words, keep going
        return f"  {path.name:{NAME_WIDTH}s} not estimated: {err}"


def config_kind(path: Path) -> str:
    """pipeline | gan | diffusion | guide | classifier, from the config's top-level sections."""
    from visrep.config import read_yaml_mapping

    sections = read_yaml_mapping(path)
    if "classifier" in sections or "stages" in sections:  # a pipeline names each stage's recipe
        return "pipeline"
    return next((name for name in GENERATOR_SECTIONS if name in sections), "classifier")


def _classifier_line(path: Path, reference: Throughput) -> str:
    estimate = estimate_config(path, reference)
    if not estimate["images"]:
        return f"  {path.name:{NAME_WIDTH}s} {estimate['model']:12s} not estimated: {estimate['note']}"
    return (f"  {path.name:{NAME_WIDTH}s} {estimate['model']:12s} {estimate['images']:6d} images x "
            f"{estimate['epochs']:2d} epochs  ~{duration(estimate['seconds'])}"
            + ("" if estimate["note"] in ("counted", "embedded") else f"  ({estimate['note']})"))


def _generator_line(path: Path, stage: str) -> str:
    from visrep.config import DiffusionConfig, GanConfig, GuideConfig, load_config

    from visrep.doctor.generator_cost import estimate_generator

    schema = {"gan": GanConfig, "diffusion": DiffusionConfig, "guide": GuideConfig}[stage]
    estimate = estimate_generator(stage, load_config(path, schema=schema))
    if "steps" not in estimate:
        return f"  {path.name:{NAME_WIDTH}s} {stage:12s} not estimated: {estimate['note']}"
    cap = ", capped by train.max_minutes" if estimate["capped"] else ""
    sampling = f" + sampling {duration(estimate['sampling_seconds'])}" if estimate["sampling_seconds"] >= 1 else ""
    return (f"  {path.name:{NAME_WIDTH}s} {stage:12s} {estimate['steps']:6d} steps x "
            f"{estimate['step_seconds']:.3f} s (timed){cap}{sampling}  ~{duration(estimate['seconds'])}"
            + (f"  ({estimate['note']})" if estimate["note"] else ""))


def _pipeline_line(path: Path, reference: Throughput) -> str:
    from visrep.doctor.pipeline_cost import estimate_pipeline

    estimate = estimate_pipeline(path, reference)
    parts = ", ".join(f"{stage} {duration(seconds)}" for stage, seconds in estimate["stages"].items())
    notes = f"  ({'; '.join(estimate['notes'])})" if estimate["notes"] else ""
    return f"  {path.name:{NAME_WIDTH}s} {'pipeline':12s} {parts}  ~{duration(estimate['seconds'])}{notes}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _torch_build() -> str:
    parts = [torch.__version__, f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build",
             f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU visible",
             f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}",
             f"OpenMP {'on' if torch.backends.openmp.is_available() else 'off'}",
             f"MKL {'on' if torch.backends.mkl.is_available() else 'off'}"]
    return ", ".join(parts)
