"""Classifier benchmarks: test accuracy and training time per dataset, mean ± std over seeds.

    python benchmarks/bench_classifier.py digits  --seeds 0 1 2
    python benchmarks/bench_classifier.py mnist   --seeds 0 1 2
    python benchmarks/bench_classifier.py cifar10 --seeds 0 1 2 --resnet-baseline --anchor configs/cifar10_airbench94.yaml
    python benchmarks/bench_classifier.py generalise      # MNIST as 32 px RGB with the CIFAR config
    python benchmarks/bench_classifier.py cifar10 --config configs/cifar10_airbench94.yaml data.val_fraction=0.02

Training time is the time inside training steps (no validation, no I/O), as recorded by the
trainer in metrics.json; wall time of the whole command is reported beside it.

``--anchor CONFIG`` compares the work of two recipes on this machine, whose speed drifts by up to
2x within minutes (a shared host): one optimizer step of each recipe (its model, batch size and
image sizes, real SGD with bf16 autocast) is timed in alternation, several rounds, and each
recipe's training time is predicted as steps x median step time, phase by phase (input size, and
which parameters train: airbench's whitening bias only in the first epochs). The ratio of the predictions is
the figure that survives the drift; the measured seconds of the runs are reported beside it. Hyper-parameters
were chosen on the validation split; the test split is only read here, once per run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, report_json, unpacked  # noqa: E402

from visrep.config import ClassifierConfig, load_config  # noqa: E402
from visrep.evaluation.classifier_eval import evaluate_classifier  # noqa: E402
from visrep.hardware.precision import resolve_precision  # noqa: E402
from visrep.training.classifier import train_classifier  # noqa: E402

CONFIGS = {"digits": "configs/digits.yaml", "mnist": "configs/mnist.yaml", "cifar10": "configs/cifar10.yaml"}


def run_once(config: str, seed: int, runs_root: Path, extra: list[str]) -> dict:
    overrides = [f"run.seed={seed}", f"run.root={runs_root}", f"run.name=seed{seed}", "train.tensorboard=false", *extra]
    cfg = load_config(REPO / config, overrides, schema=ClassifierConfig)
    started = time.perf_counter()
    run = train_classifier(cfg, progress=False)
    wall = time.perf_counter() - started
    trained = json.loads((run / "metrics.json").read_text())
    plain = evaluate_classifier(run, "test", tta_flip=False, tta_translate=0)
    result = {"seed": seed, "train_seconds": trained["train_seconds"], "train_wall_seconds": wall,
              "best_epoch": trained["best_epoch"], "val_acc": trained["best_val_acc"],
              "test_acc": plain["accuracy"], "test_macro_f1": plain["f1"]["macro"],
              "curve": [{"train_seconds": h["train_seconds"], "val_acc": h["val_acc"]}
                        for h in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]}
    if cfg.data.augment.flip:
        result["test_acc_tta_flip"] = evaluate_classifier(run, "test", tta_flip=True, tta_translate=0)["accuracy"]
    if cfg.eval.tta_translate:
        result["test_acc_tta_flip_translate"] = evaluate_classifier(run, "test", tta_flip=True,
                                                                    tta_translate=cfg.eval.tta_translate)["accuracy"]
    return result


def resnet18_throughput(batch_size: int = 256, steps: int = 5) -> float:
    """Training images/s of a plain fp32 torchvision ResNet-18 (random 32 px RGB batches)."""
    return _throughput("tv:resnet18", 3, 32, batch_size, steps, bf16=False, channels_last=False, options={})


def _throughput(name, channels, size, batch_size, steps, bf16, channels_last, options) -> float:
    import torch

    from visrep.models import create_model
    from visrep.training.steps import classification_backward

    model = create_model(name, 10, channels, size, **options)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(batch_size, channels, size, size).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch_size,))
    rates = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        classification_backward(model, optimizer, images, labels, "bf16" if bf16 else "fp32")
        optimizer.step()
        rates.append(batch_size / (time.perf_counter() - started))
    return statistics.median(rates[1:])  # the first step includes one-off kernel selection


def recipe_step(cfg, size: int, epoch: int = 0):
    """A callable running one training step of ``cfg``'s recipe (real model and optimizer) on random
    (batch, C, size, size) images, with the parameters that train in ``epoch`` (``start_epoch``)."""
    import torch

    from visrep.training.optim import build_optimizer
    from visrep.training.steps import classification_backward

    model = _recipe_model(cfg).to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, cfg.train)
    if hasattr(model, "start_epoch"):
        model.start_epoch(epoch)  # after the optimizer, as in the trainer: frozen parameters get no gradient
    images = torch.randn(cfg.data.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (cfg.data.batch_size,))

    def step() -> None:  # the trainer's own step, in the precision auto resolves to on this machine
        classification_backward(model, optimizer, images, labels, cfg.train.precision, cfg.train.label_smoothing)
        optimizer.step()

    return step


def _recipe_model(cfg):
    from visrep.models import create_model
    return create_model(cfg.model.name, 10, 3, cfg.data.image_size, **dict(cfg.model.options))


def recipe_step_seconds(cfg, size: int, epoch: int = 0, steps: int = 4) -> float:
    """Median seconds of one training step of ``cfg``'s recipe in ``epoch`` on random images of ``size``."""
    step = recipe_step(cfg, size, epoch)
    seconds = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


