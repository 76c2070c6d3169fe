"""``visrep doctor``: what a user needs to know about this machine before a long run.

Prints the CPU flags that decide speed, what ``precision: auto`` and the thread policy pick here
and why, torch's build, a measured training throughput of the default classifier in fp32 and
bf16 (about 5 s), and a rough time for each shipped config on this machine.

The estimate scales the measured throughput by each config's forward FLOPs per image (counted with
torch's FlopCounterMode on one image, at each progressive-resizing size) and multiplies by its
training images and epochs. It leaves out data decoding, validation and evaluation, and assumes
a model converts FLOPs to time as the reference does: expect it within a factor of about 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from visrep.errors import UserError

from visrep.hardware.cpu import read_cpu_info
from visrep.hardware.precision import resolve_precision
from visrep.hardware.threads import configure_process
from visrep.models import create_model
from visrep.training.steps import classification_backward

REFERENCE = {"name": "fastcnn", "widths": [32, 64, 128], "image_size": 32, "channels": 3, "batch": 128}
# Training-split sizes of the standard sets, used when a config's data is not on this machine.
KNOWN_TRAIN_IMAGES = {"digits": 1797, "mnist": 60000, "fashionmnist": 60000, "cifar10": 50000}


@dataclass
class Throughput:
    precision: str
    images_per_s: float
    steps: int


def measure_throughput(precision: str, seconds: float = 2.5) -> Throughput:
    """Training steps of the reference classifier (channels_last, SGD) for about ``seconds``; median img/s."""
    torch.manual_seed(0)
    ref = REFERENCE
    model = create_model(ref["name"], 10, ref["channels"], ref["image_size"], widths=ref["widths"])
    model = model.to(memory_format=torch.channels_last).train()
    images = torch.randn(ref["batch"], ref["channels"], ref["image_size"], ref["image_size"])
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (ref["batch"],))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 2:
        started = time.perf_counter()
        classification_backward(model, optimizer, images, labels, precision)
        optimizer.step()
        durations.append(time.perf_counter() - started)
    timed = sorted(durations[1:])  # the first step pays for kernel selection
    return Throughput(precision, ref["batch"] / timed[len(timed) // 2], len(durations))


def forward_flops(name: str, channels: int, size: int, num_classes: int = 10, **options) -> int:
    """Forward FLOPs of one image through ``name`` at ``size`` pixels (dense ops, as FlopCounterMode counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name, num_classes, channels, size, **options).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, channels, size, size))
    return int(counter.get_total_flops())


def estimate_config(path: Path, reference: Throughput) -> dict:
    """{"config", "model", "images", "epochs", "seconds", "note"} for one shipped classifier config."""
    from omegaconf import OmegaConf

    from visrep.config import ClassifierConfig, load_config

    cfg = load_config(path, schema=ClassifierConfig)
    images, note = _train_images(cfg.data)
    _fill_schedule(cfg, images)
    if cfg.data.image_size is None:
        return {"config": path.name, "model": cfg.model.name, "images": 0, "epochs": cfg.train.epochs,
                "seconds": 0.0, "note": "data.image_size chosen from the data at run time"}
    options = OmegaConf.to_container(cfg.model.options, resolve=True)
    channels = cfg.data.channels or 3
    ref_flops = forward_flops(REFERENCE["name"], REFERENCE["channels"], REFERENCE["image_size"],
                              widths=REFERENCE["widths"])
    seconds = 0.0
    low = cfg.data.augment
    for size, epochs in ((low.low_res_size, low.low_res_epochs), (cfg.data.image_size, None)):
        if not size:
            continue
        epochs = min(epochs, cfg.train.epochs) if epochs is not None else cfg.train.epochs - (
            min(low.low_res_epochs, cfg.train.epochs) if low.low_res_size else 0)
        flops = forward_flops(cfg.model.name, channels, size, **options)
        seconds += epochs * images * (flops / ref_flops) / reference.images_per_s
    return {"config": path.name, "model": cfg.model.name, "images": images, "epochs": cfg.train.epochs,
            "seconds": seconds, "note": note}


def _fill_schedule(cfg, images: int) -> None:
    """An unset batch size or epoch count as training will derive it from ``images`` training images."""
    from visrep.data.batching import fill_batch_size, steps_per_epoch
    from visrep.training.defaults import fill_epochs

    quiet = lambda line: None  # noqa: E731  (the estimate line says what matters)
    fill_batch_size(cfg.data, images, say=quiet)
    fill_epochs(cfg.train, steps_per_epoch(images, cfg.data.batch_size), say=quiet)


def _train_images(data_cfg) -> tuple[int, str]:
    """Training images the config will see: counted in its folder when present, else the standard size."""
    source = str(data_cfg.source)
    known = next((count for name, count in KNOWN_TRAIN_IMAGES.items() if Path(source).name.lower() == name), None)
    folder = Path(source).expanduser()
    if (folder / "train").is_dir():
        count = sum(1 for _ in (folder / "train").rglob("*") if _.is_file())
        return int(count * (1 - data_cfg.val_fraction)), "counted"
    if known is None:
        return 0, "data not found here"
    test_carved = data_cfg.test_fraction if source == "digits" else 0.0  # the others ship a test split
    images = int(known * (1 - test_carved) * (1 - data_cfg.val_fraction))
    return images, "embedded" if source == "digits" else "standard size (data not on this machine)"


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
        lines += ["", f"estimated training time here with auto ({auto.precision}, {torch.get_num_threads()} threads; "
                      "rough, within ~2x; decoding and evaluation not included):"]
        for path in sorted(config_dir.glob("*.yaml")):
            lines.append(_estimate_line(path, rates[auto.precision]))
    return "\n".join(lines)


GENERATOR_SECTIONS = ("gan", "diffusion", "guide")  # step-trained recipes: no per-image cost model here yet


def _estimate_line(path: Path, reference: Throughput) -> str:
    why = _not_estimated(path)
    if why is not None:
        return f"  {path.name:28s} not estimated: {why}"
    try:
        estimate = estimate_config(path, reference)
    except UserError as err:  # a config this estimate cannot read: say why in its words, keep going
        return f"  {path.name:28s} not estimated: {err}"
    if not estimate["images"]:
        return f"  {path.name:28s} {estimate['model']:12s} not estimated: {estimate['note']}"
    return (f"  {path.name:28s} {estimate['model']:12s} {estimate['images']:6d} images x {estimate['epochs']:2d} epochs"
            f"  ~{_duration(estimate['seconds'])}" + ("" if estimate["note"] in ("counted", "embedded")
                                                      else f"  ({estimate['note']})"))


def _not_estimated(path: Path) -> str | None:
    """Why a shipped config gets no classifier estimate (a generator recipe, a pipeline), in words; None if it does."""
    from visrep.config import read_yaml_mapping

    try:
        sections = read_yaml_mapping(path)
    except UserError as err:
        return str(err)
    if "classifier" in sections or "stages" in sections:  # a pipeline names each stage's recipe
        return "a pipeline: the estimate has no cost model for its generator stages yet; its classifier and evaluator " \
               "recipes are estimated on their own lines"
    stage = next((name for name in GENERATOR_SECTIONS if name in sections), None)
    if stage is not None:
        train = sections.get("train") or {}
        steps, cap = train.get("steps"), train.get("max_minutes")
        budget = f"{steps} steps" + (f", at most {cap} min (train.max_minutes)" if cap else "")
        return f"a {stage} recipe ({budget}): the estimate has no cost model for generators yet"
    return None


def _duration(seconds: float) -> str:
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
