"""Accuracy-vs-training-time curves from bench_classifier.py JSON results and/or run directories.

    python benchmarks/plot_accuracy_vs_time.py --json "visrep recipe=/tmp/bench/cifar10.json" \
        --json "airbench94 port=/tmp/bench/anchor.json" --run r8=/tmp/cifar/r8 \
        --out benchmarks/figures/cifar10-accuracy-vs-time.png

Each point is one epoch: (training seconds so far, validation accuracy after that epoch), as the
trainer logged them in metrics.jsonl. Final test accuracies (no TTA and with TTA) are marked at the
end of each bench run when the JSON has them. A run trained without a validation split
(data.val_fraction=0) has no curve: only its final markers are drawn.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run_curve(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{"train_seconds": r["train_seconds"], "val_acc": r["val_acc"]} for r in map(json.loads, lines)]


def plot(series: list[tuple[str, list[dict], dict]], out: Path, goal: tuple[float, float] | None) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, curve, finals in series:
        seconds = [p["train_seconds"] for p in curve]
        monitored = [p for p in curve if p["val_acc"] is not None]
        line, = axes.plot([p["train_seconds"] for p in monitored], [p["val_acc"] for p in monitored], marker="o",
                          ms=3, label=f"{label} (val)" if monitored else f"{label} (no val split)")
        for key, marker in (("test_acc", "s"), ("test_acc_tta_flip_translate", "*")):
            if key in finals:
                axes.plot(seconds[-1], finals[key], marker=marker, ms=9, color=line.get_color(), ls="none")
    if goal:
        axes.axhline(goal[1], color="grey", ls=":", lw=1)
        axes.axvline(goal[0], color="grey", ls=":", lw=1)
    axes.set_xlabel("training seconds (2-core CPU)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0.5, 0.95)
    axes.set_title("CIFAR-10: accuracy vs training time (■ test, ★ test with flip+translate TTA)", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="append", default=[], metavar="LABEL=FILE",
                        help="a bench_classifier.py --out file; one curve per seed")
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=DIR", help="a run directory to add")
    parser.add_argument("--goal", nargs=2, type=float, metavar=("SECONDS", "ACC"), help="dotted goal lines")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    series = []
    for spec in args.json:
        label, _, file = spec.partition("=")
        for result in json.loads(Path(file).read_text())["runs"]:
            series.append((f"{label}, seed {result['seed']}", result["curve"], result))
    for spec in args.run:
        label, _, folder = spec.partition("=")
        curve = run_curve(Path(folder))
        if not any(p["val_acc"] is not None for p in curve):
            print(f"skipped {folder}: no val curve (trained without a validation split) and no test figures")
            continue
        series.append((label, curve, {}))
    plot(series, Path(args.out), tuple(args.goal) if args.goal else None)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
