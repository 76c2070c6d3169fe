"""Embedding-stage benchmark: the per-layer table and extraction throughput on MNIST / CIFAR-10.

    python benchmarks/bench_embeddings.py mnist                      # train a small CNN, embed 5 layers, analyse
    python benchmarks/bench_embeddings.py mnist --classifier RUN     # reuse a trained classifier run
    python benchmarks/bench_embeddings.py cifar10 --throughput-only  # images/s only (untrained weights)
    python benchmarks/bench_embeddings.py cifar10 --throughput-only --synthetic 50000 --device cuda

Writes a Markdown section (appended to --out) with the command, the machine, the classifier's own
test accuracy, the per-layer table (kNN / linear probe / silhouette / dimensionality), the gap
between the penultimate probe and the classifier, and extraction throughput on the train split:
bf16 vs fp32, penultimate only vs every layer in one pass, median and best of --repeats passes
after one warm-up pass (best-of is the steadier figure on a shared machine).
Throughput does not depend on the weights, so --throughput-only times a randomly initialised
model of the same architecture. The maps and retrieval grids are copied to --figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, unpacked  # noqa: E402

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from visrep.config import ClassifierConfig, EmbedConfig, load_config  # noqa: E402
from visrep.data.dataset import BatchLoader, ImageSplit  # noqa: E402
from visrep.data.prepare import prepare_data  # noqa: E402
from visrep.data.transforms import Normalization  # noqa: E402
from visrep.embeddings import embed_classifier_run  # noqa: E402
from visrep.representations.extract import extract_features, resolve_layers  # noqa: E402
from visrep.embeddings.report import format_table  # noqa: E402
from visrep.representations.store import read_json  # noqa: E402
from visrep.models import create_model  # noqa: E402
from visrep.training.classifier import build_classifier, train_classifier  # noqa: E402

CONFIGS = {"mnist": "configs/mnist.yaml", "cifar10": "configs/cifar10.yaml"}
# A classifier that trains in a few minutes on 2 CPU cores and reaches ≈99.4 % val accuracy on MNIST.
SMALL_CNN = ["model.options.widths=[32,64,128]", "train.epochs=3", "train.tensorboard=false"]


def train_small_classifier(dataset: str, runs_root: Path, extra: list[str]) -> Path:
    overrides = [f"data.source={unpacked(dataset)}", f"run.root={runs_root}", f"run.name={dataset}-classifier",
                 "run.overwrite=true", *SMALL_CNN, *extra]
    cfg = load_config(REPO / CONFIGS[dataset], overrides, schema=ClassifierConfig)
    started = time.perf_counter()
    run = train_classifier(cfg, progress=False)
    print(f"trained {run} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run


def embed_and_analyse(run: Path, layers: str, extra: list[str]) -> tuple[Path, float]:
    cfg = load_config(overrides=[f"embed.layers=[{layers}]", "embed.overwrite=true", *extra], schema=EmbedConfig)
    started = time.perf_counter()
    out = embed_classifier_run(run, cfg, progress=False)
    return out, time.perf_counter() - started


def throughput(dataset: str, run: Path | None, layers: str, repeats: int, batch_size: int,
               train_overrides: list[str], synthetic: int = 0, device: str = "auto") -> list[dict]:
    """Median and best images/s of extraction passes over the train split (data loading included)."""
    split, model = _timing_inputs(dataset, run, train_overrides, synthetic)
    target = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = model.eval().to(target).to(memory_format=torch.channels_last)
    loader = BatchLoader(split, batch_size, channels_last=True)
    rows = []
    for names in (["penultimate"], resolve_layers(model, layers.split(","))):
        for precision in ("bf16", "fp32"):
            rates = [extract_features(model, loader, names, precision=precision, progress=False).images_per_s
                     for _ in range(repeats + 1)][1:]  # the first pass warms up the kernels: not counted
            rows.append({"layers": ",".join(names), "precision": precision, "images": len(split),
                         "images_per_s": statistics.median(rates), "best_images_per_s": max(rates),
                         "repeats": repeats, "load_average_1min": os.getloadavg()[0], "device": _device_name(target),
                         "synthetic": bool(synthetic)})
    return rows


def _timing_inputs(dataset: str, run: Path | None, train_overrides: list[str], synthetic: int):
    """(train ImageSplit, untrained model of the run's / small config's architecture).

    Without a run, every train image is timed (val_fraction=0: CIFAR-10's full 50k, MNIST's 60k);
    ``synthetic`` > 0 times that many random images of the dataset's shape instead (no files needed).
    """
    if run is not None:
        cfg = load_config(run / "config.yaml", schema=ClassifierConfig)
    else:
        source = [] if synthetic else [f"data.source={unpacked(dataset)}"]
        cfg = load_config(REPO / CONFIGS[dataset], [*source, "data.val_fraction=0", *SMALL_CNN, *train_overrides],
                          schema=ClassifierConfig)
    if not synthetic:
        data = prepare_data(cfg.data, progress=False)
        return data.splits["train"], build_classifier(cfg, data)
    shape = (cfg.data.channels or 3, cfg.data.image_size, cfg.data.image_size)
    images = torch.randint(0, 256, (synthetic, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = ImageSplit(images, (torch.arange(synthetic) % 10).numpy(), [str(i) for i in range(synthetic)],
                       [str(k) for k in range(10)], Normalization((0.5,) * shape[0], (0.25,) * shape[0]))
    options = OmegaConf.to_container(cfg.model.options, resolve=True)
    return split, create_model(cfg.model.name, num_classes=10, in_channels=shape[0], image_size=shape[1], **options)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def markdown(dataset: str, command: str, run: Path | None, out: Path | None, wall: float | None,
             rows: list[dict]) -> str:
    lines = [f"### Embeddings — {dataset}", "", f"`{command}`", "", f"Machine: {machine_line()}", ""]
    if out is not None:
        table = read_json(out / "analysis.json")
        summary = read_json(out / "embed.json")
        lines += [format_table(table), ""]
        head = summary["head_accuracy"].get("test")
        probe = next((row["probe"]["test"] for row in table["layers"] if row["layer"] == "penultimate"), None)
        if head is not None and probe is not None:
            lines.append(f"Penultimate linear probe vs the classifier's own test accuracy: {100 * probe:.2f} vs "
                         f"{100 * head:.2f} ({100 * (probe - head):+.2f} points).")
        timing = summary["extraction"].get("train", {})
        lines.append(f"`visrep embed` pass over train ({timing.get('images')} images, {len(summary['layers'])} layers, "
                     f"{summary['precision']}): {timing.get('images_per_s')} images/s; extraction + statistics + "
                     f"analysis took {wall:.0f} s in all. Run: {run}.")
        lines.append("")
    if rows:
        lines += ["| device | layers tapped | precision | train images | images/s (median) | images/s (best) | load avg |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {row['device']} | {row['layers']} | {row['precision']} | {row['images']}"
                  f"{' (random)' if row['synthetic'] else ''} | {row['images_per_s']:.0f} | "
                  f"{row['best_images_per_s']:.0f} | {row['load_average_1min']:.1f} |" for row in rows]
        lines.append(f"{rows[0]['repeats']} timed passes per row after one warm-up pass; load avg = 1-minute load "
                     f"average of the machine ({os.cpu_count()} cores) after the row's passes.")
        lines.append("")
    return "\n".join(lines) + "\n"


def copy_figures(out: Path, dataset: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for layer_dir in sorted(path for path in out.iterdir() if path.is_dir()):
        for name in ("map.png", "retrieval.png"):
            if (layer_dir / name).is_file():
                shutil.copy(layer_dir / name, target / f"{dataset}-{layer_dir.name}-{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(CONFIGS))
    parser.add_argument("--classifier", type=Path, help="a trained classifier run (default: train a small one)")
    parser.add_argument("--layers", default="stem,stage1,stage2,stage3,penultimate")
    parser.add_argument("--runs-root", type=Path, default=REPO / "runs" / "bench-embeddings")
    parser.add_argument("--throughput-only", action="store_true", help="no training, no table: images/s only")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput passes")
    parser.add_argument("--repeats", type=int, default=3, help="throughput passes per setting (median)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="throughput on N random images of the dataset's shape (no data files needed)")
    parser.add_argument("--device", default="auto", help="throughput device: auto (cuda if present) | cpu | cuda")
    parser.add_argument("--train", nargs="*", default=[], help="extra dotted overrides for the classifier")
    parser.add_argument("--embed", nargs="*", default=[], help="extra dotted overrides (embed.*, analysis.*)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/embeddings_results.md"), help="Markdown, appended")
    parser.add_argument("--figures", type=Path, default=Path("/tmp/embeddings_figures"))
    args = parser.parse_args()

    run, out, wall = args.classifier, None, None
    if not args.throughput_only:
        run = run or train_small_classifier(args.dataset, args.runs_root, args.train)
        out, wall = embed_and_analyse(run, args.layers, args.embed)
        copy_figures(out, args.dataset, args.figures)
    rows = [] if args.no_throughput else throughput(args.dataset, run, args.layers, args.repeats, args.batch_size,
                                                     args.train, args.synthetic, args.device)
    command = "python benchmarks/bench_embeddings.py " + " ".join(sys.argv[1:])
    text = markdown(args.dataset, command, run, out, wall, rows)
    with open(args.out, "a") as stream:
        stream.write(text + "\n")
    print(text)
    print(json.dumps(rows, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
