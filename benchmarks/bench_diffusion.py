"""Diffusion benchmark: ours and denoising-diffusion-pytorch's classifier-free-guidance U-Net, trained
for the same wall time on the same data in one invocation, scored the same way by the independent
evaluator; or (``--sweep RUN``) guidance-scale and solver/steps sweeps of a trained run.

Main comparison, one job at a time (2 cores: never two at once):
    visrep train diffusion --config CONFIG diffusion.conditioning_run=CLASSIFIER train.max_minutes=M ...
    visrep evaluate generated --evaluator EVALUATOR --fake <ours> -n N --no-cas --in-loop
    python benchmarks/baseline_ddpm.py --seconds 60·M --n NB --steps 20 ...
    visrep evaluate generated ... -n NB for both (equal N: FID's bias depends on N)
Ours samples N images at the end of training (the config's solver, steps and guidance), timed by the
stage (``sample_seconds`` in its metrics.json); the baseline times its own NB samples at the same
number of steps with its default guidance. Both run in the same bf16 autocast.

Sweep (``--sweep RUN``): ``visrep sample RUN --n NS --guidance s`` for s in --scales, and
``--solver x --steps k`` for x in ddim, dpm++ and k in --steps-list, each timed and scored against
the validation split (these choose the defaults: tuning stays off the test split).

Writes results JSON in the goal schema of benchmarks/make_results.py (and, for the sweep, a plot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import bench_gan
from bench_gan import METRICS, flat_metrics, floor_row, ratios, row, run_logged
from common import REPO, machine_line

VISREP = bench_gan.VISREP
# the comparison's goal: GAN-test ≥ 0.99; precision, recall and coverage ≥ 0.8; ≥ 20× the baseline's sampling
# images/s; better than the baseline on every metric at equal training time
TARGET_GAN_TEST = 0.99
TARGET_SPREAD, SPREAD_METRICS = 0.8, ("precision", "recall", "coverage")
TARGET_SAMPLING_RATIO = 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", help="conditioning classifier run")
    parser.add_argument("--evaluator", required=True, help="independent evaluator run")
    parser.add_argument("--config", default="configs/diffusion_mnist.yaml")
    parser.add_argument("--minutes", type=float, default=20, help="training time of each model")
    parser.add_argument("--n", type=int, default=10000, help="our samples scored against as many test images")
    parser.add_argument("--baseline-n", type=int, default=1000, help="samples of each model in the comparison")
    parser.add_argument("--data", help="data source for the baseline (default: the config's data.source)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", required=True, help="where runs go (outside the repository)")
    parser.add_argument("--reuse", action="store_true", help="skip jobs whose outputs exist")
    parser.add_argument("--sweep", metavar="RUN", help="sweep guidance and solver steps of this trained run")
    parser.add_argument("--sweep-n", type=int, default=2000)
    parser.add_argument("--scales", default="0,1,2,4")
    parser.add_argument("--steps-list", default="10,20,50")
    parser.add_argument("--intervals", default="", help="guidance intervals to sweep at the run's guidance, e.g. "
                        "0.0-0.75,0.25-0.75 (fractions of T)")
    parser.add_argument("--guide", metavar="RUN", help="also sweep classifier guidance by this noise-aware guide run")
    parser.add_argument("--classifier-scales", default="1,2,4", help="with --guide; classifier-free guidance off (s = 1)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDE,OVERRIDE",
                        help="ablation: train each variant --minutes, score N on --real (no baseline)")
    parser.add_argument("--real", default="test", help="split the samples are scored against (ablation: val)")
    parser.add_argument("--out", help="results JSON to write")
    return parser.parse_args(argv)


# ---- the comparison ---------------------------------------------------------------------------------
def train_ours(args, root: Path, name: str = "ours", overrides: list[str] = ()) -> dict:
    command = [*VISREP, "train", "diffusion", "--config", args.config, "--name", name, f"run.root={root}",
               f"diffusion.conditioning_run={args.classifier}", f"train.max_minutes={args.minutes}",
               "train.steps=100000000", f"run.seed={args.seed}", f"diffusion.final_samples={args.n}",
               "train.sample_every=1000000", f"train.threads={args.threads}", *overrides]
    wall = run_logged(command, root / f"{name}.log", root / name / "metrics.json")
    metrics = json.loads((root / name / "metrics.json").read_text())
    return {"run": root / name, "command": " ".join(command[2:]), "wall_seconds": wall,
            "train_seconds": metrics["train_seconds"], "images_seen": metrics["images_seen"], "in_loop": True,
            "sampling_images_per_s": metrics["final_samples"] / metrics["sample_seconds"], "metrics": metrics}


def train_baseline(args, root: Path, data: str) -> dict:
    out = root / "ddpm"
    command = [sys.executable, "benchmarks/baseline_ddpm.py", "--data", data, "--seconds", str(60 * args.minutes),
               "--out", str(out), "--seed", str(args.seed), "--n", str(args.baseline_n), "--steps", "20",
               "--threads", str(args.threads), "--overwrite"]
    wall = run_logged(command, root / "ddpm.log", out / "baseline.json")
    info = json.loads((out / "baseline.json").read_text())
    return {"run": out, "command": " ".join(command[1:]), "wall_seconds": wall,
            "train_seconds": info["seconds_trained"], "images_seen": info["images_seen"], "in_loop": False,
            "sampling_images_per_s": info["sampling_images_per_s"], "baseline": info}


def score(args, run: Path, name: str, root: Path, n: int, real: str = "test", in_loop: bool = False) -> dict:
    command = [*VISREP, "evaluate", "generated", "--evaluator", args.evaluator, "--fake", str(run), "-n", str(n),
               "--real", real, "--no-cas", "--name", f"{name}-score", f"run.root={root}"]
    if in_loop:
        command.append("--in-loop")
    run_logged(command, root / f"{name}-score.log", root / f"{name}-score" / "metrics.json")
    return json.loads((root / f"{name}-score" / "metrics.json").read_text())


def comparison(args, root: Path) -> dict:
    ours = train_ours(args, root)
    scored = score(args, ours["run"], "ours", root, args.n, in_loop=True)
    main_rows = [row("ours", ours, scored) | _sampling(ours), floor_row(scored)]
    baseline = train_baseline(args, root, args.data or _config_source(args.config))
    ours_small = row("ours", ours, score(args, ours["run"], "ours-small", root, args.baseline_n)) | _sampling(ours)
    small_scored = score(args, baseline["run"], "ddpm", root, args.baseline_n)
    base = row(f"denoising-diffusion-pytorch {baseline['baseline']['version']}", baseline, small_scored) \
        | _sampling(baseline)
    return {"ours": ours, "baseline": baseline, "main_rows": main_rows,
            "small_rows": [ours_small, base, floor_row(small_scored)], "versus": versus_baseline(ours_small, base)}


def _sampling(trained: dict) -> dict:
    return {"sampling_images_per_s": round(trained["sampling_images_per_s"], 2)}


def _ratio(a, b, higher_better: bool) -> dict:
    """a ÷ b (None when b is 0), and whether a is strictly better than b."""
    return {"ratio": round(a / b, 3) if b else None, "better": bool(a > b if higher_better else a < b)}


def versus_baseline(ours: dict, base: dict) -> dict:
    """Ours ÷ the baseline at equal N: every metric (bench_gan.ratios), then training and sampling images/s."""
    found = ratios(ours, base)
    found["images_per_s"] = _ratio(ours["images_per_s"], base["images_per_s"], True)
    found["sampling_images_per_s"] = _ratio(ours["sampling_images_per_s"], base["sampling_images_per_s"], True)
    return found


def comparison_met(ours: dict, versus: dict) -> bool:
    """The comparison's goal on our main row (a missing figure counts as 0) and ``versus``: better on every
    metric (the speeds' rows aside) and sampling ≥ TARGET_SAMPLING_RATIO × the baseline's images/s."""
    better_everywhere = all(v["better"] for key, v in versus.items() if key in METRICS)
    fast = versus["sampling_images_per_s"]["ratio"] or 0
    return bool((ours.get("gan_test") or 0) >= TARGET_GAN_TEST
                and all((ours.get(k) or 0) >= TARGET_SPREAD for k in SPREAD_METRICS)
                and better_everywhere and fast >= TARGET_SAMPLING_RATIO)


# ---- the ablation ---------------------------------------------------------------------------------------
def ablation(args, root: Path) -> dict:
    rows, commands, scored = [], [], None
    for name, _, overrides in (item.partition("=") for item in args.variant):
        trained = train_ours(args, root, name, [o for o in overrides.split(",") if o])
        scored = score(args, trained["run"], name, root, args.n, real=args.real, in_loop=True)
        rows.append(row(name, trained, scored) | _sampling(trained))
        commands.append(trained["command"])
        if json.loads((trained["run"] / "generator.json").read_text())["conditioning"] == "embedding":
            sampled = bench_gan.sample_unconditionally(args, trained, name, root)
            rows.append(row(f"{name}, sampled embeddings", sampled,
                            score(args, sampled["run"], f"{name}-sampled", root, args.n, real=args.real)))
            commands.append(sampled["command"])
    return {"rows": rows + [floor_row(scored)], "commands": commands}


def ablation_record(args, found: dict) -> dict:
    return {"goal": "Diffusion ablation at equal training time (MNIST)", "issue": 22, "order": 93,
            "target": "none: each switch's effect at equal training time", "met": None,
            "headline": "; ".join(f"{r['model']}: GAN-test {r.get('gan_test')}, FID {r.get('fid')}"
                                  for r in found["rows"][:-1]),
            "host": machine_line(), "date": datetime.date.today().isoformat(), "commit": bench_gan._commit(),
            "source": "benchmarks/bench_diffusion.py --variant output",
            "command": ["python benchmarks/bench_diffusion.py " + " ".join(sys.argv[1:]), *found["commands"]],
            "seeds": {"diffusion": args.seed, "scoring": 0},
            "setup": (f"Each variant trains {args.minutes:g} min (training steps only) from configs/diffusion_mnist.yaml "
                      f"with its overrides, then its {args.n:,} final samples are scored against {args.n:,} "
                      f"{args.real} images. Embedding-conditional runs are scored twice: conditioned on random "
                      "training images (their final samples), and from sampled embeddings (RCG's unconditional "
                      "generation, `visrep sample RUN --n N`)."),
            "tables": [_table(f"Scored by the independent evaluator, N = {args.n:,} against {args.real}; "
                              f"{args.minutes:g} min of training each", found["rows"])],
            "notes": []}


# ---- the sweeps ---------------------------------------------------------------------------------------
def sweep(args, root: Path) -> dict:
    run = Path(args.sweep)
    points = [{"solver": "dpm++", "steps": 20, "guidance": float(s)} for s in args.scales.split(",")]
    points += [{"solver": x, "steps": int(k), "guidance": None} for x in ("ddim", "dpm++")
               for k in args.steps_list.split(",")]
    points += [{"solver": "dpm++", "steps": 20, "guidance": None, "interval": interval.split("-")}
               for interval in args.intervals.split(",") if interval]
    if args.guide:
        points += [{"solver": "dpm++", "steps": 20, "guidance": 1.0, "classifier_scale": float(c)}
                   for c in args.classifier_scales.split(",")]
    rows = []
    for point in points:
        name = f"{point['solver']}-{point['steps']}-g{point['guidance']}-c{point.get('classifier_scale', 0)}" + (
            f"-i{'-'.join(point['interval'])}" if point.get("interval") else "")
        name = name.replace("+", "p")
        out = root / name
        command = [*VISREP, "sample", str(run), "--n", str(args.sweep_n), "--seed", str(args.seed), "--out", str(out),
                   "--overwrite", "--solver", point["solver"], "--steps", str(point["steps"])]
        if point["guidance"] is not None:
            command += ["--guidance", str(point["guidance"])]
        if point.get("interval"):
            command += ["--guidance-interval", *point["interval"]]
        if point.get("classifier_scale"):
            command += ["--classifier-guidance", args.guide, "--classifier-scale", str(point["classifier_scale"])]
        seconds = run_logged(command, root / f"{name}.log", out / "samples.npz")
        scored = score(args, out, name, root, args.sweep_n, real="val")
        metrics = flat_metrics(scored["model"])
        rows.append({**point, "guidance": point["guidance"] if point["guidance"] is not None else "run's",
                     "classifier_scale": point.get("classifier_scale"),
                     "interval": "–".join(point["interval"]) if point.get("interval") else None,
                     "sampling_images_per_s": round(args.sweep_n / seconds, 2) if seconds else None,
                     **{key: _round(metrics.get(key)) for key in METRICS}})
    return {"rows": rows, "floor": floor_row(scored)}


def _round(value):
    return None if value is None else round(float(value), 4)


# ---- results ------------------------------------------------------------------------------------------
COLUMNS = [("model", "model"), ("train_seconds", "training s"), ("images_seen", "images seen"),
           ("images_per_s", "training img/s"), ("sampling_images_per_s", "sampling img/s (20 steps, guided)"),
           ("fid", "FID ↓"), ("kid", "KID ↓"), ("precision", "precision ↑"), ("recall", "recall ↑"),
           ("density", "density ↑"), ("coverage", "coverage ↑"), ("gan_test", "GAN-test ↑ (evaluator)"),
           ("gan_test_in_loop", "GAN-test (in-loop, optimistic)"), ("memorisation_flagged", "memorisation flagged")]


def _table(title: str, rows: list[dict], columns=COLUMNS) -> dict:
    return {"title": title, "columns": [{"key": k, "label": label} for k, label in columns
                                        if any(r.get(k) is not None for r in rows)],
            "rows": [{k: v for k, v in r.items() if k != "kid_std"} | (
                {"kid": {"mean": r["kid"], "std": r["kid_std"]}} if r.get("kid_std") is not None else {})
                     for r in rows]}


def comparison_record(args, found: dict) -> dict:
    ours = found["main_rows"][0]
    versus = found["versus"]
    wins = sum(v["better"] for key, v in versus.items() if key in METRICS)
    fast = versus["sampling_images_per_s"]["ratio"] or 0
    met = comparison_met(ours, versus)
    cfg = found["ours"]["metrics"]
    return {
        "goal": "Diffusion, class-conditional, MNIST: 20 min beside denoising-diffusion-pytorch", "issue": 22,
        "order": 90,
        "target": "GAN-test ≥ 0.99; precision, recall, coverage ≥ 0.8; FID/KID beside the floor; ≥ 20× the "
                  "baseline's sampling throughput at 20 guided steps; better on every metric at equal training time",
        "met": met,
        "headline": f"ours: GAN-test {ours.get('gan_test')}, precision {ours.get('precision')}, recall "
                    f"{ours.get('recall')}, coverage {ours.get('coverage')}, FID {ours.get('fid')}; "
                    f"{fast}× the baseline's sampling speed; better on {wins} of {len(METRICS)} metrics",
        "host": machine_line(), "date": datetime.date.today().isoformat(), "commit": bench_gan._commit(),
        "source": "benchmarks/bench_diffusion.py output",
        "command": ["python benchmarks/bench_diffusion.py " + " ".join(sys.argv[1:]), found["ours"]["command"],
                    found["baseline"]["command"]],
        "seeds": {"diffusion": args.seed, "scoring": 0},
        "setup": (f"Conditioning classifier {args.classifier}; independent evaluator {args.evaluator}. Each model "
                  f"trains {args.minutes:g} min (training steps only), one job at a time, in bf16 autocast on "
                  f"{args.threads} threads. Ours samples with {cfg.get('solver', cfg.get('sampler'))}, {cfg['sample_steps']} steps, "
                  f"guidance {cfg['guidance']}; the baseline with its DDIM at 20 steps and its default guidance "
                  f"(cond_scale 6, rescaled_phi 0.7)."),
        "tables": [
            _table(f"Ours, scored by the independent evaluator, N = {args.n:,} against the test split", found["main_rows"]),
            _table(f"Side by side at equal training time, N = {args.baseline_n:,} each (small N: FID is biased "
                   f"upwards for both, compare KID)", found["small_rows"]),
            {"title": "Ours ÷ baseline (better = ours wins on that figure)",
             "columns": [{"key": "figure", "label": "figure"}, {"key": "ratio", "label": "ours ÷ baseline"},
                         {"key": "better", "label": "ours better"}],
             "rows": [{"figure": key, "ratio": v["ratio"], "better": "yes" if v["better"] else "no"}
                      for key, v in versus.items()]}],
        "notes": []}


def sweep_record(args, found: dict) -> dict:
    columns = [("solver", "solver"), ("steps", "steps"), ("guidance", "guidance s"),
               ("sampling_images_per_s", "sampling img/s"), ("fid", "FID ↓"), ("kid", "KID ↓"),
               ("precision", "precision ↑"), ("recall", "recall ↑"), ("coverage", "coverage ↑"),
               ("gan_test", "GAN-test ↑")]
    guidance_rows = [r for r in found["rows"] if r["guidance"] != "run's" and not r.get("classifier_scale")]
    step_rows = [r for r in found["rows"] if r["guidance"] == "run's" and not r.get("interval")]
    interval_rows = [r for r in found["rows"] if r.get("interval")]
    guide_rows = [r for r in found["rows"] if r.get("classifier_scale")]
    return {"goal": "Diffusion, MNIST: guidance-scale and sampler-steps sweeps", "issue": 22, "order": 91,
            "target": "none: how guidance and steps trade quality for diversity and speed (validation split)",
            "met": None, "headline": "see the tables", "host": machine_line(),
            "date": datetime.date.today().isoformat(), "commit": bench_gan._commit(),
            "source": "benchmarks/bench_diffusion.py --sweep output",
            "command": ["python benchmarks/bench_diffusion.py " + " ".join(sys.argv[1:])],
            "seeds": {"sampling": args.seed, "scoring": 0},
            "setup": f"Run {args.sweep}; {args.sweep_n:,} samples per point scored against as many validation images.",
            "tables": [_table("Classifier-free guidance scale s (dpm++, 20 steps)", guidance_rows, columns),
                       _table("Sampler and steps (the run's guidance)", step_rows, columns)]
            + ([_table(f"Classifier guidance by the noise-aware guide {args.guide} (classifier-free guidance off, "
                       "dpm++, 20 steps)", guide_rows, [("classifier_scale", "classifier scale")] + columns[3:])]
               if guide_rows else [])
            + ([_table("Guidance interval (the run's guidance, dpm++, 20 steps; fractions of T)", interval_rows,
                       [("interval", "guided timesteps")] + columns[3:])] if interval_rows else [])
            + [_table("Real-vs-real floor", [found["floor"]])],
            "notes": []}


def _config_source(path: str) -> str:
    import yaml

    return yaml.safe_load((REPO / path).read_text() if not Path(path).is_absolute() else Path(path).read_text()
                          )["data"]["source"]


def main(argv=None) -> int:
    args = parse_args(argv)
    bench_gan.REUSE = args.reuse
    root = Path(args.root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        record = sweep_record(args, sweep(args, root))
    elif args.variant:
        record = ablation_record(args, ablation(args, root))
    else:
        if not args.classifier:
            raise SystemExit("error: --classifier is needed for the comparison")
        record = comparison_record(args, comparison(args, root))
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"benchmark took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
