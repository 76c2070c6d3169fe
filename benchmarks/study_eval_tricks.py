"""Evaluation-side tricks on trained classifier runs, scored on their val split (test never read),
and the whitening stem's view of a run's training images.

    python benchmarks/study_eval_tricks.py tta-views RUN [RUN ...]
        logits of all 50 views (every shift in [-2, 2]² px, reflect-padded, × mirror) computed once per
        run, then several test-time-augmentation weightings scored from them;
    python benchmarks/study_eval_tricks.py tta-scales RUN [RUN ...]
        airbench's flip + translate TTA at full size, at the progressive-resizing size and halfway
        (32, 24, 28 px for the CIFAR recipe; views antialias-downscaled as in training), and full size
        combined with ½ weight of the others;
    python benchmarks/study_eval_tricks.py precise-bn RUN [RUN ...] [--images 10000]
        val accuracy before and after re-estimating BatchNorm's running statistics at the final
        weights as a plain average over augmented, shuffled, full-size training images;
    python benchmarks/study_eval_tricks.py stem-spectrum RUN
        eigenvalues of the k x k patch covariance the airbench stem whitens (5,000 training images).

All use each run's last weights (all but stem-spectrum with bf16 autocast on CPU) and print one line per run
and scheme.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from visrep.data.prepare import prepare_data
from visrep.inference.loading import load_classifier
from visrep.inference.autocast import autocast_context
from visrep.inference.predict import predict_logits

SHIFTS = range(-2, 3)  # pixels, both axes
CPU = torch.device("cpu")


def view_logits(model, data) -> tuple[np.ndarray, np.ndarray]:
    """(5, 5, 2, N, K) logits indexed [dy + 2, dx + 2, mirrored] over the val split, and (N,) labels."""
    batches = list(data.loader("val", 500))
    labels = torch.cat([y for _, y in batches]).numpy()
    logits = np.zeros((5, 5, 2, len(labels), model.head.out_features), np.float32)
    start = 0
    with torch.no_grad(), autocast_context(CPU, "bf16"):
        for images, _ in batches:
            rows = slice(start, start + len(images))
            padded = F.pad(images, (2,) * 4, mode="reflect")
            size = images.shape[-1]
            for i, dy in enumerate(SHIFTS):
                for j, dx in enumerate(SHIFTS):
                    view = padded[:, :, 2 + dy:2 + dy + size, 2 + dx:2 + dx + size]
                    logits[i, j, 0, rows] = model(view).float().numpy()
                    logits[i, j, 1, rows] = model(view.flip(3)).float().numpy()
            start += len(images)
    return logits, labels


def tta_schemes() -> dict[str, list[tuple[tuple[int, int], float]]]:
    """{name: [((dy, dx), weight), ...]}; every view is averaged with its mirror."""
    ring1 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    ring2 = [(dy, dx) for dy in SHIFTS for dx in SHIFTS]
    axes = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    return {
        "centre only (flip TTA)": [((0, 0), 1.0)],
        "airbench: 1/2 centre, 1/4 each (-1,-1), (+1,+1)": [((0, 0), 0.5), ((-1, -1), 0.25), ((1, 1), 0.25)],
        "same with +-2 px": [((0, 0), 0.5), ((-2, -2), 0.25), ((2, 2), 0.25)],
        "3x3 shifts +-1, uniform": [(s, 1.0) for s in ring1],
        "1/2 centre + 4 axis shifts +-1": [((0, 0), 0.5)] + [(s, 0.125) for s in axes],
        "5x5 shifts +-2, uniform": [(s, 1.0) for s in ring2],
        "5x5 shifts +-2, Gaussian (sigma 1 px)": [(s, float(np.exp(-(s[0] ** 2 + s[1] ** 2) / 2))) for s in ring2],
    }


def score_scheme(logits: np.ndarray, labels: np.ndarray, scheme) -> float:
    total = sum(weight for _, weight in scheme)
    combined = sum(weight * logits[dy + 2, dx + 2].mean(axis=0) for (dy, dx), weight in scheme) / total
    return float((combined.argmax(1) == labels).mean() * 100)


def study_tta_views(runs: list[Path]) -> None:
    for run in runs:
        model, cfg = load_classifier(run, "last")
        logits, labels = view_logits(model.to(memory_format=torch.channels_last), prepare_data(cfg.data))
        plain = float((logits[2, 2, 0].argmax(1) == labels).mean() * 100)
        print(f"{run.name}: no TTA {plain:.2f} %", flush=True)
        for name, scheme in tta_schemes().items():
            print(f"{run.name}: {name} ({2 * len(scheme)} passes) {score_scheme(logits, labels, scheme):.2f} %",
                  flush=True)


class Downscaled(torch.nn.Module):
    """``model`` applied to its (N, C, S, S) input downscaled to (N, C, size, size), as the low-res epochs train."""

    def __init__(self, model, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images):
        small = F.interpolate(images, size=(self.size,) * 2, mode="bilinear", antialias=True)
        return self.model(small.contiguous(memory_format=torch.channels_last))


def tta_sizes(cfg) -> list[int]:
    """Full size, the progressive-resizing size and the one halfway (32, 28, 24 for the CIFAR recipe)."""
    full, low = cfg.data.image_size, cfg.data.augment.low_res_size or cfg.data.image_size * 3 // 4
    return sorted({full, (full + low) // 2, low}, reverse=True)


def study_tta_scales(runs: list[Path]) -> None:
    for run in runs:
        model, cfg = load_classifier(run, "last")
        sizes = tta_sizes(cfg)
        model, data = model.to(memory_format=torch.channels_last), prepare_data(cfg.data)
        logits = {}
        for size in sizes:
            net = model if size == cfg.data.image_size else Downscaled(model, size)
            logits[size], labels = predict_logits(net, data.loader("val", 500), CPU, "bf16", True, 1)
        full = logits[cfg.data.image_size]
        combos = {f"{size} px alone": logits[size] for size in sizes}
        combos.update({f"{cfg.data.image_size} px + ½ · {size} px": full + 0.5 * logits[size]
                       for size in sizes if size != cfg.data.image_size})
        combos["all sizes, ½ weight below full size"] = full + 0.5 * sum(
            logits[size] for size in sizes if size != cfg.data.image_size)
        for name, combined in combos.items():
            print(f"{run.name}: flip + translate TTA, {name}: {(combined.argmax(1) == labels).mean() * 100:.2f} %",
                  flush=True)


def val_accuracy(model, data, tta: bool) -> float:
    logits, labels = predict_logits(model, data.loader("val", 500), CPU, "bf16", tta, 1 if tta else 0)
    return float((logits.argmax(1) == labels).mean() * 100)


@torch.no_grad()
def reestimate_batchnorm(model, data, augment, images: int) -> int:
    """Running statistics ← plain average over ``images`` shuffled, augmented, full-size training images."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average instead of an exponential one
    loader = data.loader("train", 500, train=True, augment=augment)
    loader.set_epoch(99)  # past any progressive-resizing epochs: full-size images
    model.train()
    seen = 0
    with autocast_context(CPU, "bf16"):
        for batch, _ in loader:
            model(batch.contiguous(memory_format=torch.channels_last))
            seen += len(batch)
            if seen >= images:
                break
    model.eval()
    return seen


