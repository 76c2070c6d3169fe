"""Per-image cost of a CIFAR recipe's training step by batch size, against the airbench94 anchor.

    python benchmarks/study_step_cost.py [overrides ...] [--batch-sizes 512 1024 2048] [--rounds 3]
    python benchmarks/study_step_cost.py --profile [overrides ...]
    python benchmarks/study_step_cost.py --ab CHANGE [CHANGE ...] -- [overrides ...]

Times one real optimizer step (configs/cifar10.yaml plus the overrides, random images, bf16 +
channels_last) at each batch size at 32 px, alternating with the anchor (configs/cifar10_airbench94.yaml,
batch 1024) so that machine drift hits all alike; prints the median ms per image, then the same at
the recipe's low-res size. ``--profile`` prints torch's profiler table of three batch-512 steps.
``--ab`` predicts the training time of the recipe as configured (A) and with the CHANGE overrides
added (B), phase by phase as bench_classifier's work ratio (input size; which parameters train), from
step timings alternating between the two; options go before ``--``, overrides after it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classifier import predict_train_seconds, recipe_phases, recipe_step, recipe_step_seconds  # noqa: E402
from visrep.config import ClassifierConfig, load_config  # noqa: E402


def recipe(overrides: list[str], batch_size: int):
    return load_config("configs/cifar10.yaml", [*overrides, f"data.batch_size={batch_size}"], schema=ClassifierConfig)


def per_image_costs(overrides: list[str], batch_sizes: list[int], rounds: int) -> None:
    configs = {f"batch {b}": recipe(overrides, b) for b in batch_sizes}
    configs["anchor (batch 1024)"] = load_config("configs/cifar10_airbench94.yaml", [], schema=ClassifierConfig)
    seconds = {name: [] for name in configs}
    for round_no in range(rounds):
        order = list(configs.items())
        for name, cfg in (order if round_no % 2 == 0 else order[::-1]):
            seconds[name].append(recipe_step_seconds(cfg, 32))
    for name, cfg in configs.items():
        step = statistics.median(seconds[name])
        print(f"32 px, {name}: {step:.3f} s/step, {1000 * step / cfg.data.batch_size:.3f} ms/image", flush=True)
    low = configs[f"batch {batch_sizes[0]}"].data.augment.low_res_size
    if low:
        for b in batch_sizes:
            step = recipe_step_seconds(configs[f"batch {b}"], low)
            print(f"{low} px, batch {b}: {1000 * step / b:.3f} ms/image", flush=True)


def ab_step_costs(overrides: list[str], change: list[str], rounds: int, train_images: int = 49_000) -> None:
    """Predicted training seconds of recipe A and of A + ``change``, phase by phase as bench_classifier's
    work ratio (step timings alternating between the two, median of ``rounds``)."""
    configs = {"A": load_config("configs/cifar10.yaml", overrides, schema=ClassifierConfig),
               "B": load_config("configs/cifar10.yaml", [*overrides, *change], schema=ClassifierConfig)}
    recipes = {name: (cfg, recipe_phases(cfg, cfg.train.epochs, train_images // cfg.data.batch_size))
               for name, cfg in configs.items()}
    total, step_seconds = predict_train_seconds(recipes, rounds)
    print(f"A: configs/cifar10.yaml {' '.join(overrides)}; B: A + {' '.join(change)}")
    for name, (_, phases) in recipes.items():
        for (size, epoch), steps in phases.items():
            step = step_seconds[(name, (size, epoch))]
            print(f"{name}: {size} px from epoch {epoch}: {step:.3f} s/step x {steps} steps", flush=True)
    print(f"predicted training: A {total['A']:.1f} s, B {total['B']:.1f} s, B/A {total['B'] / total['A']:.3f}")


def profile_steps(overrides: list[str]) -> None:
    from torch.profiler import ProfilerActivity, profile

    step = recipe_step(recipe(overrides, 512), 32)
    step()  # warm-up: oneDNN picks its kernels on the first call
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        for _ in range(3):
            step()
    print(profiler.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--rounds", type=int, default=3)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--profile", action="store_true")
    mode.add_argument("--ab", nargs="+", metavar="CHANGE", help="overrides that make recipe B (see doc)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.optimizer=muon")
    args = parser.parse_args()
    if args.profile:
        profile_steps(args.overrides)
    elif args.ab:
        ab_step_costs(args.overrides, args.ab, args.rounds)
    else:
        per_image_costs(args.overrides, args.batch_sizes, args.rounds)


if __name__ == "__main__":
    main()
