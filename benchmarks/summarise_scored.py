"""A goal JSON (benchmarks/make_results.py's schema) from generator runs already trained and scored.

For runs made by plain commands rather than a bench script (the CIFAR-10 runs: one long job each),
each ``--row NAME=TRAIN_RUN:SCORE_RUN`` reads the training run's metrics.json (time, images seen,
sampling time) and the scoring run's metrics.json (every metric, the in-loop numbers and the floor);
the floor row comes from the first scoring (the same evaluator, real split and N for every row).

    python benchmarks/summarise_scored.py --goal "..." --issue 22 --order 93 --target "..." \\
        --row "diffusion, class=runs/diff:runs/score-diff" --command "visrep train ..." --out results/x.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from bench_diffusion import COLUMNS, _table
from bench_gan import floor_row, row
from common import machine_line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goal", required=True)
    parser.add_argument("--issue", type=int, required=True)
    parser.add_argument("--order", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--row", action="append", required=True, metavar="NAME=TRAIN_RUN:SCORE_RUN")
    parser.add_argument("--command", action="append", default=[], help="a command that made the runs (in order)")
    parser.add_argument("--setup", default="")
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--source", default="the runs' own metrics.json (run directories outside the repository, "
                                            "shown as runs/)")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def read(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def build(args) -> dict:
    rows, first_score = [], None
    for spec in args.row:
        name, runs = spec.split("=", 1)
        train_run, score_run = (Path(part) for part in runs.split(":"))
        trained, scored = read(train_run), read(score_run)
        first_score = first_score or scored
        result = row(name, {**trained, "in_loop": True}, scored)
        if trained.get("sample_seconds"):
            result["sampling_images_per_s"] = round(trained["final_samples"] / trained["sample_seconds"], 1)
        rows.append(result)
    rows.append(floor_row(first_score))
    n = first_score["n"]
    headline = "; ".join(f"{r['model']}: GAN-test {r['gan_test']} (in-loop {r.get('gan_test_in_loop')}), FID {r['fid']}"
                         f", coverage {r['coverage']}" for r in rows[:-1]) + f"; floor FID {rows[-1]['fid']}"
    return {"goal": args.goal, "issue": args.issue, "order": args.order, "target": args.target, "met": None,
            "headline": headline, "host": machine_line(), "date": datetime.date.today().isoformat(), "commit": None,
            "source": args.source, "command": args.command, "seeds": {"training": 0, "scoring": 0},
            "setup": args.setup,
            "tables": [_table(f"Scored by the independent evaluator, N = {n:,} per side", rows, COLUMNS + [
                ("consistency", "embedding consistency ↑ (sample ↔ its condition)"),
                ("consistency_same_class", "same, real same-class pairs")])],
            "notes": args.note}


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.out).write_text(json.dumps(build(args), indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
