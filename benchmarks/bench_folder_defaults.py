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
on any machine: one run at a time, in the background, across sittings. A run is matched to a variant by
what it trained with (batch, epochs, lr, decoder), so runs made before a change of the derivation rules count
for the variant that now has their settings. The verdict (defaults within 2 points of the sweep's best
mean over the seeds) is computed here.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import commit, hosts_of, machine_line, record_run, recorded_runs, report_json, unpacked  # noqa: E402
from verdicts import defaults_verdict, folder_defaults_met  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.data.batching import default_batch_size, steps_per_epoch  # noqa: E402
from visrep.data.cache import DECODER_VERSION  # noqa: E402
from visrep.training.defaults import default_epochs  # noqa: E402
from visrep.training.classifier import train_classifier  # noqa: E402

# every finished run, one JSON line each, committed with the results: the benchmark resumes on any machine
RUNS = Path(__file__).resolve().parent / "results" / "folder_defaults_runs.jsonl"
FOLDERS = ("flowers17", "clothing10")
SEEDS = (0, 1, 2)
DEFAULT_LR = 0.05  # the schema's train.lr
# one setting changed at a time around the defaults' derived batch B and epochs E (a batch variant re-derives
# the epochs for its batch, so it trains about as many steps as the defaults); (batch, epochs, lr) of each
VARIANTS = {
    "defaults": lambda n, b, e: (b, e, DEFAULT_LR),
    "old-defaults": lambda n, b, e: (256, 10, DEFAULT_LR),
    "batch-half": lambda n, b, e: (b // 2, derived_epochs(n, b // 2), DEFAULT_LR),
    "batch-double": lambda n, b, e: (2 * b, derived_epochs(n, 2 * b), DEFAULT_LR),
    "epochs-half": lambda n, b, e: (b, max(1, round(e / 2)), DEFAULT_LR),
    "epochs-double": lambda n, b, e: (b, 2 * e, DEFAULT_LR),
    "lr0.02": lambda n, b, e: (b, e, 0.02),
    "lr0.1": lambda n, b, e: (b, e, 0.1),
}


def folder_root(name: str) -> Path:
    return unpacked(name)


@functools.lru_cache(maxsize=None)
def train_images(name: str) -> int:
    """The folder's training split as the defaults run sees it (duplicates dropped, splits carved)."""
    from visrep.data.prepare import prepare_data

    cfg = load_config(None, [f"data.source={folder_root(name)}"], ClassifierConfig)
    return len(prepare_data(cfg.data, progress=False).splits["train"])


def derived_epochs(images: int, batch: int) -> int:
    return default_epochs(steps_per_epoch(images, batch))[0]


def settings(name: str, variant: str) -> tuple[int, int, float]:
    """(batch, epochs, lr) of a variant on a folder, around what the current rules derive for it."""
    images = train_images(name)
    batch = default_batch_size(images)[0]
    return VARIANTS[variant](images, batch, derived_epochs(images, batch))


def overrides_for(name: str, variant: str) -> list[str]:
    """The defaults run as the README's first command (nothing set); every other variant sets all three."""
    if variant == "defaults":
        return []
    batch, epochs, lr = settings(name, variant)
    return [f"data.batch_size={batch}", f"train.epochs={epochs}", f"train.lr={lr}"]


def finished_runs() -> list[dict]:
    """Every run recorded so far, in the order they finished."""
    return recorded_runs(RUNS)


def _cached(name: str, variant: str, seed: int) -> dict | None:
    """A finished run of this folder and seed with this variant's batch, epochs and lr, decoded as the current
    code decodes (else None). Runs are matched by what they trained with, not by the variant's name: when the
    derivation rules change, a run with the same settings is the same run (training is deterministic)."""
    wanted = settings(name, variant)
    for run in finished_runs():
        if (run["folder"], run["seed"]) == (name, seed) and run.get("decoder_version") == DECODER_VERSION \
                and (run["batch_size"], run["epochs"], run["lr"]) == wanted:
            return {**run, "variant": variant}
    return None


def run_once(name: str, variant: str, seed: int, threads: int | None = None) -> dict:
    cached = _cached(name, variant, seed)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.source={folder_root(name)}", f"run.seed={seed}", f"run.root={tmp}", "run.name=run",
                     "train.tensorboard=false", *overrides_for(name, variant)]
        if threads:
            overrides.append(f"train.threads={threads}")
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
                  "decoder_version": DECODER_VERSION, "commit": commit(), "host": machine_line()}
    record_run(RUNS, result)
    return result


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
        if set(means) == set(VARIANTS):  # a verdict only over the whole sweep: part of it could flatter the defaults
            verdicts[name] = defaults_verdict(means)  # within verdicts.DEFAULTS_MARGIN of the sweep's best
    return {"rows": rows, "verdicts": verdicts}


