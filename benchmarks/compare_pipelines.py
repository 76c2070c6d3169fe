"""Two finished runs of the same pipeline config side by side: every stage's headline metrics (issue 34).

Used to show what a refactor changed: run the pipeline with every seed fixed from a checkout of the
commit before and of the commit after (git worktree), then

    python benchmarks/compare_pipelines.py BEFORE/digits-pipeline AFTER/digits-pipeline \\
        --before-commit 3b73c46 --after-commit b8ce36e --out benchmarks/results/refactor_digits_pipeline.json

A metric counts as equal when it is identical. With ``--seed-reference`` (the after commit's pipeline
run again with other generator seeds, e.g. ``gan.run.seed=1 diffusion.run.seed=1``) each moved metric
is also set beside that seed-to-seed difference: a move no larger than it is within what a seed changes
(one reference seed: a rough scale, not a confidence interval). Stage seconds are not part of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import machine_line, report_json

GENERATORS = ("gan", "diffusion")
STAGES = ("classifier", "embeddings", "evaluator", "gan", "diffusion", "generative", "report")


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def metrics(root: Path) -> dict:
    """{metric name: value} of a finished pipeline folder."""
    found = {"classifier best val accuracy": read(root / "classifier" / "metrics.json").get("best_val_acc"),
             "evaluator best val accuracy": read(root / "evaluator" / "metrics.json").get("best_val_acc")}
    for name in GENERATORS:
        model = read(root / "generative" / name / "metrics.json").get("model", {})
        prdc = model.get("prdc") or {}
        found.update({f"{name} GAN-test": (model.get("gan_test") or {}).get("accuracy"), f"{name} FID": model.get("fid"),
                      f"{name} KID": (model.get("kid") or {}).get("value"),
                      **{f"{name} {key}": prdc.get(key) for key in ("precision", "recall", "coverage")}})
    return found


def row_for(key: str, before, after, other_seed) -> dict:
    row = {"metric": key, "before": before, "after": after, "equal": before == after}
    if other_seed is not None and None not in (before, after):
        spread = abs(after - other_seed)
        row.update({"after, other seed": other_seed, "within seed spread": abs(after - before) <= spread})
    return row


def seconds(root: Path) -> dict:
    return {stage: read(root / stage / "pipeline-stage.json").get("seconds") for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--before-commit", required=True)
    parser.add_argument("--after-commit", required=True)
    parser.add_argument("--seed-reference", type=Path, help="the after pipeline run with other generator seeds")
    parser.add_argument("--notes", help="where the changes that moved metrics are explained (a notes file)")
    parser.add_argument("--out")
    args = parser.parse_args()
    old, new = metrics(args.before), metrics(args.after)
    other = metrics(args.seed_reference) if args.seed_reference else {}
    rows = [row_for(key, old[key], new[key], other.get(key)) for key in old]
    old_s, new_s = seconds(args.before), seconds(args.after)
    timing = [{"stage": stage, "before": old_s[stage], "after": new_s[stage]} for stage in STAGES]
    moved = [row["metric"] for row in rows if not row["equal"]]
    beyond = [row["metric"] for row in rows if row.get("within seed spread") is False]
    report_json({
        "goal": "One representation path: the digits pipeline before and after the refactor (issue 34)",
        "issue": 34, "order": 98, "met": None,
        "target": "with every seed fixed, the same metrics before and after (within float noise), or the change "
                  "that moved them named",
        "headline": f"{len(rows) - len(moved)} of {len(rows)} metrics identical; moved: {', '.join(moved) or 'none'}"
                    + (f"; beyond one seed's spread: {', '.join(beyond) or 'none'}" if other else ""),
        "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": args.after_commit,
        "source": "benchmarks/compare_pipelines.py over two pipeline folders run from git worktrees of the two commits",
        "command": ["git worktree add ../before <before-commit>; git worktree add ../after <after-commit>",
                    "visrep pipeline --config configs/pipeline_digits.yaml run.root=<before|after> (from each "
                    "worktree, PYTHONPATH=<worktree>/src, VISREP_THREADS=2)",
                    f"python benchmarks/compare_pipelines.py <before> <after> --before-commit {args.before_commit} "
                    f"--after-commit {args.after_commit} --out benchmarks/results/refactor_digits_pipeline.json"],
        "setup": f"configs/pipeline_digits.yaml, seeds as shipped; before = {args.before_commit}, after = "
                 f"{args.after_commit}. Stage seconds are not comparable between the two runs (other work shared "
                 "the machine during the first); the seconds saved are measured in representation_reuse.json",
        "tables": [{"title": "Metrics", "columns": [{"key": "metric", "label": "metric"},
                                                    {"key": "before", "label": "before"},
                                                    {"key": "after", "label": "after"},
                                                    {"key": "equal", "label": "identical"},
                                                    *([{"key": "after, other seed", "label": "after, other seed"},
                                                       {"key": "within seed spread", "label": "move ≤ seed spread"}]
                                                      if other else [])], "rows": rows},
                   {"title": "Stage seconds (not comparable, see setup)",
                    "columns": [{"key": "stage", "label": "stage"}, {"key": "before", "label": "before", "unit": " s"},
                                {"key": "after", "label": "after", "unit": " s"}], "rows": timing}],
    }, args.out)


if __name__ == "__main__":
    main()
