"""Training throughput from 1 to 2 processes (torchrun + DDP, gloo) on this machine, per training loop.

For each loop (classifier, GAN, diffusion on MNIST) and each layout, in turn, one job at a time:

* 1 process × 1 thread, global batch B;
* 2 processes × 1 thread each (torchrun --nproc_per_node=2), batch B/2 each: the same global batch;
* 1 process × 2 threads, batch B: the other way to use both cores (intra-op threads).

Throughput is the loop's own count of training images per second of training steps, read from
metrics.jsonl after the first record (the start-up steps are left out): the classifier's last epoch,
a step loop's images between its last two records over their seconds. Each layout runs ``--repeats``
times (interleaved), and the median is reported. Writes a results JSON in the goal schema of
benchmarks/make_results.py.

    python benchmarks/bench_ddp_scaling.py --root /tmp/ddp-bench --out benchmarks/results/ddp_scaling.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import REPO, machine_line, unpacked

LAYOUTS = {"1 process × 1 thread": (1, 1), "2 processes × 1 thread": (2, 1), "1 process × 2 threads": (1, 2)}
LOOPS = {  # config, global batch, overrides making a short run with at least two records
    "classifier": ("mnist.yaml", 512, ["train.epochs=2", "data.augment.low_res_epochs=0"]),
    "gan": ("gan_mnist.yaml", 64, ["train.steps=120", "train.log_every=40", "gan.final_samples=0",
                                   "train.sample_every=100000", "train.checkpoint_every=100000"]),
    "diffusion": ("diffusion_mnist.yaml", 128, ["train.steps=120", "train.log_every=40", "diffusion.final_samples=0",
                                                "train.sample_every=100000", "train.checkpoint_every=100000"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="where runs go (outside the repository)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", default="classifier,gan,diffusion")
    parser.add_argument("--out", help="results JSON to write")
    return parser.parse_args(argv)


def command(loop: str, processes: int, threads: int, root: Path, name: str, classifier: Path | None) -> list[str]:
    config, batch, overrides = LOOPS[loop]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    conditioning = [f"{loop}.conditioning_run={classifier}"] if loop != "classifier" else []
    return [*launcher, "-m", "visrep", "train", loop, "--config", str(REPO / "configs" / config),
            f"run.root={root}", f"run.name={name}", f"data.batch_size={batch // processes}",
            f"train.threads={threads}", "train.tensorboard=false", *conditioning, *overrides]


def throughput(run: Path, loop: str) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if loop == "classifier":
        return float(records[-1]["images_per_s"])
    first, last = records[-2], records[-1]
    return (last["images_seen"] - first["images_seen"]) / (last["train_seconds"] - first["train_seconds"])


def run_one(argv: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{result.stderr[-3000:]}")


def measure(args) -> dict:
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    unpacked("mnist")
    classifier = root / "classifier-conditioning"
    if not (classifier / "metrics.json").is_file():
        run_one(command("classifier", 1, 2, root, classifier.name, None), 2)
    rates: dict[str, dict[str, list[float]]] = {}
    for repeat in range(args.repeats):
        for loop in args.loops.split(","):
            for layout, (processes, threads) in LAYOUTS.items():
                name = f"{loop}-p{processes}-t{threads}-r{repeat}"
                run_one(command(loop, processes, threads, root, name, classifier), threads)
                rates.setdefault(loop, {}).setdefault(layout, []).append(throughput(root / name, loop))
                print(f"{name}: {rates[loop][layout][-1]:.0f} img/s", flush=True)
    return rates


def results_json(rates: dict, args) -> dict:
    rows = []
    for loop, by_layout in rates.items():
        base = statistics.median(by_layout["1 process × 1 thread"])
        for layout, values in by_layout.items():
            median = statistics.median(values)
            rows.append({"loop": loop, "layout": layout, "images_per_s": round(median, 1),
                         "runs": ", ".join(f"{value:.0f}" for value in values),
                         "speedup": round(median / base, 2), "_strong": layout.startswith("2 processes")})
    two = {row["loop"]: row["speedup"] for row in rows if row["layout"].startswith("2 processes")}
    threads = {row["loop"]: row["speedup"] for row in rows if row["layout"] == "1 process × 2 threads"}
    headline = "; ".join(f"{loop} {two[loop]}× with 2 processes (2 threads in 1 process: {threads[loop]}×)"
                         for loop in two)
    return {
        "goal": "Scaling out: training images/s from 1 to 2 processes (issue 24)", "issue": 24, "order": 96,
        "target": "report the scaling of training images/s from 1 to 2 processes on this 2-core machine "
                  "(each process one thread), with what it says and what it does not",
        "met": None, "headline": headline, "host": machine_line(),
        "date": datetime.date.today().isoformat(), "commit": None,
        "source": "benchmarks/bench_ddp_scaling.py output (run directories under --root, outside the repository)",
        "command": f"python benchmarks/bench_ddp_scaling.py --root runs/ddp-bench --repeats {args.repeats}",
        "seeds": {"every run": 0},
        "setup": "MNIST (28 px). classifier: configs/mnist.yaml, global batch 512, 2 epochs at full size, the "
                 "second epoch's images/s; GAN: configs/gan_mnist.yaml, global batch 64, 120 steps; diffusion: "
                 "configs/diffusion_mnist.yaml, global batch 128, 120 steps; a step loop's rate is its images "
                 "between the records at steps 80 and 120 over their training seconds. 2 processes: torchrun "
                 "--standalone --nproc_per_node=2, gloo, half the batch each (the same global batch).",
        "tables": [{"title": "Training images/s (median of the runs), by layout of the 2 cores",
                    "columns": [{"key": "loop", "label": "loop"}, {"key": "layout", "label": "layout"},
                                {"key": "images_per_s", "label": "images/s"},
                                {"key": "speedup", "label": "× 1 process, 1 thread"},
                                {"key": "runs", "label": "each run"}],
                    "rows": rows}],
        "notes": ["What it says: on one 2-core machine, DDP's second process adds the second core's work to the "
                  "first's minus the gloo all-reduce of every step's gradients (and, for the GAN, of two models "
                  "and a few scalars per step). What it does not say: how it scales on GPUs or across machines "
                  "(NCCL, network, larger models), which this machine cannot measure; nor is 2 processes the "
                  "best use of 2 cores here when intra-op threads do as well (the third layout)."],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    rates = measure(args)
    document = results_json(rates, args)
    if args.out:
        Path(args.out).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(document["tables"][0]["rows"], indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
