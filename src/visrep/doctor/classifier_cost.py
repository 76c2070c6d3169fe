"""The classifier's cost: a measured reference throughput, scaled by each config's forward FLOPs.

The estimate scales the measured throughput of a reference classifier by a config's forward FLOPs
per image (counted with torch's FlopCounterMode on one image, at each progressive-resizing size)
and multiplies by its training images and epochs. It leaves out data decoding and validation, and
assumes a model converts FLOPs to time as the reference does: expect it within a factor of about 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from visrep.models import create_model
from visrep.training.steps import classification_backward

REFERENCE = {"name": "fastcnn", "widths": [32, 64, 128], "image_size": 32, "channels": 3, "batch": 128}
# Training-split sizes of the standard sets, used when a config's data is not on this machine.
KNOWN_TRAIN_IMAGES = {"digits": 1797, "mnist": 60000, "fashionmnist": 60000, "cifar10": 50000}
KNOWN_CLASSES = {"digits": 10, "mnist": 10, "fashionmnist": 10, "cifar10": 10}


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


def reference_flops() -> int:
    return forward_flops(REFERENCE["name"], REFERENCE["channels"], REFERENCE["image_size"], widths=REFERENCE["widths"])


def estimate_config(path: Path, reference: Throughput) -> dict:
    """{"config", "model", "images", "epochs", "seconds", "note"} for one shipped classifier config file."""
    from visrep.config import ClassifierConfig, load_config

    return {"config": path.name, **estimate_classifier(load_config(path, schema=ClassifierConfig), reference)}


def estimate_classifier(cfg, reference: Throughput) -> dict:
    """{"model", "images", "epochs", "seconds", "note"} of a classifier (or evaluator) config's training."""
    from omegaconf import OmegaConf

    images, note = train_images(cfg.data)
    _fill_schedule(cfg, images)
    if cfg.data.image_size is None:
        return {"model": cfg.model.name, "images": 0, "epochs": cfg.train.epochs, "seconds": 0.0,
                "note": "data.image_size chosen from the data at run time"}
    options = OmegaConf.to_container(cfg.model.options, resolve=True)
    channels = cfg.data.channels or 3
    ref_flops = reference_flops()
    seconds = 0.0
    low = cfg.data.augment
    for size, epochs in ((low.low_res_size, low.low_res_epochs), (cfg.data.image_size, None)):
        if not size:
            continue
        epochs = min(epochs, cfg.train.epochs) if epochs is not None else cfg.train.epochs - (
            min(low.low_res_epochs, cfg.train.epochs) if low.low_res_size else 0)
        flops = forward_flops(cfg.model.name, channels, size, **options)
        seconds += epochs * images * (flops / ref_flops) / reference.images_per_s
    return {"model": cfg.model.name, "images": images, "epochs": cfg.train.epochs, "seconds": seconds, "note": note}


def _fill_schedule(cfg, images: int) -> None:
    """An unset batch size or epoch count as training will derive it from ``images`` training images."""
    from visrep.data.batching import fill_batch_size, steps_per_epoch
    from visrep.training.defaults import fill_epochs

    quiet = lambda line: None  # noqa: E731  (the estimate line says what matters)
    fill_batch_size(cfg.data, images, say=quiet)
    fill_epochs(cfg.train, steps_per_epoch(images, cfg.data.batch_size), say=quiet)


def train_images(data_cfg) -> tuple[int, str]:
    """Training images the config will see: counted in its folder when present, else the standard size."""
    source = str(data_cfg.source)
    known = next((count for name, count in KNOWN_TRAIN_IMAGES.items() if Path(source).name.lower() == name), None)
    folder = Path(source).expanduser()
    if (folder / "train").is_dir():
        count = sum(1 for _ in (folder / "train").rglob("*") if _.is_file())
        return int(count * (1 - data_cfg.val_fraction)), "counted"
    if folder.is_dir() and any(child.is_dir() for child in folder.iterdir()):  # a class-per-folder set, no splits
        count = sum(1 for _ in folder.rglob("*") if _.is_file())
        return int(count * (1 - data_cfg.test_fraction) * (1 - data_cfg.val_fraction)), "counted"
    if known is None:
        return 0, "data not found here"
    test_carved = data_cfg.test_fraction if source == "digits" else 0.0  # the others ship a test split
    images = int(known * (1 - test_carved) * (1 - data_cfg.val_fraction))
    return images, "embedded" if source == "digits" else "standard size (data not on this machine)"


def class_count(data_cfg) -> tuple[int, str]:
    """How many classes the config's data has: its class folders when present, else the standard set's (or 10)."""
    folder = Path(str(data_cfg.source)).expanduser()
    classes_dir = folder / "train" if (folder / "train").is_dir() else folder
    if classes_dir.is_dir():
        count = sum(1 for child in classes_dir.iterdir() if child.is_dir() and not child.name.startswith("."))
        if count:
            return count, "counted"
    name = Path(str(data_cfg.source)).name.lower()
    return KNOWN_CLASSES.get(name, 10), "standard" if name in KNOWN_CLASSES else "assumed 10 classes"
