"""GAN benchmark: our GAN variants and torchgan's conditional DCGAN, trained for the same wall time on
the same data in one invocation, all scored the same way by the independent evaluator.

For each variant ``NAME=override,override`` (ours), in turn:
    visrep train gan --config GAN_CONFIG gan.conditioning_run=CLASSIFIER train.max_minutes=M ...
then the baseline (``--baseline``):
    python benchmarks/baseline_torchgan.py --seconds 60·M ...
and every sample set is scored with
    visrep evaluate generated --evaluator EVALUATOR --fake <run> -n N --no-cas [--in-loop]
(the in-loop numbers, by the conditioning classifier, only for ours: it shaped them).

Jobs run one after another (2 cores: never two at once). Writes a results JSON in the goal schema
of benchmarks/make_results.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, machine_line

VISREP = [sys.executable, "-m", "visrep"]
REUSE = False  # --reuse
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "gan_test")
HIGHER_IS_BETTER = {"fid": False, "kid": False, "precision": True, "recall": True, "density": True,
                    "coverage": True, "gan_test": True}
TARGET_GAN_TEST = 0.98  # the goal: GAN-test by the independent evaluator ≥ this ...
TARGET_COVERAGE = 0.8  # ... coverage ≥ this, and better than the baseline on every metric (ratios)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="conditioning classifier run")
    parser.add_argument("--evaluator", required=True, help="independent evaluator run")
    parser.add_argument("--gan-config", required=True)
    parser.add_argument("--minutes", type=float, required=True, help="training time of every model")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDE,OVERRIDE",
                        help="one of our GANs (repeatable; default: one 'ours' with the config as it is)")
    parser.add_argument("--baseline", choices=("torchgan", "none"), default="torchgan")
    parser.add_argument("--data", help="data source for the baseline (default: the GAN config's data.source)")
    parser.add_argument("--n", type=int, default=10000, help="images scored per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of every job, fixed: the start-up load sample could give one job fewer")
    parser.add_argument("--root", required=True, help="where runs go (outside the repository)")
    parser.add_argument("--goal", default="GAN, class-conditional (MNIST)")
    parser.add_argument("--order", type=int, default=80, help="section order in RESULTS.md")
    parser.add_argument("--target-gan-test", type=float, default=TARGET_GAN_TEST)
    parser.add_argument("--target-coverage", type=float, default=TARGET_COVERAGE)
    parser.add_argument("--ablation", action="store_true", help="no target: a comparison at equal training time")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse finished runs and scorings already under --root, unchecked: only to rebuild the "
                             "JSON of the same invocation")
    parser.add_argument("--sampled", action="store_true",
                        help="embedding-mode variants are also scored unconditionally, through sampled embeddings")
    parser.add_argument("--out", help="results JSON to write")
    return parser.parse_args(argv)


def run_logged(command: list[str], log: Path, done: Path | None = None) -> float | None:
    """Run ``command`` with output to ``log``; wall seconds; stops the benchmark if it fails. With
    ``--reuse``, a job whose ``done`` file exists is not run again (None)."""
    if REUSE and done is not None and done.exists():
        return None
    started = time.perf_counter()
    with open(log, "w") as stream:
        code = subprocess.call(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}; see {log}")
    return time.perf_counter() - started


def train_ours(args, name: str, overrides: list[str], root: Path) -> dict:
    command = [*VISREP, "train", "gan", "--config", args.gan_config, "--name", name, f"run.root={root}",
               f"gan.conditioning_run={args.classifier}", f"train.max_minutes={args.minutes}", "train.steps=100000000",
               f"run.seed={args.seed}", f"gan.final_samples={args.n}", "train.sample_every=1000000",
               f"train.threads={args.threads}", *overrides]
    wall = run_logged(command, root / f"{name}.log", root / name / "metrics.json")
    metrics = json.loads((root / name / "metrics.json").read_text())
    return {"run": root / name, "command": " ".join(command[2:]), "wall_seconds": wall,
            "train_seconds": metrics["train_seconds"], "images_seen": metrics["images_seen"], "in_loop": True}


def train_baseline(args, root: Path, data: str) -> dict:
    out = root / "torchgan"
    command = [sys.executable, "benchmarks/baseline_torchgan.py", "--data", data, "--seconds", str(60 * args.minutes),
               "--out", str(out), "--seed", str(args.seed), "--n", str(args.n), "--threads", str(args.threads),
               "--overwrite"]
    wall = run_logged(command, root / "torchgan.log", out / "baseline.json")
    info = json.loads((out / "baseline.json").read_text())
    return {"run": out, "command": " ".join(command[1:]), "wall_seconds": wall,
            "train_seconds": info.get("seconds_trained"), "images_seen": info.get("images_seen"), "in_loop": False,
            "baseline": info}


def sample_unconditionally(args, trained: dict, name: str, root: Path) -> dict:
    """``visrep sample RUN --n N``: an embedding-conditional GAN drawing its own conditions (RCG)."""
    out = root / f"{name}-sampled"
    command = [*VISREP, "sample", str(trained["run"]), "--n", str(args.n), "--seed", str(args.seed), "--out", str(out),
               "--overwrite"]
    run_logged(command, root / f"{name}-sampled.log", out / "samples.npz")
    return {**trained, "run": out, "command": " ".join(command[2:])}


def score(args, trained: dict, name: str, root: Path) -> dict:
    command = [*VISREP, "evaluate", "generated", "--evaluator", args.evaluator, "--fake", str(trained["run"]),
               "-n", str(args.n), "--no-cas", "--name", f"{name}-score", f"run.root={root}"]
    if trained["in_loop"]:
        command.append("--in-loop")
    run_logged(command, root / f"{name}-score.log", root / f"{name}-score" / "metrics.json")
    return json.loads((root / f"{name}-score" / "metrics.json").read_text())


def flat_metrics(section: dict) -> dict:
    prdc, kid = section.get("prdc", {}), section.get("kid", {})
    # KID: value ± standard error since issue 20 (mean ± std over subsets before)
    return {"fid": section.get("fid"), "kid": kid.get("value", kid.get("mean")),
            "kid_std": kid.get("std_error", kid.get("std")), "precision": prdc.get("precision"),
            "recall": prdc.get("recall"), "density": prdc.get("density"), "coverage": prdc.get("coverage"),
            "gan_test": (section.get("gan_test") or {}).get("accuracy"), **_consistency(section),
            "memorisation_flagged": (section.get("memorisation") or {}).get("flagged")}


def _consistency(section: dict) -> dict:
    """Embedding consistency (samples with conditioning images only): sample-to-condition cosine in the
    evaluator's space, beside real same-class pairs."""
    found = section.get("embedding_consistency")
    if not found:
        return {}
    return {"consistency": (found.get("sample_to_condition") or {}).get("mean"),
            "consistency_same_class": (found.get("real_same_class_pairs") or {}).get("mean")}


