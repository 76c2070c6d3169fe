"""Defaults on photo folders (issue 33): the README's first command against a small sweep, on val, 3 seeds.

    python benchmarks/bench_folder_defaults.py --out benchmarks/results/folder_defaults.json
    python benchmarks/bench_folder_defaults.py --folders flowers17 --variants defaults old-defaults
    python benchmarks/bench_folder_defaults.py --report-only --out benchmarks/results/folder_defaults.json

Each run is `visrep train classifier FOLDER` as a new user types it (no config: the defaults), or
with one sweep setting changed (batch size, epochs or learning rate, one at a time around the
defaults), on the shared photo archives: flowers17 (no splits: val and test carved with seed 0) and
clothing10 (its own train/validation/test). The figure is the best val accuracy of each run (the
checkpoint training keeps); the test split is not read. Every finished run is appended to
benchmarks/results/folder_defaults_runs.jsonl (committed), so the benchmark resumes where it stopped,
on any machine: one run at a time, in the background, across sittings. The verdict (defaults within 2 points of the sweep's best
mean over the seeds) is computed here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, report_json, unpacked  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.data.cache import DECODER_VERSION  # noqa: E402
from visrep.training.classifier import train_classifier  # noqa: E402

# every finished run, one JSON line each, committed with the results: the benchmark resumes on any machine
RUNS = Path(__file__).resolve().parent / "results" / "folder_defaults_runs.jsonl"
FOLDERS = ("flowers17", "clothing10")
SEEDS = (0, 1, 2)
MARGIN = 0.02  # the defaults must reach within 2 points of the sweep's best
# one setting changed at a time around the defaults: the derived batch and epochs halved and doubled (a batch
# variant keeps the derived-epochs rule, so it trains about as many steps as the defaults), two learning rates
VARIANTS = {"defaults": [], "old-defaults": ["data.batch_size=256", "train.epochs=10"],
            "batch-half": ["@batch_size=0.5"], "batch-double": ["@batch_size=2"],
            "epochs-half": ["@epochs=0.5"], "epochs-double": ["@epochs=2"],
            "lr0.02": ["train.lr=0.02"], "lr0.1": ["train.lr=0.1"]}


def folder_root(name: str) -> Path:
    root = unpacked(name)
    return root


SCALED = {"epochs": "train.epochs", "batch_size": "data.batch_size"}  # "@key=factor": the defaults' derived value × factor


def _scaled_override(name: str, item: str) -> str:
    """`@key=factor` → the derived value of this folder's defaults run, scaled (read from the recorded run)."""
    key, factor = item[1:].split("=")
    defaults = _cached(name, "defaults", 0)
    if defaults is None:
        raise RuntimeError("run the defaults first: the batch and epoch variants scale its derived values")
    return f"{SCALED[key]}={max(1, round(defaults[key] * float(factor)))}"


def overrides_for(name: str, variant: str) -> list[str]:
    return [_scaled_override(name, item) if item.startswith("@") else item for item in VARIANTS[variant]]


def finished_runs() -> list[dict]:
    """Every run recorded so far, in the order they finished."""
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.is_file() else []


def _cached(name: str, variant: str, seed: int) -> dict | None:
    """A finished run of this folder, variant and seed, decoded as the current code decodes (else None)."""
    return next((run for run in finished_runs() if (run["folder"], run["variant"], run["seed"]) == (name, variant, seed)
                 and run.get("decoder_version") == DECODER_VERSION), None)


def _record(result: dict) -> None:
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    with RUNS.open("a") as stream:
        stream.write(json.dumps(result) + "\n")


def run_once(name: str, variant: str, seed: int) -> dict:
    cached = _cached(name, variant, seed)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.source={folder_root(name)}", f"run.seed={seed}", f"run.root={tmp}", "run.name=run",
                     "train.tensorboard=false", *overrides_for(name, variant)]
        cfg = load_config(None, overrides, ClassifierConfig)
        started = time.perf_counter()
        run = train_classifier(cfg, progress=False)
        wall = time.perf_counter() - started
        metrics = json.loads((run / "metrics.json").read_text())
        saved = load_config(run / "config.yaml", schema=ClassifierConfig, check=False)
        result = {"folder": name, "variant": variant, "seed": seed, "val_acc": metrics["best_val_acc"],
                  "best_epoch": metrics["best_epoch"], "epochs": int(saved.train.epochs),
                  "batch_size": int(saved.data.batch_size), "lr": float(saved.train.lr),
                  "image_size": int(saved.data.image_size), "train_seconds": metrics["train_seconds"],
                  "wall_seconds": wall, "overrides": overrides_for(name, variant),
                  "decoder_version": DECODER_VERSION, "commit": _commit()}
    _record(result)
    return result