def recipe_phases(cfg, epochs: float, steps_per_epoch: int) -> dict[tuple[int, int], int]:
    """{(image size, first epoch of the phase): optimizer steps taken in the phase}.

    A phase is a run of epochs with the same input size (progressive resizing) and the same trainable
    parameters: airbench trains its whitening bias in the first epochs only, and while it trains the
    gradient must flow back through the first conv block. ``epochs`` may be fractional (airbench94's
    9.9): the run takes ceil(epochs · steps_per_epoch) steps, as airbench counts them."""
    model, augment = _recipe_model(cfg), cfg.data.augment
    steps_left = math.ceil(epochs * steps_per_epoch)
    phases: dict[tuple[int, int], int] = {}
    seen: dict[tuple, tuple[int, int]] = {}
    for epoch in range(math.ceil(epochs)):
        low_res = augment.low_res_size > 0 and epoch < augment.low_res_epochs
        size = augment.low_res_size if low_res else cfg.data.image_size
        if hasattr(model, "start_epoch"):
            model.start_epoch(epoch)
        key = seen.setdefault((size, tuple(p.requires_grad for p in model.parameters())), (size, epoch))
        steps = min(steps_per_epoch, steps_left)
        phases[key], steps_left = phases.get(key, 0) + steps, steps_left - steps
    return phases


# airbench94 as published: 9.9 epochs of the 50k CIFAR-10 training images at 32 px, batch 1024 with
# the last partial batch dropped (48 steps per epoch), ceil(9.9 · 48) = 476 steps
ANCHOR_EPOCHS, ANCHOR_TRAIN_IMAGES = 9.9, 50_000


def predict_train_seconds(recipes: dict, rounds: int) -> tuple[dict, dict]:
    """({name: predicted training seconds}, {(name, phase): median step seconds}) for
    ``recipes`` = {name: (cfg, recipe_phases(...))}: every phase's step of every recipe is timed in
    alternation (order reversed every other round, so machine drift hits all alike), ``rounds`` times."""
    samples = {(name, phase): [] for name, (_, phases) in recipes.items() for phase in phases}
    for round_no in range(rounds):
        for name, (size, epoch) in (list(samples) if round_no % 2 == 0 else list(samples)[::-1]):
            samples[(name, (size, epoch))].append(recipe_step_seconds(recipes[name][0], size, epoch))
    step_seconds = {key: statistics.median(v) for key, v in samples.items()}
    predicted = {name: sum(steps * step_seconds[(name, phase)] for phase, steps in phases.items())
                 for name, (_, phases) in recipes.items()}
    return predicted, step_seconds


def compare_recipes(ours, anchor, our_train_images: int, rounds: int = 5) -> dict:
    """Predicted training seconds of both recipes from alternating step timings (see module doc)."""
    recipes = {"ours": (ours, recipe_phases(ours, ours.train.epochs, our_train_images // ours.data.batch_size)),
               "anchor": (anchor, recipe_phases(anchor, ANCHOR_EPOCHS, ANCHOR_TRAIN_IMAGES // anchor.data.batch_size))}
    predicted, step_seconds = predict_train_seconds(recipes, rounds)
    label = "{}@{}px from epoch {}".format
    return {"predicted_train_seconds": predicted, "time_ratio_ours_over_anchor": predicted["ours"] / predicted["anchor"],
            "steps_by_phase": {name: {label(name, *phase): n for phase, n in phases.items()}
                               for name, (_, phases) in recipes.items()},
            "step_seconds": {label(name, *phase): seconds for (name, phase), seconds in step_seconds.items()},
            "rounds": rounds}


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
    parser.add_argument("--anchor", metavar="CONFIG", help="compare the recipe's work with this config's (see doc)")
    parser.add_argument("--config", help="train this config instead of the dataset's (e.g. the anchor itself)")
    parser.add_argument("--work-only", action="store_true",
                        help="skip the training runs: only the --anchor work ratio and --resnet-baseline")
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_intermixed_args()  # overrides may follow the options

    extra = list(args.overrides)
    config = args.config or CONFIGS.get(args.dataset, "configs/cifar10.yaml")
    if args.dataset in ("mnist", "cifar10"):
        extra.insert(0, f"data.source={unpacked(args.dataset)}")
    if args.dataset == "generalise":  # MNIST pixels through the CIFAR recipe, unchanged code
        extra = [f"data.source={unpacked('mnist')}", "data.image_size=32", "data.channels=3", "train.epochs=1", *extra]
    with tempfile.TemporaryDirectory() as runs_root:
        results = [] if args.work_only else [run_once(config, seed, Path(runs_root), extra) for seed in args.seeds]
    report = {"dataset": args.dataset, "config": config, "overrides": extra, "machine": machine_line(),
              "runs": results, "test_acc": summarize(results, "test_acc"),
              "test_acc_tta_flip": summarize(results, "test_acc_tta_flip"),
              "test_acc_tta_flip_translate": summarize(results, "test_acc_tta_flip_translate"),
              "train_seconds": summarize(results, "train_seconds")}
    if args.resnet_baseline:
        cfg = load_config(REPO / config, extra, schema=ClassifierConfig)
        bf16 = resolve_precision(cfg.train.precision).precision == "bf16"  # what auto picks on this machine
        ours = _throughput(cfg.model.name, 3, 32, cfg.data.batch_size, 5, bf16=bf16,
                           channels_last=cfg.train.channels_last, options=dict(cfg.model.options))
        baseline = resnet18_throughput()
        report.update({"ours_train_img_per_s": ours, "resnet18_fp32_train_img_per_s": baseline,
                       "speed_ratio_ours_over_resnet18": ours / baseline})
    if args.anchor:
        cfg = load_config(REPO / config, extra, schema=ClassifierConfig)
        anchor = load_config(REPO / args.anchor, [o for o in extra if o.startswith("data.source=")],
                             schema=ClassifierConfig)
        our_train_images = round(50_000 * (1 - cfg.data.val_fraction))
        report["anchor"] = {"config": args.anchor, **compare_recipes(cfg, anchor, our_train_images)}
    report_json(report, args.out)


if __name__ == "__main__":
    main()