def study_precise_bn(runs: list[Path], images: int) -> None:
    for run in runs:
        model, cfg = load_classifier(run, "last")
        model = model.to(memory_format=torch.channels_last)
        data = prepare_data(cfg.data)
        before = [val_accuracy(model, data, tta) for tta in (False, True)]
        seen = reestimate_batchnorm(model, data, cfg.data.augment, images)
        after = [val_accuracy(model, data, tta) for tta in (False, True)]
        print(f"{run.name}: no TTA {before[0]:.2f} → {after[0]:.2f} %, flip + translate {before[1]:.2f} → "
              f"{after[1]:.2f} % (statistics from {seen} images)", flush=True)


def print_stem_spectrum(run: Path) -> None:
    from visrep.models.airbench import patch_covariance
    from visrep.training.classifier import init_sample
    model, cfg = load_classifier(run, "last")
    images, _ = init_sample(prepare_data(cfg.data), model.init_images, cfg.run.seed)  # as the trainer does
    kernel = model.stem.whiten.weight.shape[-1]
    eigenvalues = torch.linalg.eigvalsh(patch_covariance(images.float(), kernel)).flip(0)
    print(f"{run.name}: {kernel}x{kernel} patch-covariance eigenvalues (largest first): "
          + " ".join(f"{v:.2e}" for v in eigenvalues.tolist()) + f"; whiten_eps {model.whiten_eps:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=["tta-views", "tta-scales", "precise-bn", "stem-spectrum"])
    parser.add_argument("runs", nargs="+", type=Path, help="trained classifier run directories")
    parser.add_argument("--images", type=int, default=10_000, help="precise-bn: training images averaged")
    args = parser.parse_args()
    if args.study == "tta-views":
        study_tta_views(args.runs)
    elif args.study == "tta-scales":
        study_tta_scales(args.runs)
    elif args.study == "precise-bn":
        study_precise_bn(args.runs, args.images)
    else:
        for run in args.runs:
            print_stem_spectrum(run)


if __name__ == "__main__":
    main()
