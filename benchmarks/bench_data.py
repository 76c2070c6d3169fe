"""Data benchmark on CIFAR-10 (JPEG q75): cold prepare (scan + decode + cache), warm prepare
(cache hit), and images/s delivered to a training loop that does nothing.

Baseline in the same run: torchvision ImageFolder + DataLoader with RandomCrop(32, padding=2)
+ RandomHorizontalFlip, 0 workers (PIL decode and per-image transforms every epoch).

    python benchmarks/bench_data.py [--repeats 5] [--baseline-batches 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median_rate, report_json, timed, unpacked  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.data.dataset import BatchLoader  # noqa: E402
from visrep.data.prepare import prepare_data  # noqa: E402


def delivery_rate(loader, epochs: int) -> list[float]:
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for images, labels in loader:
            count += len(labels)
        rates.append(count / (time.perf_counter() - start))
    return rates


def torchvision_baseline(root: Path, batches: int, batch_size: int) -> float:
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([T.RandomCrop(32, padding=2, padding_mode="reflect"), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])
    loader = torch.utils.data.DataLoader(ImageFolder(str(root / "train"), transform), batch_size=batch_size,
                                         shuffle=True, num_workers=0)
    start, count = time.perf_counter(), 0
    for index, (images, labels) in enumerate(loader):
        count += len(labels)
        if index + 1 == batches:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per setting (median reported)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--baseline-batches", type=int, default=40)
    parser.add_argument("--out", default=None, help="write results JSON here")
    args = parser.parse_args()

    root = unpacked("cifar10")
    with tempfile.TemporaryDirectory() as cache:
        cfg = load_config("configs/cifar10.yaml", [f"data.source={root}", f"data.cache_dir={cache}"], schema=ClassifierConfig)
        _, cold = timed(prepare_data, cfg.data, progress=False)
        data, warm = timed(prepare_data, cfg.data, progress=False)
        results = {"machine": machine_line(), "train_images": len(data.splits["train"]),
                   "cold_prepare_s": cold, "warm_prepare_s": warm}
        for name, flip, translate in (("plain", False, 0), ("flip+translate2", True, 2)):
            loader = BatchLoader(data.splits["train"], args.batch_size, shuffle=True, flip=flip, translate=translate)
            results[f"in_memory_{name}_img_per_s"] = median_rate(delivery_rate(loader, args.repeats))
        streamed = prepare_data(load_config("configs/cifar10.yaml", [f"data.source={root}", f"data.cache_dir={cache}",
                                                                     "data.in_memory=false"], schema=ClassifierConfig).data, progress=False)
        rates = delivery_rate(BatchLoader(streamed.splits["train"], args.batch_size, shuffle=True, flip=True,
                                          translate=2), args.repeats)
        results["streamed_flip+translate2_img_per_s"] = median_rate(rates)
    results["torchvision_imagefolder_0_workers_img_per_s"] = torchvision_baseline(root, args.baseline_batches,
                                                                                   args.batch_size)
    results["speedup_vs_torchvision"] = results["in_memory_flip+translate2_img_per_s"] / results[
        "torchvision_imagefolder_0_workers_img_per_s"]
    report_json(results, args.out)


if __name__ == "__main__":
    main()