def results_json(summary: dict, seconds: float) -> dict:
    verdicts = summary["verdicts"]
    met = folder_defaults_met(verdicts, FOLDERS)  # None until a folder has its whole sweep
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
            "met": met, "headline": headline or "not run yet",
            "met_note": None if verdicts else "no verdict until the whole sweep has run on both folders",
            "host": hosts_of(finished_runs()), "date": time.strftime("%Y-%m-%d"), "commit": commit(),
            "command": "python benchmarks/bench_folder_defaults.py --out benchmarks/results/folder_defaults.json",
            "seeds": list(SEEDS), "seconds": round(seconds, 1),
            "setup": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
            "tables": [{"title": "Best val accuracy, mean ± std over seeds 0-2", "columns": columns,
                        "rows": summary["rows"]}],
            "verdicts": verdicts, "history": ["notes/2026-12-07-photo-folders.md"], "notes": _rule_notes(summary["rows"])}


FIRST_RULE = (400, 10, 40)  # the first derivation: at least 400 optimizer steps, within 10-40 epochs


def _first_rule_epochs(name: str) -> int:
    images = train_images(name)
    steps = steps_per_epoch(images, default_batch_size(images)[0])
    least, low, high = FIRST_RULE
    return min(high, max(low, -(-least // steps)))


def _rule_notes(rows: list[dict]) -> list[str]:
    """How the step rule was chosen, for each folder where the first rule's epochs are the epochs-half row's."""
    means = {(row["folder"], row["variant"]): row for row in rows}
    changes = [f"{name} {means[(name, 'epochs-half')]['val_mean']:.3f} → {means[(name, 'defaults')]['val_mean']:.3f}"
               for name in FOLDERS if (name, "epochs-half") in means and (name, "defaults") in means
               and means[(name, "epochs-half")]["epochs"] == _first_rule_epochs(name)]
    if not changes:
        return []
    return [f"The first derivation asked for {FIRST_RULE[0]} optimizer steps within {FIRST_RULE[1]}-{FIRST_RULE[2]} "
            "epochs: on these folders that is the epochs-half row. Its own sweep's epochs-double runs beat it by more "
            "than 2 points, so the rule became the current one (the former epochs-double settings, now the "
            "defaults): " + "; ".join(changes) + "."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--out", help="write the results JSON here (from every recorded run)")
    parser.add_argument("--report-only", action="store_true", help="write --out from the recorded runs, train none")
    parser.add_argument("--threads", type=int, help="train.threads of every run (default: the free cores)")
    args = parser.parse_args()
    started = time.perf_counter()
    for variant in [] if args.report_only else args.variants:  # the defaults first: the epoch variants scale their derived epochs
        for name in args.folders:
            for seed in args.seeds:
                result = run_once(name, variant, seed, args.threads)
                print(json.dumps({k: result[k] for k in ("folder", "variant", "seed", "val_acc", "epochs",
                                                         "batch_size", "train_seconds")}), flush=True)
    recorded = [run for name in FOLDERS for variant in VARIANTS for seed in SEEDS
                if (run := _cached(name, variant, seed)) is not None]
    summary = summarise(recorded, FOLDERS, list(VARIANTS))
    if args.out:
        report_json(results_json(summary, time.perf_counter() - started), args.out)


if __name__ == "__main__":
    main()
