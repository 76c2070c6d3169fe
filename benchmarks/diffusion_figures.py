"""The guidance-sweep figure: FID and KID against GAN-test and recall, one point per guidance scale.

    python benchmarks/diffusion_figures.py guidance benchmarks/results/diffusion_mnist_sweep.json OUT.png

Reads the classifier-free guidance table of ``bench_diffusion.py --sweep`` output (validation split).
"""

from __future__ import annotations

import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def guidance_rows(record: dict) -> list[dict]:
    table = next(t for t in record["tables"] if t["title"].startswith("Classifier-free guidance scale"))
    return [{**row, "kid": row["kid"]["mean"] if isinstance(row["kid"], dict) else row["kid"]} for row in table["rows"]]


def guidance_figure(sweep_json: str, out: str) -> None:
    rows = guidance_rows(json.loads(open(sweep_json).read()))
    figure, axes = plt.subplots(2, 2, figsize=(7.5, 6), constrained_layout=True)
    for column, (x_key, x_label) in enumerate((("gan_test", "GAN-test accuracy (independent evaluator) →"),
                                               ("recall", "recall →"))):
        for line, (y_key, y_label) in enumerate((("fid", "FID (evaluator space) ↓"), ("kid", "KID ↓"))):
            axis = axes[line][column]
            xs, ys = [row[x_key] for row in rows], [row[y_key] for row in rows]
            axis.plot(xs, ys, "o-", color="tab:blue")
            for row, x, y in zip(rows, xs, ys):
                axis.annotate(f"s={row['guidance']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.grid(alpha=0.3)
    figure.suptitle("Classifier-free guidance scale s: quality against class fidelity and diversity", fontsize=10)
    figure.savefig(out, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=("guidance",))
    parser.add_argument("sweep_json")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    guidance_figure(args.sweep_json, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