def _commit() -> str | None:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def summarise(results: list[dict], folders, variants) -> dict:
    rows, verdicts = [], {}
    for name in folders:
        means = {}
        for variant in variants:
            runs = [r for r in results if r["folder"] == name and r["variant"] == variant]
            if len(runs) < len(SEEDS):
                continue
            accs = [r["val_acc"] for r in runs]
            means[variant] = statistics.mean(accs)
            rows.append({"folder": name, "variant": variant, "batch": runs[0]["batch_size"],
                         "epochs": runs[0]["epochs"], "lr": runs[0]["lr"], "val_mean": round(means[variant], 4),
                         "val_std": round(statistics.stdev(accs), 4),
                         "train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1)})
        sweep = {v: m for v, m in means.items() if v != "old-defaults"}
        if set(means) == set(VARIANTS):  # a verdict only over the whole sweep: part of it could flatter the defaults
            best = max(sweep, key=sweep.get)
            verdicts[name] = {"defaults": round(sweep["defaults"], 4), "best": best, "best_val": round(sweep[best], 4),
                              "gap": round(sweep[best] - sweep["defaults"], 4),
                              "met": sweep[best] - sweep["defaults"] <= MARGIN,
                              "old_defaults": round(means["old-defaults"], 4) if "old-defaults" in means else None}
    return {"rows": rows, "verdicts": verdicts}


def results_json(summary: dict, seconds: float) -> dict:
    verdicts = summary["verdicts"]
    met = bool(verdicts) and all(v["met"] for v in verdicts.values()) and set(verdicts) == set(FOLDERS)
    headline = "; ".join(f"{name}: defaults {v['defaults']:.3f} val vs the sweep's best {v['best_val']:.3f} "
                         f"({v['best']}), old defaults {v['old_defaults']}" for name, v in verdicts.items())
    if not verdicts:  # the sweep has not finished: the before/after of the defaults alone
        means = {(row["folder"], row["variant"]): row["val_mean"] for row in summary["rows"]}
        headline = "; ".join(f"{name}: defaults {means[(name, 'defaults')]:.3f} val vs the old defaults "
                             f"{means[(name, 'old-defaults')]:.3f} (sweep unfinished)" for name in FOLDERS
                             if (name, "defaults") in means and (name, "old-defaults") in means)
    columns = [{"key": k, "label": k.replace("_", " ")} for k in
               ("folder", "variant", "batch", "epochs", "lr", "val_mean", "val_std", "train_seconds")]
    return {"goal": "Defaults on photo folders", "issue": 33, "order": 15,
            "target": "the README's first command (defaults) within 2 points of the best val accuracy of a small "
                      "sweep (batch, epochs, lr) on the same folder, over 3 seeds",
            "met": met if verdicts else None, "headline": headline or "not run yet",
            "met_note": None if verdicts else "no verdict until the whole sweep has run on both folders",
            "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": _commit(),
            "command": "python benchmarks/bench_folder_defaults.py --out benchmarks/results/folder_defaults.json",
            "seeds": list(SEEDS), "seconds": round(seconds, 1),
            "setup": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
            "tables": [{"title": "Best val accuracy, mean ± std over seeds 0-2", "columns": columns,
                        "rows": summary["rows"]}],
            "verdicts": verdicts, "history": [], "notes": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--out", help="write the results JSON here (from every recorded run)")
    parser.add_argument("--report-only", action="store_true", help="write --out from the recorded runs, train none")
    args = parser.parse_args()
    started = time.perf_counter()
    for variant in [] if args.report_only else args.variants:  # the defaults first: the epoch variants scale their derived epochs
        for name in args.folders:
            for seed in args.seeds:
                result = run_once(name, variant, seed)
                print(json.dumps({k: result[k] for k in ("folder", "variant", "seed", "val_acc", "epochs",
                                                         "batch_size", "train_seconds")}), flush=True)
    cached = [result for result in finished_runs() if result.get("decoder_version") == DECODER_VERSION]
    summary = summarise(cached, FOLDERS, list(VARIANTS))
    if args.out:
        report_json(results_json(summary, time.perf_counter() - started), args.out)


if __name__ == "__main__":
    main()
