"""Old defaults vs ``precision: auto`` + the thread policy, idle and beside a busy process.

    python benchmarks/bench_cpu_policy.py digits --repeats 3 --emulate-no-bf16 --out digits.json
    python benchmarks/bench_cpu_policy.py --merge digits.json mnist.json --out benchmarks/results/cpu_policy.json

Each case is the whole command a user types (``visrep train classifier --config ...``) in a fresh
process, timed wall-clock from start to exit; the trainer's own seconds inside training steps
and the best val accuracy come from the run's metrics.json. Cases are interleaved (every case
once, then again) so that the host's drift spreads over all of them; the median is reported.

Variants:
  old defaults   train.precision=bf16 and every core (what visrep did before ``auto``)
  auto           the defaults now: precision auto, threads from the free cores
  fp32           train.precision=fp32 with the thread policy
  passive        auto with OMP_WAIT_POLICY=PASSIVE (the wait policy the issue suggested)
Conditions: idle, or with one busy process beside it (``python -c "while True: pass"``).
Hosts: this CPU as it is, and (``--emulate-no-bf16``) the same CPU with torch and oneDNN capped
at AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2), which is how a CPU without native
bf16 (AMD Zen 3, older Intel) executes: bf16 then runs emulated.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, report_json, unpacked  # noqa: E402

CONFIGS = {"digits": "configs/digits.yaml", "mnist": "configs/mnist.yaml"}
NO_BF16_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
VARIANTS = {  # name → (environment, overrides)
    "old defaults": ({"VISREP_THREADS": str(len(os.sched_getaffinity(0)))}, ["train.precision=bf16"]),
    "auto": ({}, []),
    "fp32": ({}, ["train.precision=fp32"]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
}


@contextmanager
def busy_process(enabled: bool):
    """One process spinning on a core for as long as the block runs."""
    if not enabled:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)  # let it show up in the load that visrep samples at start-up
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run_case(dataset: str, variant: str, busy: bool, emulate: bool, root: Path, timeout: float) -> dict:
    env_extra, overrides = VARIANTS[variant]
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "VISREP_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_extra, **(NO_BF16_ENV if emulate else {}))
    name = f"{dataset}-{variant.replace(' ', '_')}-{'busy' if busy else 'idle'}-{'avx2' if emulate else 'native'}"
    command = [sys.executable, "-m", "visrep.cli", "train", "classifier", "--config", str(REPO / CONFIGS[dataset]),
               f"run.root={root}", f"run.name={name}", "run.overwrite=true", "train.tensorboard=false",
               *_data_overrides(dataset), *overrides]
    with busy_process(busy):
        started = time.perf_counter()
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        wall = time.perf_counter() - started
    result = {"dataset": dataset, "variant": variant, "busy": busy, "emulated_no_bf16": emulate,
              "wall_seconds": wall, "timed_out": timed_out}
    if not timed_out:
        metrics = json.loads((root / name / "metrics.json").read_text())
        compute = json.loads((root / name / "compute.json").read_text())
        result.update(train_seconds=metrics["train_seconds"], best_val_acc=metrics["best_val_acc"],
                      precision=compute["precision"]["precision"], threads=compute["threads"]["torch_threads"])
    print(json.dumps(result), flush=True)
    return result


def _data_overrides(dataset: str) -> list[str]:
    return [f"data.source={unpacked('mnist')}"] if dataset == "mnist" else []


def summarise(results: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        key = (result["dataset"], result["emulated_no_bf16"], result["variant"], result["busy"])
        groups.setdefault(key, []).append(result)
    rows = []
    for (dataset, emulate, variant, busy), runs in groups.items():
        finished = [r for r in runs if not r["timed_out"]]
        rows.append({"dataset": dataset, "emulated_no_bf16": emulate, "variant": variant, "busy": busy,
                     "runs": len(runs), "timed_out": len(runs) - len(finished),
                     "median_wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
                     "median_train_seconds": statistics.median(r["train_seconds"] for r in finished) if finished else None,
                     "precision": finished[0]["precision"] if finished else None,
                     "threads": sorted({r["threads"] for r in finished}),
                     "val_acc": [r["best_val_acc"] for r in finished]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(sorted(CONFIGS))}")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="merge earlier runs' JSON into one (--out)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["old defaults", "auto"], choices=sorted(VARIANTS))
    parser.add_argument("--conditions", nargs="+", default=["idle", "busy"], choices=["idle", "busy"])
    parser.add_argument("--emulate-no-bf16", action="store_true", help="also run every case capped at AVX2")
    parser.add_argument("--only-emulated", action="store_true", help="run the AVX2-capped cases only")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a case counts as timed out")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    if args.merge:
        report_json(merge([json.loads(Path(path).read_text()) for path in args.merge]), args.out)
        return
    if not args.datasets or set(args.datasets) - set(CONFIGS):
        parser.error(f"name datasets among {', '.join(sorted(CONFIGS))} (or --merge)")
    hosts = [True] if args.only_emulated else ([False, True] if args.emulate_no_bf16 else [False])
    cases = [(d, v, c == "busy", e) for d in args.datasets for e in hosts for c in args.conditions
             for v in args.variants]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:  # untimed: decode the data into the cache once
            run_case(dataset, "auto", False, False, Path(tmp), args.timeout)
        for _ in range(args.repeats):
            results += [run_case(*case, Path(tmp), args.timeout) for case in cases]
    report_json({"machine": machine_line(), "cpu_flags": _cpu_flags(), "command": sys.argv,
                 "commit": _commit(), "date": time.strftime("%Y-%m-%d"), "rows": summarise(results),
                 "runs": results}, args.out)


def merge(docs: list[dict]) -> dict:
    """One document from runs made in one sitting: their rows and runs together, each command kept."""
    commands = [shlex.join(["python", *_without_out([_relative(arg) for arg in doc["command"]])]) for doc in docs]
    commands.append(shlex.join(["python", "benchmarks/bench_cpu_policy.py", "--merge", "<the JSON of each run>",
                                "--out", "benchmarks/results/cpu_policy.json"]))
    runs = [run for doc in docs for run in doc["runs"]]
    return {"machine": docs[0]["machine"], "cpu_flags": docs[0]["cpu_flags"], "commands": commands,
            "commit": docs[0]["commit"], "date": docs[0]["date"], "rows": summarise(runs), "runs": runs}


def _without_out(argv: list[str]) -> list[str]:
    """The command as recorded, less its ``--out FILE`` (each run's JSON went to a scratch file)."""
    if "--out" not in argv:
        return argv
    at = argv.index("--out")
    return argv[:at] + argv[at + 2:]


def _relative(arg: str) -> str:
    path = Path(arg)
    return str(path.relative_to(REPO)) if path.is_absolute() and REPO in path.parents else arg


def _cpu_flags() -> dict:
    from visrep.hardware.cpu import read_cpu_info

    return read_cpu_info().to_dict()


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