def row(name: str, trained: dict, scored: dict) -> dict:
    model = flat_metrics(scored["model"])
    images = trained.get("images_seen") or 0
    seconds = trained.get("train_seconds") or 0
    result = {"model": name, "train_seconds": round(seconds, 1), "images_seen": images,
              "images_per_s": round(images / seconds, 1) if seconds else None,
              **{key: value if isinstance(value, bool) or value is None else _round(value) for key, value in model.items()}}
    if trained["in_loop"] and scored.get("in_loop"):
        result["gan_test_in_loop"] = _round(flat_metrics(scored["in_loop"])["gan_test"])
    return result


def _round(value):
    return None if value is None else round(float(value), 4)


def floor_row(scored: dict) -> dict:
    floor = {key: value for key, value in flat_metrics(scored["floor"]).items()
             if key not in ("memorisation_flagged", "consistency", "consistency_same_class")}
    return {"model": "real-vs-real floor", **{k: _round(v) for k, v in floor.items()}}


def ratios(ours: dict, baseline: dict) -> dict:
    """ours / baseline for each metric, and whether ours is better on it."""
    out = {}
    for key in METRICS:
        a, b = ours.get(key), baseline.get(key)
        if a is None or b is None:
            continue
        better = a > b if HIGHER_IS_BETTER[key] else a < b
        out[key] = {"ratio": round(a / b, 3) if b else None, "better": bool(better)}
    return out


def goal_met(ours: dict, versus: dict | None, target_gan_test: float = TARGET_GAN_TEST,
             target_coverage: float = TARGET_COVERAGE) -> bool:
    """GAN-test ≥ ``target_gan_test`` and coverage ≥ ``target_coverage`` (a missing figure counts as 0) and,
    when there is a baseline (``versus`` = ``ratios(ours, baseline)``), better than it on every metric."""
    beats = versus is None or all(item["better"] for item in versus.values())
    return bool((ours.get("gan_test") or 0) >= target_gan_test and (ours.get("coverage") or 0) >= target_coverage
                and beats)


