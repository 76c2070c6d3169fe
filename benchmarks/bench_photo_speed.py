"""Training speed at photo sizes (issue 33): images/s and model-FLOP utilisation, side by side in one run.

    python benchmarks/bench_photo_speed.py --out benchmarks/results/photo_speed.json

One sitting, the same threads and precision (auto) for every row. First the CPU's matmul peak is
measured (a 2048³ matmul, median of 7, in fp32 and bf16). Then each workload runs a few warm-up
training steps and is timed over TIMED steps (median step time): the classifiers at the photo
folders' derived batch (32) at 48 and 64 px, and the generators at 32 and 64 px RGB, each step
built from the training loops' own parts on random tensors (the doctor's timed step). FLOPs per
step are counted by torch's FlopCounterMode on one step (a multiply-add = 2 FLOPs, as the peak
counts them); MFU = FLOPs per step / step time / matmul peak of the precision the step ran in.
"Before" rows are what the issue's user ran on a photo folder (the digits recipes at 32 px RGB,
fastcnn's default widths beside the doctor's narrow reference), "after" rows the photo recipes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import commit, machine_line, report_json  # noqa: E402

from visrep.config import ClassifierConfig, DiffusionConfig, GanConfig, load_config  # noqa: E402
from visrep.doctor.generator_cost import conditioning_encoder, training_step  # noqa: E402
from visrep.hardware.precision import resolve_precision  # noqa: E402
from visrep.hardware.threads import configure_process  # noqa: E402
from visrep.models import create_model  # noqa: E402
from visrep.training.steps import classification_backward  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TIMED, WARMUP = 5, 2
CLASSES = 17  # flowers17
PHOTO_DATA = ["data.source=/nonexistent-photos", "data.channels=3"]  # the timed steps read no data


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 7) -> float:
    """FLOP/s of a square matmul in ``dtype`` (median of ``repeats`` after two warm-ups)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        durations.append(time.perf_counter() - started)
    return 2 * size ** 3 / statistics.median(durations)


def step_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def median_step_seconds(step) -> float:
    for _ in range(WARMUP):
        step()
    durations = []
    for _ in range(TIMED):
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def classifier_step(name: str, size: int, batch: int, precision: str, **options):
    torch.manual_seed(0)
    model = create_model(name, CLASSES, 3, size, **options).to(memory_format=torch.channels_last).train()
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, CLASSES, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        classification_backward(model, optimizer, images, labels, precision)
        optimizer.step()
    return step


def generator_step(stage: str, recipe: str, size: int):
    schema = {"gan": GanConfig, "diffusion": DiffusionConfig}[stage]
    cfg = load_config(CONFIGS / recipe, [*PHOTO_DATA, f"data.image_size={size}"], schema)
    classifier = load_config(CONFIGS / "folder.yaml", [*PHOTO_DATA, f"data.image_size={size}"], ClassifierConfig)
    encoder = conditioning_encoder(cfg, stage, classifier, CLASSES)
    return training_step(stage, cfg, encoder, CLASSES), int(cfg.data.batch_size)


def workloads(precision: str) -> list[tuple[str, str, object, int]]:
    """(label, which side, step function, images per step)."""
    rows = [("fastcnn reference [32,64,128], 32 px, batch 128 (doctor's)", "reference",
             classifier_step("fastcnn", 32, 128, precision, widths=[32, 64, 128]), 128)]
    for size in (48, 64):
        rows.append((f"fastcnn (default widths), {size} px, batch 32", "classifier",
                     classifier_step("fastcnn", size, 32, precision), 32))
    rows.append(("resnet18_cifar, 64 px, batch 32", "classifier", classifier_step("resnet18_cifar", 64, 32, precision), 32))
    for stage in ("gan", "diffusion"):
        step, batch = generator_step(stage, f"{stage}_digits.yaml", 32)
        rows.append((f"{stage}: digits recipe at 32 px RGB", "before", step, batch))
        for size in (32, 64):
            step, batch = generator_step(stage, f"{stage}_folder.yaml", size)
            rows.append((f"{stage}: photo recipe at {size} px RGB", "after", step, batch))
    return rows


