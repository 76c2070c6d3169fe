"""How tight is the real-vs-real floor at each N? The choice of N = 10,000 for `evaluate generated`.

    python benchmarks/study_floor_tightness.py --evaluator runs/evaluator-cifar10 --out /tmp/floor_n.json

The evaluator's features of the whole test split and of 2·max(N) training images are extracted once
and scaled as the scoring scales them (1 / RMS of the reference). For each N, ``--draws`` times: N
random test images (the reference; at N = 10,000 the whole test split every time, as in a scoring)
against N random training images (the stand-in for generated ones),
the distribution metrics of the floor. Reported per N: the mean and spread (std over draws) of FID,
KID (with its own standard error, averaged), precision, recall, density and coverage, beside the
noisy-copies stand-in (training images + Gaussian noise σ = 16/255) at the same N, so the spread
can be read against a difference that must be detected.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_evaluator import noisy  # noqa: E402
from common import machine_line  # noqa: E402

from visrep.data.prepare import prepare_data  # noqa: E402
from visrep.evaluation.distribution_metrics import fid, kid, prdc  # noqa: E402
from visrep.evaluation.evaluator import extract_features, load_evaluator  # noqa: E402
from visrep.evaluation.generative import feature_scale  # noqa: E402


def metrics(real: np.ndarray, fake: np.ndarray) -> dict:
    k = kid(real, fake)
    return {"fid": fid(real, fake), "kid": k["value"], "kid_se": k["std_error"], **{
        key: value for key, value in prdc(real, fake).items() if key != "k"}}


def summarise(draws: list[dict]) -> dict:
    return {key: {"mean": statistics.mean(d[key] for d in draws),
                  "std": statistics.stdev(d[key] for d in draws) if len(draws) > 1 else 0.0} for key in draws[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    evaluator = load_evaluator(Path(args.evaluator))
    data = prepare_data(evaluator.cfg.data, progress=False)
    test, train = data.splits["test"], data.splits["train"]
    started = time.perf_counter()
    test_features = extract_features(evaluator.network, test.uint8_batch(np.arange(len(test))))[0]
    # a pool twice the largest N, so that the stand-in side still varies between draws at that N (the
    # reference side cannot: at N = 10,000 it is the whole test split, as in a real scoring)
    pool = min(len(train), 2 * max(args.sizes))
    rows = np.sort(np.random.default_rng(0).choice(len(train), pool, replace=False))
    train_images = train.uint8_batch(rows)
    train_features = extract_features(evaluator.network, train_images)[0]
    noisy_features = extract_features(evaluator.network, noisy(train_images, 1))[0]
    scale = feature_scale(test_features)
    test_features, train_features, noisy_features = (x * scale for x in (test_features, train_features, noisy_features))
    extracted = time.perf_counter() - started
    results = []
    for n in args.sizes:
        floor, stand_in = [], []
        for draw in range(args.draws):
            rng = np.random.default_rng([n, draw])
            reference = test_features[rng.choice(len(test_features), n, replace=False)]
            pick = rng.choice(len(train_features), n, replace=False)
            floor.append(metrics(reference, train_features[pick]))
            stand_in.append(metrics(reference, noisy_features[pick]))
        results.append({"n": n, "floor": summarise(floor), "stand_in": summarise(stand_in)})
        print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps({"machine": machine_line(), "evaluator": args.evaluator, "draws": args.draws,
                                    "feature_scale": scale, "features_seconds": extracted, "sizes": results},
                                   indent=1))


if __name__ == "__main__":
    main()
