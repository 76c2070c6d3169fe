"""Classifier benchmarks: test accuracy and training time per dataset, mean ± std over seeds.

    python benchmarks/bench_classifier.py digits  --seeds 0 1 2
    python benchmarks/bench_classifier.py mnist   --seeds 0 1 2
    python benchmarks/bench_classifier.py cifar10 --seeds 0 --resnet-baseline
    python benchmarks/bench_classifier.py generalise      # MNIST as 32 px RGB with the CIFAR config

Training time is the time inside training steps (no validation, no I/O), as recorded by the
trainer in metrics.json; wall time of the whole command is reported beside it. Hyper-parameters
were chosen on the validation split; the test split is only read here, once per run.
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
from common import REPO, machine_line, report_json, unpacked  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.evaluation.classifier_eval import evaluate_classifier  # noqa: E402
from visrep.training.classifier import train_classifier  # noqa: E402

CONFIGS = {"digits": "configs/digits.yaml", "mnist": "configs/mnist.yaml", "cifar10": "configs/cifar10.yaml"}


def run_once(config: str, seed: int, runs_root: Path, extra: list[str]) -> dict:
    overrides = [f"run.seed={seed}", f"run.root={runs_root}", f"run.name=seed{seed}", "train.tensorboard=false", *extra]
    cfg = load_config(REPO / config, overrides, schema=ClassifierConfig)
    started = time.perf_counter()
    run = train_classifier(cfg, progress=False)
    wall = time.perf_counter() - started
    trained = json.loads((run / "metrics.json").read_text())
    plain = evaluate_classifier(run, "test", tta_flip=False)
    result = {"seed": seed, "train_seconds": trained["train_seconds"], "train_wall_seconds": wall,
              "best_epoch": trained["best_epoch"], "val_acc": trained["best_val_acc"],
              "test_acc": plain["accuracy"], "test_macro_f1": plain["f1"]["macro"],
              "curve": [{"train_seconds": h["train_seconds"], "val_acc": h["val_acc"]}
                        for h in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]}
    if cfg.data.augment.flip:
        result["test_acc_tta_flip"] = evaluate_classifier(run, "test", tta_flip=True)["accuracy"]
    return result


def resnet18_throughput(batch_size: int = 256, steps: int = 5) -> float:
    """Training images/s of a plain fp32 torchvision ResNet-18 (random 32 px RGB batches)."""
    return _throughput("tv:resnet18", 3, 32, batch_size, steps, bf16=False, channels_last=False, options={})


def _throughput(name, channels, size, batch_size, steps, bf16, channels_last, options) -> float:
    import torch
    import torch.nn.functional as F

    from visrep.models import create_model

    model = create_model(name, 10, channels, size, **options)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(batch_size, channels, size, size).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch_size,))
    rates = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rates.append(batch_size / (time.perf_counter() - started))
    return statistics.median(rates[1:])  # the first step includes one-off kernel selection


def summarize(results: list[dict], key: str) -> str:
    values = [r[key] for r in results if key in r]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=[*CONFIGS, "generalise"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--resnet-baseline", action="store_true", help="also time a plain fp32 ResNet-18")
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()

    extra = list(args.overrides)
    config = CONFIGS.get(args.dataset, "configs/cifar10.yaml")
    if args.dataset in ("mnist", "cifar10"):
        extra.insert(0, f"data.source={unpacked(args.dataset)}")
    if args.dataset == "generalise":  # MNIST pixels through the CIFAR recipe, unchanged code
        extra = [f"data.source={unpacked('mnist')}", "data.image_size=32", "data.channels=3", "train.epochs=1", *extra]
    with tempfile.TemporaryDirectory() as runs_root:
        results = [run_once(config, seed, Path(runs_root), extra) for seed in args.seeds]
    report = {"dataset": args.dataset, "config": config, "overrides": extra, "machine": machine_line(),
              "runs": results, "test_acc": summarize(results, "test_acc"),
              "test_acc_tta_flip": summarize(results, "test_acc_tta_flip"),
              "train_seconds": summarize(results, "train_seconds")}
    if args.resnet_baseline:
        cfg = load_config(REPO / config, extra, schema=ClassifierConfig)
        ours = _throughput(cfg.model.name, 3, 32, cfg.data.batch_size, 5, bf16=cfg.train.precision == "bf16",
                           channels_last=cfg.train.channels_last, options=dict(cfg.model.options))
        baseline = resnet18_throughput()
        report.update({"ours_train_img_per_s": ours, "resnet18_fp32_train_img_per_s": baseline,
                       "speed_ratio_ours_over_resnet18": ours / baseline})
    report_json(report, args.out)


if __name__ == "__main__":
    main()
