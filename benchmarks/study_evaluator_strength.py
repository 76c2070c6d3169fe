"""How GAN-test, FID and KID move as the evaluator gets stronger (issue 20's study).

    python benchmarks/study_evaluator_strength.py --evaluator old=runs/evaluator-cifar10-old \
        --evaluator new=runs/evaluator-cifar10 --n 10000 --out /tmp/strength.json

The same three labelled image sets are scored by every evaluator (`visrep evaluate generated`,
no CAS, real reference = test split), beside each evaluator's real-vs-real floor:

* blurred: N training images, Gaussian blur σ = 1 px (5x5 kernel): content intact, detail gone;
* noisy: N training images + Gaussian pixel noise σ = 16/255: content intact, texture wrong;
* poor generator: per-class Gaussians in pixel space (class mean + the top 20 principal components of
  that class's training images, sampled with their variances): the colour layout of each class and
  nothing else — a generator that has learned almost nothing.

The sets are built once from the first evaluator's data (seed 0) and saved as .npz, so every
evaluator scores exactly the same images.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_evaluator import noisy  # noqa: E402
from common import machine_line  # noqa: E402

from visrep.config import GenerativeEvalConfig, load_config  # noqa: E402
from visrep.data.prepare import prepare_data  # noqa: E402
from visrep.evaluation.evaluator import load_evaluator  # noqa: E402
from visrep.evaluation.generative import evaluate_generated  # noqa: E402

PCA_COMPONENTS = 20


def training_subset(data, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    train = data.splits["train"]
    rows = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return train.uint8_batch(rows), train.labels.numpy()[rows]


def blurred(images: torch.Tensor) -> torch.Tensor:
    return gaussian_blur(images.float(), kernel_size=5, sigma=1.0).round().clamp(0, 255).to(torch.uint8)


def per_class_pixel_gaussians(data, n: int, classes: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n images, balanced over classes, from a per-class PCA-Gaussian fitted to the training pixels."""
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = np.empty((n, *train.uint8_batch(np.array([0])).shape[1:]), np.uint8)
    all_labels = train.labels.numpy()
    for label in range(classes):
        rows = np.flatnonzero(all_labels == label)
        pixels = train.uint8_batch(rows).reshape(len(rows), -1).double()
        mean = pixels.mean(0)
        _, singular, components = torch.linalg.svd(pixels - mean, full_matrices=False)
        std = singular[:PCA_COMPONENTS] / np.sqrt(len(rows) - 1)
        wanted = np.flatnonzero(labels == label)
        codes = torch.as_tensor(rng.normal(size=(len(wanted), PCA_COMPONENTS))) * std
        samples = mean + codes @ components[:PCA_COMPONENTS]
        images[wanted] = samples.round().clamp(0, 255).to(torch.uint8).reshape(len(wanted), *images.shape[1:]).numpy()
    return torch.as_tensor(images), labels


def build_sets(evaluator_run: Path, n: int, folder: Path) -> dict[str, Path]:
    evaluator = load_evaluator(evaluator_run)
    data = prepare_data(evaluator.cfg.data, progress=False)
    images, labels = training_subset(data, n, seed=0)
    sets = {"blurred (σ = 1 px)": (blurred(images), labels), "noisy (σ = 16/255)": (noisy(images, seed=1), labels),
            "poor generator (per-class pixel PCA-Gaussian)":
                per_class_pixel_gaussians(data, n, len(evaluator.class_names), seed=2)}
    paths = {}
    for index, (name, (set_images, set_labels)) in enumerate(sets.items()):
        paths[name] = folder / f"set{index}.npz"
        np.savez(paths[name], images=set_images.numpy(), labels=set_labels)
    return paths


def score(evaluator_run: Path, fake: Path, n: int, root: Path) -> dict:
    cfg = load_config(None, [f"run.root={root}", f"generative.n={n}", "generative.cas=false"], GenerativeEvalConfig)
    cfg.generative.evaluator, cfg.generative.fake = str(evaluator_run), str(fake)
    _, metrics = evaluate_generated(cfg, progress=False)
    return metrics


def summary(block: dict) -> dict:
    return {"gan_test": block["gan_test"]["accuracy"], "fid": block["fid"], "kid": block["kid"]["value"],
            "kid_se": block["kid"]["std_error"], "precision": block["prdc"]["precision"],
            "recall": block["prdc"]["recall"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", action="append", required=True, metavar="LABEL=RUN")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    evaluators = dict(item.split("=", 1) for item in args.evaluator)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = build_sets(Path(next(iter(evaluators.values()))), args.n, Path(tmp))
        for label, run in evaluators.items():
            record = load_evaluator(Path(run)).record or {}
            for name, path in sets.items():
                metrics = score(Path(run), path, args.n, Path(tmp) / "runs")
                rows.append({"evaluator": label, "evaluator_test_accuracy": record.get("test_accuracy"),
                             "set": name, **summary(metrics["model"]),
                             "floor": summary(metrics["floor"]), "seconds": metrics["timing"]["total_seconds"],
                             "scoring_cache": metrics["timing"]["scoring_cache"]})
                print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"machine": machine_line(), "n": args.n, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
