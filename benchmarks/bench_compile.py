"""torch.compile on the CPU for the CIFAR-10 diffusion recipe's training step (issue 35, item 2).

The U-Net of configs/diffusion_cifar10.yaml (class-conditional, patch 2, width 64) at its batch and
precision, one optimizer step (forward under autocast, v-loss, backward, AdamW) timed eagerly and
compiled (inductor, default mode), in one process, alternating blocks of steps after warm-up; median
seconds per step. The compile time itself is reported beside it: it is paid once per run.

    python benchmarks/bench_compile.py --out benchmarks/results/compile_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from common import REPO, commit, machine_line, report_json

STEPS_PER_BLOCK = 5
WARMUP_STEPS = 3
SPEEDUP_WORTH_KEEPING = 1.1  # below this a switch is not worth its compile time and its extra failure modes


def build_step(cfg, compiled: bool):
    """A fresh U-Net, optimizer and one-step closure at the recipe's batch (random images, class labels)."""
    from visrep.diffusion.loss import noise_batch, weighted_mse
    from visrep.diffusion.schedule import alphas_cumprod
    from visrep.hardware.precision import resolve_precision
    from visrep.inference.autocast import autocast_context
    from visrep.training.diffusion import build_denoiser

    torch.manual_seed(0)
    shape = (3, 32, 32)
    data = SimpleNamespace(image_shape=shape, class_names=[str(i) for i in range(10)])
    model = build_denoiser(cfg, data, SimpleNamespace(embeddings=None))
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch, schedule = int(cfg.data.batch_size), alphas_cumprod()
    precision = resolve_precision(cfg.train.precision, torch.device("cpu"), training=True).precision
    images = torch.rand(batch, *shape) * 2 - 1
    labels = torch.randint(10, (batch,))

    def step():
        noised = noise_batch(images, schedule, cfg.diffusion.min_snr_gamma)
        with autocast_context(torch.device("cpu"), precision):
            loss = weighted_mse(forward(noised.noisy, noised.timesteps, labels, None), noised)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, batch, precision


def block_seconds(step) -> float:
    started = time.perf_counter()
    for _ in range(STEPS_PER_BLOCK):
        step()
    return (time.perf_counter() - started) / STEPS_PER_BLOCK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    from visrep.config import DiffusionConfig, load_config

    cfg = load_config(REPO / "configs" / "diffusion_cifar10.yaml", schema=DiffusionConfig)
    eager, batch, precision = build_step(cfg, compiled=False)
    compiled, _, _ = build_step(cfg, compiled=True)
    started = time.perf_counter()
    compiled()  # the first call compiles
    compile_seconds = time.perf_counter() - started
    for _ in range(WARMUP_STEPS):
        eager()
        compiled()
    times = {"eager": [], "compiled": []}
    for _ in range(args.blocks):  # alternating, so that a load change on the machine hits both
        times["eager"].append(block_seconds(eager))
        times["compiled"].append(block_seconds(compiled))
    rows = [{"mode": mode, "seconds_per_step": round(statistics.median(values), 4),
             "images_per_s": round(batch / statistics.median(values), 1),
             "blocks": [round(v, 4) for v in values]} for mode, values in times.items()]
    speedup = rows[0]["seconds_per_step"] / rows[1]["seconds_per_step"]
    report_json({
        "goal": "CIFAR-10 diffusion: torch.compile on the CPU (issue 35)", "issue": 35, "order": 99,
        "target": f"keep torch.compile if it speeds the training step by ≥ {SPEEDUP_WORTH_KEEPING}× on this CPU",
        "met": speedup >= SPEEDUP_WORTH_KEEPING,
        "headline": f"eager {rows[0]['images_per_s']} vs compiled {rows[1]['images_per_s']} img/s "
                    f"({speedup:.2f}×), compile {compile_seconds:.0f} s",
        "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": commit(),
        "source": "benchmarks/bench_compile.py: one process, eager and compiled steps alternating in blocks of "
                  f"{STEPS_PER_BLOCK}, median over {args.blocks} blocks",
        "command": "python benchmarks/bench_compile.py --out benchmarks/results/compile_cpu.json",
        "setup": f"configs/diffusion_cifar10.yaml's U-Net (class-conditional, patch {cfg.diffusion.patch}, width "
                 f"{cfg.diffusion.width}), batch {batch}, {precision}, random 32 px images",
        "tables": [{"title": "One training step", "columns": [
            {"key": "mode", "label": "mode"}, {"key": "seconds_per_step", "label": "s / step"},
            {"key": "images_per_s", "label": "images/s"}], "rows": rows}],
        "speedup": round(speedup, 3), "compile_seconds": round(compile_seconds, 1),
    }, args.out)


if __name__ == "__main__":
    main()
