"""Evaluator benchmark: test accuracy, real-vs-real floors and the time to score N (10k) images.

    python benchmarks/bench_evaluator.py --evaluator runs/evaluator-mnist [--n 10000] [--noise 16] [--threads 1]

The images scored are N training images with Gaussian pixel noise (std ``--noise`` on the 0..255
scale): a stand-in generator that must land between the real-vs-real floor and clearly broken,
and, being copies of training images, must be flagged by the memorisation check. The run is a
normal ``visrep evaluate generated`` run (written under --root); this script adds the feature
throughput of the evaluator alone and prints a Markdown block for benchmarks/RESULTS.md.
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


def noisy_training_images(data, n: int, noise: float, seed: int) -> dict:
    train = data.splits["train"]
    rows = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    images = train.uint8_batch(rows)
    noisy = images.float() + noise * torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return {"images": noisy.round().clamp(0, 255).to(torch.uint8).numpy(), "labels": train.labels.numpy()[rows]}


def feature_throughput(evaluator, images: torch.Tensor) -> float:
    extract_features(evaluator.network, images[:500])  # warm-up (allocator, kernels)
    start = time.perf_counter()
    extract_features(evaluator.network, images)
    return len(images) / (time.perf_counter() - start)


def markdown(metrics: dict, evaluator_record: dict, throughput: float, args) -> str:
    model, floor, timing = metrics["model"], metrics["floor"], metrics["timing"]
    row = lambda name, get: f"| {name} | {get(floor)} | {get(model)} |"  # noqa: E731
    kid_text = lambda block: f"{block['kid']['mean']:.4g} ± {block['kid']['std']:.2g}"  # noqa: E731
    lines = [f"Evaluator: {evaluator_record['model']} seed {evaluator_record['seed']}, test accuracy "
             f"{evaluator_record['test_accuracy']:.4f} (n={evaluator_record['test_n']}), "
             f"weights sha256 {evaluator_record['weights_sha256'][:16]}…",
             f"N = {metrics['n']} per side; real reference = {metrics['real']['source']} {metrics['real']['split']}; "
             f"stand-in generator = training images + Gaussian noise σ={args.noise}/255",
             "", "| metric | real-vs-real floor | stand-in (noisy train copies) |", "|---|---|---|",
             row("FID (evaluator space)", lambda b: f"{b['fid']:.4g}"),
             row("KID (mean ± std, 100 subsets)", kid_text),
             *(row(key, lambda b, key=key: f"{b['prdc'][key]:.4f}")
               for key in ("precision", "recall", "density", "coverage")),
             row("GAN-test accuracy", lambda b: f"{b['gan_test']['accuracy']:.4f}"),
             row("CAS accuracy", lambda b: f"{b['cas']['accuracy']:.4f}"),
             row("per-class KID (mean)", lambda b: f"{b['class_kid']['mean']:.4g}"),
             row("memorisation close fraction (features / pixels)",
                 lambda b: f"{b['memorisation']['features']['close_fraction']:.4f} / "
                           f"{b['memorisation']['pixels']['close_fraction']:.4f}"),
             row("memorisation flagged", lambda b: str(b["memorisation"]["flagged"])),
             "", f"Time to score {metrics['n']} generated images (whole `evaluate generated`, floor included): "
             f"{timing['total_seconds']:.1f} s; evaluator features alone: {throughput:.0f} images/s (fp32).",
             "Breakdown (s): " + ", ".join(f"{key.replace('_seconds', '')} {value:.1f}"
                                           for key, value in timing.items() if key.endswith("_seconds")),
             f"Machine: {machine_line()}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", required=True, help="evaluator run directory")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--noise", type=float, default=16.0, help="pixel noise std on the 0..255 scale")
    parser.add_argument("--root", default="runs", help="where the evaluation run directory goes")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, help="torch and BLAS threads (1 is faster on a busy machine)")
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
        cfg.generative.threads = args.threads
        run_path, metrics = evaluate_generated(cfg)
    text = markdown(metrics, json.loads((Path(args.evaluator) / "evaluator.json").read_text()), throughput, args)
    (run_path / "bench_evaluator.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
