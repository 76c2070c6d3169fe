"""Transfer to photo folders (issue 33): from scratch vs fine-tuned from visrep's own CIFAR-10 classifier.

    python benchmarks/bench_transfer.py --out benchmarks/results/transfer.json
    python benchmarks/bench_transfer.py --report-only --out benchmarks/results/transfer.json

No package in the registries this project can reach ships ImageNet weights, and nothing may download
at run time, so the "pretrained" file is a visrep run: fastcnn (the default widths) trained on
CIFAR-10's 49,000 training photos at 32 px for PRETRAIN_EPOCHS epochs (seed 0; its best.safetensors and
the sidecar that says its size and normalisation). On each shared photo folder (flowers17, clothing10)
the same architecture is then trained at 32 px, the weights' resolution, twice per seed: from scratch
with the README's first command (derived batch and epochs), and with model.pretrained_path set (the new
head trained alone for train.head_epochs, then everything with the backbone at 0.1× the rate). The
figure is each run's best val accuracy (the test split is not read). Runs are appended to
benchmarks/results/transfer_runs.jsonl (committed), so the benchmark resumes across sittings.
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
from common import commit, hosts_of, machine_line, record_run, recorded_runs, report_json, unpacked  # noqa: E402
from verdicts import transfer_met  # noqa: E402

from bench_folder_defaults import derived_epochs, train_images  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.data.batching import default_batch_size  # noqa: E402
from visrep.training.classifier import train_classifier  # noqa: E402

RUNS = Path(__file__).resolve().parent / "results" / "transfer_runs.jsonl"
PRETRAINED_RUN = Path.home() / ".cache" / "visrep-bench" / "transfer" / "cifar10-fastcnn"
PRETRAIN_EPOCHS = 5
FOLDERS = ("flowers17", "clothing10")
SEEDS = (0, 1, 2)
SIZE = 32  # the pretrained weights' resolution: both arms train at it
ARMS = ("scratch", "transfer")


def pretrained_file() -> Path:
    """The CIFAR-10 classifier's best weights, trained once and kept in the benchmark cache."""
    weights = PRETRAINED_RUN / "best.safetensors"
    if (PRETRAINED_RUN / "metrics.json").is_file():
        return weights
    overrides = [f"data.source={unpacked('cifar10')}", "data.val_fraction=0.02", f"data.image_size={SIZE}",
                 "data.channels=3", f"train.epochs={PRETRAIN_EPOCHS}", "run.seed=0", "train.tensorboard=false",
                 f"run.root={PRETRAINED_RUN.parent}", f"run.name={PRETRAINED_RUN.name}", "run.overwrite=true"]
    train_classifier(load_config(None, overrides, ClassifierConfig), progress=False)
    return weights


def finished_runs() -> list[dict]:
    return recorded_runs(RUNS)


def expected_schedule(folder: str) -> tuple[int, int]:
    """(batch, epochs) the current rules derive for the folder: a recorded run under other rules is not reused."""
    images = train_images(folder)
    batch = default_batch_size(images)[0]
    return batch, derived_epochs(images, batch)


def recorded(folder: str, arm: str, seed: int) -> dict | None:
    wanted = expected_schedule(folder)
    return next((r for r in finished_runs() if (r["folder"], r["arm"], r["seed"]) == (folder, arm, seed)
                 and (r["batch_size"], r["epochs"]) == wanted), None)


def run_once(folder: str, arm: str, seed: int) -> dict:
    done = recorded(folder, arm, seed)
    if done is not None:
        return done
    extra = [f"model.pretrained_path={pretrained_file()}"] if arm == "transfer" else []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.source={unpacked(folder)}", f"data.image_size={SIZE}", f"run.seed={seed}",
                     f"run.root={tmp}", "run.name=run", "train.tensorboard=false", *extra]
        cfg = load_config(None, overrides, ClassifierConfig)
        started = time.perf_counter()
        run = train_classifier(cfg, progress=False)
        metrics = json.loads((run / "metrics.json").read_text())
        saved = load_config(run / "config.yaml", schema=ClassifierConfig, check=False)
        result = {"folder": folder, "arm": arm, "seed": seed, "val_acc": metrics["best_val_acc"],
                  "best_epoch": metrics["best_epoch"], "epochs": int(saved.train.epochs),
                  "batch_size": int(saved.data.batch_size), "train_seconds": metrics["train_seconds"],
                  "wall_seconds": time.perf_counter() - started, "overrides": overrides[1:2] + extra,
                  "pretrained_val_acc": _pretrained_val() if arm == "transfer" else None, "commit": commit(),
                  "host": machine_line()}
    record_run(RUNS, result)
    return result


