"""Scoring time before and after, side by side: `visrep evaluate generated` on N images, no CAS.

    git worktree add /tmp/visrep-before <commit before the change>
    python benchmarks/bench_scoring_speed.py --evaluator runs/evaluator-cifar10 \
        --before /tmp/visrep-before/src --rounds 3 --out /tmp/scoring_speed.json

The images scored are N training images + Gaussian pixel noise σ = 16/255 (the stand-in of
bench_evaluator.py). Each round runs, in turn, in fresh processes: the code under --before; this
code with generative.cache=false (everything computed, as a first scoring does); this code with a
warm cache (the real side and the floor read from <evaluator>/scoring_cache/, as every later
scoring of that evaluator and split does). Floor on, CAS off, same seed. Reported: the scoring's
own total_seconds from metrics.json (load to written report) and the wall time of the whole command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_evaluator import noisy_training_images  # noqa: E402
from common import machine_line  # noqa: E402

from visrep.data.prepare import prepare_data  # noqa: E402
from visrep.evaluation.evaluator import load_evaluator  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def run_scoring(src: Path, evaluator: str, fake: Path, n: int, root: Path, name: str, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "visrep", "evaluate", "generated", "--evaluator", evaluator, "--fake", str(fake),
               "-n", str(n), "--no-cas", "--name", name, f"run.root={root}", *extra]
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    timing = json.loads((root / name / "metrics.json").read_text())["timing"]
    return {"wall_seconds": wall, "total_seconds": timing["total_seconds"], "timing": timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", required=True)
    parser.add_argument("--before", type=Path, help="src/ of the code before the change (left out: after only)")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    evaluator = load_evaluator(Path(args.evaluator))
    stand_in = noisy_training_images(prepare_data(evaluator.cfg.data, progress=False), args.n, 16.0, 123)
    variants = {"before": (args.before, []), "after, no cache": (SRC, ["generative.cache=false"]),
                "after, warm cache": (SRC, [])}
    if args.before is None:
        del variants["before"]
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        fake, root = Path(folder) / "stand_in.npz", Path(folder) / "runs"
        np.savez(fake, **stand_in)
        run_scoring(SRC, args.evaluator, fake, args.n, root, "fill-cache", [])  # the warm variant's cache
        for round_index in range(args.rounds):
            for name, (src, extra) in variants.items():
                result = run_scoring(src, args.evaluator, fake, args.n, root, f"r{round_index}-{len(results[name])}-"
                                     f"{name.replace(' ', '').replace(',', '')}", extra)
                results[name].append(result)
                print(name, round_index, f"{result['total_seconds']:.1f} s", flush=True)
    summary = {name: {"median_total_seconds": statistics.median(r["total_seconds"] for r in runs),
                      "median_wall_seconds": statistics.median(r["wall_seconds"] for r in runs), "runs": runs}
               for name, runs in results.items()}
    args.out.write_text(json.dumps({"machine": machine_line(), "evaluator": args.evaluator, "n": args.n,
                                    "rounds": args.rounds, "variants": summary}, indent=1))


if __name__ == "__main__":
    main()