def measure(precision: str) -> tuple[list[dict], dict]:
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    peak = peaks["bf16" if precision == "bf16" else "fp32"]
    rows = []
    for label, side, step, batch in workloads(precision):
        flops = step_flops(step)
        seconds = median_step_seconds(step)
        rows.append({"workload": label, "side": side, "images_per_s": round(batch / seconds, 1),
                     "gflop_per_image": round(flops / batch / 1e9, 3),
                     "achieved_gflops": round(flops / seconds / 1e9, 1), "mfu": round(flops / seconds / peak, 3)})
        print(rows[-1], flush=True)
    return rows, {name: round(value / 1e9, 1) for name, value in peaks.items()}


def results_json(rows: list[dict], peaks: dict, precision: str, seconds: float, threads: int) -> dict:
    by_label = {row["workload"]: row for row in rows}
    speedups = {stage: round(by_label[f"{stage}: photo recipe at 32 px RGB"]["images_per_s"]
                             / by_label[f"{stage}: digits recipe at 32 px RGB"]["images_per_s"], 2)
                for stage in ("gan", "diffusion")}
    classifier_mfu = [row["mfu"] for row in rows if row["side"] == "classifier"]
    reference = next(row for row in rows if row["side"] == "reference")
    default64 = by_label["fastcnn (default widths), 64 px, batch 32"]
    headline = (f"fastcnn's default widths at 64 px, batch 32: {default64['images_per_s']} img/s, "
                f"{default64['gflop_per_image'] / reference['gflop_per_image']:.1f}x the FLOPs per image of the "
                f"doctor's 32 px reference ({reference['images_per_s']} img/s); the classifiers at 48-64 px run at MFU "
                f"{min(classifier_mfu):.2f}-{max(classifier_mfu):.2f} of the measured {precision} matmul peak "
                f"({peaks[precision]} GFLOP/s), the reference at {reference['mfu']:.2f}; the photo recipes at 32 px "
                f"RGB train {speedups['gan']}x (GAN) and {speedups['diffusion']}x (diffusion) the images/s of the "
                f"digits recipes")
    columns = [{"key": k, "label": k.replace("_", " ")} for k in
               ("workload", "side", "images_per_s", "gflop_per_image", "achieved_gflops", "mfu")]
    return {"goal": "Speed at photo sizes", "issue": 33, "order": 17,
            "target": "images/s and MFU at 48-64 px (classifiers) and 32-64 px RGB (generators) against a measured "
                      "matmul peak, before and after, side by side in one run",
            "met": None, "met_note": f"a measurement (the issue sets no threshold): classifier MFU "
                                     f"{min(classifier_mfu):.2f}-{max(classifier_mfu):.2f}", "headline": headline,
            "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": commit(), "seeds": [0],
            "command": "python benchmarks/bench_photo_speed.py --out benchmarks/results/photo_speed.json",
            "precision": precision, "matmul_peak_gflops": peaks, "speedups": speedups, "seconds": round(seconds, 1),
            "setup": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
            "threads": threads,
            "tables": [{"title": f"Training steps, {precision}, {threads} threads", "columns": columns,
                        "rows": rows}],
            "history": ["notes/2026-12-07-photo-folders.md"], "notes": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results JSON here")
    parser.add_argument("--rerender", metavar="JSON", help="rewrite --out from this results JSON's rows, measure nothing")
    args = parser.parse_args()
    if args.rerender:
        old = json.loads(Path(args.rerender).read_text())
        report_json({**results_json(old["tables"][0]["rows"], old["matmul_peak_gflops"], old["precision"],
                                    old["seconds"], old["threads"]), **{k: old.get(k) for k in ("host", "date", "commit")}},
                    args.out)
        return
    configure_process()
    precision = resolve_precision("auto", "cpu").precision
    started = time.perf_counter()
    rows, peaks = measure(precision)
    report_json(results_json(rows, peaks, precision, time.perf_counter() - started, torch.get_num_threads()), args.out)


if __name__ == "__main__":
    main()