def _pretrained_val() -> float | None:
    path = PRETRAINED_RUN / "metrics.json"
    return json.loads(path.read_text()).get("best_val_acc") if path.is_file() else None


def _hosts() -> str:
    return hosts_of(finished_runs())


def summarise(results: list[dict]) -> dict:
    rows, gains = [], {}
    for folder in FOLDERS:
        means = {}
        for arm in ARMS:
            runs = [r for r in results if r["folder"] == folder and r["arm"] == arm]
            if len(runs) < len(SEEDS):
                continue
            accs = [r["val_acc"] for r in runs]
            means[arm] = statistics.mean(accs)
            rows.append({"folder": folder, "arm": arm, "batch": runs[0]["batch_size"], "epochs": runs[0]["epochs"],
                         "val_mean": round(means[arm], 4), "val_std": round(statistics.stdev(accs), 4),
                         "train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1)})
        if set(means) == set(ARMS):
            gains[folder] = round(means["transfer"] - means["scratch"], 4)
    return {"rows": rows, "gains": gains}


def results_json(summary: dict, seconds: float) -> dict:
    gains = summary["gains"]
    means = {(row["folder"], row["arm"]): row["val_mean"] for row in summary["rows"]}
    headline = "; ".join(f"{folder}: {means[(folder, 'scratch')]:.3f} from scratch vs {means[(folder, 'transfer')]:.3f} "
                         f"fine-tuned from the CIFAR-10 classifier ({gain:+.3f})" for folder, gain in gains.items())
    columns = [{"key": k, "label": k.replace("_", " ")} for k in
               ("folder", "arm", "batch", "epochs", "val_mean", "val_std", "train_seconds")]
    pretrained = _pretrained_val()
    return {"goal": "Transfer to photo folders", "issue": 33, "order": 16,
            "target": "report from-scratch vs transferred on the photo folders (no registry weights: visrep's own "
                      "CIFAR-10 classifier as the pretrained file)",
            "met": transfer_met(gains, FOLDERS), "headline": headline or "not run yet",
            "met_note": "reported (the issue sets no margin); met = both folders measured over 3 seeds",
            "host": _hosts(), "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/bench_transfer.py --out benchmarks/results/transfer.json",
            "seeds": list(SEEDS), "seconds": round(seconds, 1),
            "setup": __doc__.split("\n\n", 2)[2].strip().replace("\n", " ")
                     + (f" The pretrained CIFAR-10 classifier reached {pretrained:.4f} val." if pretrained else ""),
            "tables": [{"title": f"Best val accuracy at {SIZE} px, mean ± std over seeds 0-2", "columns": columns,
                        "rows": summary["rows"]}],
            "gains": gains, "history": ["notes/2026-12-07-photo-folders.md"], "notes": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--out", help="write the results JSON here (from every recorded run)")
    parser.add_argument("--report-only", action="store_true", help="write --out from the recorded runs, train none")
    args = parser.parse_args()
    started = time.perf_counter()
    for folder in [] if args.report_only else args.folders:
        for seed in args.seeds:
            for arm in ARMS:
                result = run_once(folder, arm, seed)
                print(json.dumps({k: result[k] for k in ("folder", "arm", "seed", "val_acc", "epochs")}), flush=True)
    if args.out:
        current = [run for folder in FOLDERS for seed in SEEDS for arm in ARMS
                   if (run := recorded(folder, arm, seed)) is not None]
        report_json(results_json(summarise(current), time.perf_counter() - started), args.out)


if __name__ == "__main__":
    main()