def main(argv=None) -> int:
    global REUSE
    args = parse_args(argv)
    REUSE = args.reuse
    root = Path(args.root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    variants = [item.partition("=") for item in args.variant] or [("ours", "=", "")]
    rows, commands, scored_any = [], [], None
    for name, _, overrides in variants:
        trained = train_ours(args, name, [o for o in overrides.split(",") if o], root)
        scored_any = score(args, trained, name, root)
        rows.append(row(name, trained, scored_any))
        commands.append(trained["command"])
        if args.sampled and json.loads((trained["run"] / "generator.json").read_text())["conditioning"] == "embedding":
            sampled = sample_unconditionally(args, trained, name, root)
            rows.append(row(f"{name}, sampled embeddings", sampled, score(args, sampled, f"{name}-sampled", root)))
            commands.append(sampled["command"])
    comparison = None
    if args.baseline == "torchgan":
        data = args.data or _config_source(args.gan_config)
        trained = train_baseline(args, root, data)
        baseline = row("torchgan 0.1.0 conditional DCGAN", trained, score(args, trained, "torchgan", root))
        rows.append(baseline)
        commands.append(trained["command"])
        comparison = {r["model"]: ratios(r, baseline) for r in rows[:-1]}
    rows.append(floor_row(scored_any))
    results = goal_record(args, rows, comparison, commands)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


COLUMNS = [("model", "model"), ("train_seconds", "training s"), ("images_seen", "real images shown"),
           ("images_per_s", "img/s"), ("fid", "FID ↓"), ("kid", "KID ↓"), ("precision", "precision ↑"),
           ("recall", "recall ↑"), ("density", "density ↑"), ("coverage", "coverage ↑"),
           ("gan_test", "GAN-test ↑ (evaluator)"), ("gan_test_in_loop", "GAN-test (in-loop, optimistic)"),
           ("consistency", "embedding consistency"), ("consistency_same_class", "real same-class pairs"),
           ("memorisation_flagged", "memorisation flagged")]


def goal_record(args, rows: list[dict], comparison: dict | None, commands: list[str]) -> dict:
    """The results JSON in benchmarks/make_results.py's goal schema."""
    ours = rows[0]
    versus = None if comparison is None else comparison[ours["model"]]
    met = None if args.ablation else goal_met(ours, versus, args.target_gan_test, args.target_coverage)
    tables = [{"title": f"Scored by the independent evaluator, N = {args.n:,} per side; {args.minutes:g} min of training each",
               "columns": [{"key": key, "label": label} for key, label in COLUMNS
                           if any(r.get(key) is not None for r in rows)],
               "rows": [{key: value for key, value in r.items() if key != "kid_std"} | (
                   {"kid": {"mean": r["kid"], "std": r["kid_std"]}} if r.get("kid_std") is not None else {})
                        for r in rows]}]
    if comparison:
        tables.append({"title": "Ours ÷ baseline (better = ours wins on that metric)",
                       "columns": [{"key": "model", "label": "model"}] + [
                           {"key": key, "label": key} for key in METRICS],
                       "rows": [{"model": name, **{key: f"{v['ratio']} ({'better' if v['better'] else 'worse'})"
                                                   for key, v in ratios_.items()}}
                                for name, ratios_ in comparison.items()]})
    return {"goal": args.goal, "issue": 21, "order": args.order,
            "target": "none: each switch's effect at equal training time" if args.ablation else (
                f"GAN-test ≥ {args.target_gan_test}, coverage ≥ {args.target_coverage}, FID/KID beside the floor, and "
                f"better than the baseline on every metric at equal training time"),
            "met": met, "headline": _headline(ours, comparison), "host": machine_line(),
            "date": datetime.date.today().isoformat(), "commit": _commit(), "source": "benchmarks/bench_gan.py output",
            "command": ["python benchmarks/bench_gan.py " + " ".join(sys.argv[1:]), *commands],
            "seeds": {"gan": args.seed, "scoring": 0}, "setup": (
                f"Conditioning classifier {args.classifier}; independent evaluator {args.evaluator}. Every model "
                f"trains for {args.minutes:g} min of training steps (train.max_minutes; the baseline's own clock), one "
                f"job at a time, then {args.n:,} of its samples are scored against {args.n:,} test images."),
            "tables": tables, "notes": []}


def _headline(ours: dict, comparison: dict | None) -> str:
    text = f"{ours['model']}: GAN-test {ours.get('gan_test')}, coverage {ours.get('coverage')}, FID {ours.get('fid')}"
    if comparison:
        wins = sum(v["better"] for v in comparison[ours["model"]].values())
        text += f"; better than the baseline on {wins} of {len(comparison[ours['model']])} metrics"
    return text


def _commit() -> str | None:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _config_source(path: str) -> str:
    import yaml

    return yaml.safe_load(Path(path).read_text())["data"]["source"]


if __name__ == "__main__":
    sys.exit(main())
