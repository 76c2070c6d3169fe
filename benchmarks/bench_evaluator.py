"""Evaluator benchmark: test accuracy, real-vs-real floors and the time to score N (10k) images.

    python benchmarks/bench_evaluator.py --evaluator runs/evaluator-mnist [--n 10000] [--noise 16] [--threads 1]

The images scored are N training images with Gaussian pixel noise (std ``--noise`` on the 0..255
scale): a stand-in generator that must land between the real-vs-real floor and clearly broken,
and, being copies of training images, must be flagged by the memorisation check. The run is a
normal ``visrep evaluate generated`` run (written under --root); this script adds the feature
throughput of the evaluator alone and prints (and with --out writes) the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402

from visrep.config import GenerativeEvalConfig, load_config  # noqa: E402
from visrep.data.prepare import prepare_data  # noqa: E402
from visrep.evaluation.evaluator import extract_features, load_evaluator  # noqa: E402
from visrep.evaluation.generative import evaluate_generated  # noqa: E402


def noisy(images: torch.Tensor, seed: int, sigma: float = 16.0) -> torch.Tensor:
    """uint8 images + Gaussian pixel noise of std ``sigma`` (0..255 scale), seeded, rounded and clipped."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def noisy_training_images(data, n: int, noise: float, seed: int) -> dict:
    train = data.splits["train"]
    rows = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return {"images": noisy(train.uint8_batch(rows), seed, noise).numpy(), "labels": train.labels.numpy()[rows]}


def feature_throughput(evaluator, images: torch.Tensor) -> float:
    extract_features(evaluator.network, images[:500])  # warm-up (allocator, kernels)
    start = time.perf_counter()
    extract_features(evaluator.network, images)
    return len(images) / (time.perf_counter() - start)


def metric_rows(metrics: dict) -> list[dict]:
    """One row per metric: {"metric", "floor", "stand_in"} (KID as value ± standard error)."""
    model, floor = metrics["model"], metrics.get("floor") or {}
    getters = {"FID (evaluator space)": lambda b: b["fid"],
               "KID (± standard error)": lambda b: {"value": b["kid"]["value"], "se": b["kid"]["std_error"]},
               **{key: (lambda b, key=key: b["prdc"][key]) for key in ("precision", "recall", "density", "coverage")},
               "GAN-test accuracy": lambda b: b["gan_test"]["accuracy"],
               "CAS accuracy": lambda b: b["cas"]["accuracy"],
               "per-class KID (mean over classes)": lambda b: b["class_kid"]["mean"],
               "memorisation close fraction, features": lambda b: b["memorisation"]["features"]["close_fraction"],
               "memorisation close fraction, pixels": lambda b: b["memorisation"]["pixels"]["close_fraction"],
               "memorisation flagged": lambda b: b["memorisation"]["flagged"]}
    rows = []
    for name, get in getters.items():
        values = []
        for block in (floor, model):
            try:
                values.append(get(block))
            except (KeyError, TypeError):
                values.append(None)
        if any(value is not None for value in values):
            rows.append({"metric": name, "floor": values[0], "stand_in": values[1]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", required=True, help="evaluator run directory")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--noise", type=float, default=16.0, help="pixel noise std on the 0..255 scale")
    parser.add_argument("--root", default="runs", help="where the evaluation run directory goes")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--no-cas", action="store_true", help="skip the Classification Accuracy Score")
    parser.add_argument("--threads", type=int, help="torch and BLAS threads (1 is faster on a busy machine)")
    parser.add_argument("--out", type=Path, help="write the rows, timings and evaluator record as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    evaluator = load_evaluator(Path(args.evaluator))
    data = prepare_data(evaluator.cfg.data)
    stand_in = noisy_training_images(data, args.n, args.noise, args.seed)
    throughput = feature_throughput(evaluator, torch.from_numpy(stand_in["images"]))
    with tempfile.TemporaryDirectory() as folder:
        fake = Path(folder) / "stand_in.npz"
        np.savez(fake, **stand_in)
        name = f"bench-{Path(args.evaluator).name}-n{args.n}"
        cfg = load_config(None, [f"run.root={args.root}", f"run.name={name}", "run.overwrite=true"],
                          GenerativeEvalConfig)
        cfg.generative.evaluator, cfg.generative.fake, cfg.generative.n = args.evaluator, str(fake), args.n
        cfg.generative.threads, cfg.generative.cas = args.threads, not args.no_cas
        _, metrics = evaluate_generated(cfg)
    result = {"machine": machine_line(), "evaluator": metrics["evaluator"], "n": metrics["n"],
              "feature_scale": metrics["feature_scale"], "noise": args.noise, "rows": metric_rows(metrics),
              "timing": metrics["timing"], "features_per_second": throughput}
    text = json.dumps(result, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
