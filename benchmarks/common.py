"""Helpers shared by the benchmarks: locate/unpack the real archives, time things, report."""

from __future__ import annotations

import statistics
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DATA_CACHE = Path.home() / ".cache" / "visrep-data"


def unpacked(name: str) -> Path:
    """Return ~/.cache/visrep-data/<name>, unpacking ../shared/data/<name>.tar.gz once if needed."""
    target = DATA_CACHE / name
    if not target.is_dir() or not any(child.is_dir() for child in target.iterdir()):  # flowers17 has no train/
        archive = SHARED_DATA / f"{name}.tar.gz"
        if not archive.is_file():
            raise SystemExit(f"missing {archive}: the benchmarks need the shared real-data archives")
        DATA_CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(DATA_CACHE, filter="data")
    return target


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def median_rate(samples: list[float]) -> float:
    return statistics.median(samples)


def machine_line() -> str:
    import os
    import platform

    import torch

    from visrep.hardware.cpu import read_cpu_info
    from visrep.runs import environment_info

    info, cpu = environment_info(), read_cpu_info()
    flags = ", ".join(cpu.flags) or "no flags of interest"
    return (f"{info['cpu']} ({flags}{'' if 'amx_bf16' in cpu.flags else ', no AMX'}), {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def commit() -> str | None:
    """The repository's short HEAD commit (what was measured), or None outside a git checkout."""
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def report_json(results: dict, out: str | None) -> None:
    """Print the results as JSON and, when ``out`` is given, write the same text there."""
    import json

    text = json.dumps(results, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)


def add_peer_arguments(parser, steps_help: str) -> None:
    """The arguments every peer baseline takes: the same data, clock, seed, threads, samples, batch, precision."""
    parser.add_argument("--data", required=True, help="data source (as data.source)")
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=1000, help="samples to write, class-balanced")
    parser.add_argument("--steps", type=int, default=20, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--config", default=str(REPO / "configs" / "mnist.yaml"))
    parser.add_argument("--overwrite", action="store_true")


def peer_output_folder(args) -> Path:
    """A peer's --out, refused when it exists unless --overwrite."""
    out = Path(args.out).expanduser()
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out} already exists (pass --overwrite)")
    return out


def write_peer_run(out: Path, samples, labels, description: str, record: dict, figures: dict, rate) -> None:
    """A peer's samples.npz and generator.json (what `visrep evaluate generated --fake` scores) and baseline.json
    (what it was given and what it did), then one summary line."""
    import json

    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", images=samples, labels=labels)
    (out / "generator.json").write_text(json.dumps({"conditioning_weights_sha256": [], "samples": "samples.npz",
                                                    "description": description}, indent=1) + "\n")
    (out / "baseline.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{figures['steps']} steps in {figures['seconds_trained']} s ({figures['train_images_per_s']} img/s); "
          f"{len(samples)} samples at {rate} img/s → {out}")


def recorded_runs(path: Path) -> list[dict]:
    """Every run a resumable benchmark recorded in its JSON-lines file, in the order they finished."""
    import json

    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def record_run(path: Path, result: dict) -> None:
    """Append one finished run (a line of JSON): a killed benchmark resumes from what it recorded."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write(json.dumps(result) + "\n")


def hosts_of(runs: list[dict]) -> str:
    """The machines recorded runs were measured on (each run keeps its own ``host``); this one when none says."""
    hosts = sorted({run["host"] for run in runs if run.get("host")})
    return "; ".join(hosts) or machine_line()
