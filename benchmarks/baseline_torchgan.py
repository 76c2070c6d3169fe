"""Issue 21 baseline: a public GAN library's conditional model, same data, same wall time, same scoring.

    python benchmarks/baseline_torchgan.py --data ~/.cache/visrep-data/mnist --seconds 900 --out DIR \
        --seed 0 --threads 2 [--n 10000] [--model cdcgan|acgan] [--batch-size 64] [--fit pad|resize]

What is measured, and why: the project's class-conditional GAN is judged against torchgan 0.1.0 trained
for the same wall-clock budget on the same training split (``prepare_data(configs/mnist.yaml).splits
["train"]``), and both sets of samples are then scored by the same independent evaluator
(``visrep evaluate generated --fake DIR``). The ratio of the two scores is the figure the issue asks for.
Training time counts every training step (batch assembly, both networks' updates) from the first step
until the clock passes ``--seconds``; the clock is read before each step, so the last step may end a
little after the budget (``seconds_trained`` records the real figure). Data preparation, model
construction and sampling are outside the budget; sampling speed is reported separately.

The model is used the way torchgan's own tutorial trains its conditional DCGAN on MNIST ("Tutorial 1.
Introduction to TorchGAN", section "Training conditional GAN models"): ConditionalGANGenerator /
ConditionalGANDiscriminator, encoding_dims 100, step_channels 32, LeakyReLU(0.2) inside, Tanh last in
both networks, least-squares losses, Adam(lr 1e-4, betas (0.5, 0.999)) for G and Adam(lr 3e-4, betas
(0.5, 0.999)) for D, batches of 64, images in [-1, 1] at 32 px. ``--model acgan`` swaps in the ACGAN
networks with the same settings and adds torchgan's auxiliary-classifier losses (the tutorials have no
ACGAN recipe).

The training loop is written here rather than using ``torchgan.trainer.Trainer``: the Trainer runs whole
epochs, writes checkpoints and image grids into the working directory and cannot stop on a clock. The
loop does what ``Trainer.train_iter`` does with ncritic=1: for each batch, every loss's own
``train_ops`` in list order (generator loss, then discriminator loss), each running its own forward,
backward and optimizer step. Batches are drawn from a fresh permutation each epoch, dropping the
remainder, so every step has the Trainer's fixed ``batch_size``.

torchgan 0.1.0 imports and runs unchanged with torch 2.14 (nothing is patched). It is a benchmark-only
dependency (``pip install --no-deps torchgan==0.1.0``; its ``wget`` requirement is never imported).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TORCHGAN_VERSION = "0.1.0"
INSTALL = f"pip install --no-deps torchgan=={TORCHGAN_VERSION}"
GAN_SIZE = 32  # torchgan's DCGAN needs a power of two ≥ 16
ENCODING_DIMS, STEP_CHANNELS = 100, 32
G_ADAM = {"lr": 1e-4, "betas": (0.5, 0.999)}
D_ADAM = {"lr": 3e-4, "betas": (0.5, 0.999)}
SAMPLE_BATCH = 500


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data source (as data.source), e.g. ~/.cache/visrep-data/mnist")
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--n", type=int, default=10000, help="samples to write, class-balanced")
    parser.add_argument("--model", choices=("cdcgan", "acgan"), default="cdcgan")
    parser.add_argument("--batch-size", type=int, default=64)
    # pad (default): 2 px of background around each digit, cropped off again after sampling, so the
    # 28 px round trip is exact and the samples are not blurred by our own resizing. resize: bilinear
    # 28 → 32 as torchgan's tutorial does, and antialiased bilinear 32 → 28 after sampling.
    parser.add_argument("--fit", choices=("pad", "resize"), default="pad", help="how 28 px images become 32 px")
    parser.add_argument("--config", default=str(REPO / "configs" / "mnist.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_torchgan() -> None:
    """Exit 2, naming the install command, unless torchgan 0.1.0 imports."""
    try:
        import torchgan.losses
        import torchgan.models  # noqa: F401
    except ImportError as err:
        fail(f"torchgan is not installed ({err}); this benchmark-only baseline needs it: {INSTALL}")
    version = importlib.metadata.version("torchgan")
    if version != TORCHGAN_VERSION:
        fail(f"torchgan {version} is installed; this baseline is pinned to {TORCHGAN_VERSION}: {INSTALL}")


def load_train_split(config: str, source: str):
    """(uint8 images (N, 1, 28, 28), int64 labels (N,), class names) of the project's training split."""
    from visrep.config import ClassifierConfig, load_config
    from visrep.data.prepare import prepare_data

    # the classifier's schema: configs/mnist.yaml also holds model/train sections; only data is used
    cfg = load_config(config, overrides=[f"data.source={source}"], schema=ClassifierConfig)
    data = prepare_data(cfg.data, progress=False)
    train = data.splits["train"]
    return np.asarray(train.images), train.labels.clone(), list(data.class_names)


def to_gan(batch: np.ndarray, fit: str, device) -> torch.Tensor:
    """uint8 (B, 1, 28, 28) → float (B, 1, 32, 32) in [-1, 1]."""
    x = torch.from_numpy(batch).to(device, torch.float32).div_(127.5).sub_(1.0)
    if fit == "pad":
        pad = (GAN_SIZE - x.shape[-1]) // 2
        return F.pad(x, (pad, pad, pad, pad), value=-1.0)
    return F.interpolate(x, size=(GAN_SIZE, GAN_SIZE), mode="bilinear", align_corners=False)


def from_gan(x: torch.Tensor, fit: str, size: int) -> np.ndarray:
    """float (B, 1, 32, 32) in [-1, 1] → uint8 (B, 1, size, size)."""
    if fit == "pad":
        pad = (GAN_SIZE - size) // 2
        x = x[..., pad:pad + size, pad:pad + size]
    else:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def build(model: str, num_classes: int, device):
    """(generator, discriminator, losses in Trainer order, G optimizer, D optimizer) as in torchgan's tutorial."""
    from torch import nn
    from torchgan import losses as L
    from torchgan import models as M

    g_cls, d_cls = {"cdcgan": (M.ConditionalGANGenerator, M.ConditionalGANDiscriminator),
                    "acgan": (M.ACGANGenerator, M.ACGANDiscriminator)}[model]
    shared = {"num_classes": num_classes, "step_channels": STEP_CHANNELS, "nonlinearity": nn.LeakyReLU(0.2),
              "last_nonlinearity": nn.Tanh()}
    gen = g_cls(encoding_dims=ENCODING_DIMS, out_size=GAN_SIZE, out_channels=1, **shared).to(device)
    disc = d_cls(in_size=GAN_SIZE, in_channels=1, **shared).to(device)
    losses = [L.LeastSquaresGeneratorLoss(), L.LeastSquaresDiscriminatorLoss()]
    if model == "acgan":
        losses += [L.AuxiliaryClassifierGeneratorLoss(), L.AuxiliaryClassifierDiscriminatorLoss()]
    opt_g, opt_d = torch.optim.Adam(gen.parameters(), **G_ADAM), torch.optim.Adam(disc.parameters(), **D_ADAM)
    return gen, disc, losses, opt_g, opt_d


def train_step(gen, disc, losses, opt_g, opt_d, real, labels, device) -> dict[str, float]:
    """One Trainer.train_iter (ncritic=1): each loss's own train_ops, generator losses with the batch size."""
    from torchgan.losses import GeneratorLoss

    values = {}
    for loss in losses:
        if isinstance(loss, GeneratorLoss):
            value = loss.train_ops(gen, disc, opt_g, device, real.shape[0], labels)
        else:
            value = loss.train_ops(gen, disc, opt_d, real, device, labels)
        values[type(loss).__name__] = value
    return values


def train(gen, disc, losses, opt_g, opt_d, images, labels, args) -> dict:
    """Train until ``args.seconds`` of wall time have passed; the figures of the run."""
    rng = np.random.default_rng(args.seed)
    device, batch = torch.device(args.device), args.batch_size
    per_epoch = len(images) // batch
    if per_epoch == 0:
        fail(f"--batch-size {batch} is larger than the training split ({len(images)} images)")
    gen.train()
    disc.train()
    steps, history, order = 0, [], None
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        if steps % per_epoch == 0:
            order = rng.permutation(len(images))
        rows = np.sort(order[(steps % per_epoch) * batch:(steps % per_epoch + 1) * batch])
        real = to_gan(images[rows], args.fit, device)
        y = labels[torch.from_numpy(rows)].to(device)
        history.append(train_step(gen, disc, losses, opt_g, opt_d, real, y, device))
        steps += 1
    elapsed = time.perf_counter() - start
    return {"seconds_trained": round(elapsed, 2), "iterations": steps, "images_seen": steps * batch,
            "epochs": round(steps * batch / len(images), 3),
            "train_images_per_s": round(steps * batch / elapsed, 1),
            "last_100_mean_losses": _mean_losses(history[-100:])}


def _mean_losses(history: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(float(np.mean([h[name] for h in history])), 4) for name in (history[0] if history else {})}


@torch.no_grad()
def sample(gen, n: int, num_classes: int, args, size: int):
    """``n`` samples with labels i % num_classes, generator in eval mode (as torchgan's Trainer samples)."""
    device = torch.device(args.device)
    gen.eval()
    labels = np.arange(n, dtype=np.int64) % num_classes
    chunks = []
    start = time.perf_counter()
    for first in range(0, n, SAMPLE_BATCH):
        y = torch.from_numpy(labels[first:first + SAMPLE_BATCH]).to(device)
        z = torch.randn(len(y), gen.encoding_dims, device=device)
        chunks.append(from_gan(gen(z, y), args.fit, size))
    elapsed = time.perf_counter() - start
    images = np.concatenate(chunks) if chunks else np.empty((0, 1, size, size), np.uint8)
    return images, labels, round(n / elapsed, 1) if elapsed > 0 else None


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def write_outputs(out: Path, images, labels, record: dict, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=overwrite)
    np.savez(out / "samples.npz", images=images, labels=labels)
    generator = {"conditioning_weights_sha256": [], "samples": "samples.npz",
                 "description": f"torchgan {TORCHGAN_VERSION} {record['model_description']} baseline, "
                                f"{record['seconds_budget']:g} s"}
    (out / "generator.json").write_text(json.dumps(generator, indent=1) + "\n")
    (out / "baseline.json").write_text(json.dumps(record, indent=1) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).expanduser()
    if out.exists() and not args.overwrite:
        fail(f"{out} already exists (pass --overwrite to replace its files)")
    if args.seconds <= 0 or args.n < 0 or args.batch_size < 1 or args.threads < 1:
        fail("--seconds and --batch-size must be > 0, --n ≥ 0, --threads ≥ 1")
    require_torchgan()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    images, labels, class_names = load_train_split(args.config, args.data)
    if images.shape[1:] != (1, 28, 28):
        fail(f"expected (N, 1, 28, 28) training images, got {images.shape}")
    prep_seconds = time.perf_counter() - t0

    gen, disc, losses, opt_g, opt_d = build(args.model, len(class_names), torch.device(args.device))
    print(f"torchgan {args.model}: G {count_params(gen):,} / D {count_params(disc):,} parameters, "
          f"{len(images):,} training images, {args.seconds:g} s on {args.threads} thread(s)", flush=True)
    figures = train(gen, disc, losses, opt_g, opt_d, images, labels, args)
    samples, sample_labels, sample_rate = sample(gen, args.n, len(class_names), args, images.shape[-1])

    from torchgan.losses import GeneratorLoss

    per_step = sum(isinstance(loss, GeneratorLoss) for loss in losses)
    record = {
        "library": "torchgan", "version": importlib.metadata.version("torchgan"), "model": args.model,
        "model_description": {"cdcgan": "conditional DCGAN", "acgan": "ACGAN"}[args.model],
        "losses": [type(loss).__name__ for loss in losses],
        "seconds_budget": args.seconds, **figures,
        "generator_optimizer_steps": figures["iterations"] * per_step,
        "discriminator_optimizer_steps": figures["iterations"] * (len(losses) - per_step),
        "sampling_images_per_s": sample_rate, "samples": len(samples),
        "seed": args.seed, "threads": args.threads, "device": args.device, "batch_size": args.batch_size,
        "params_generator": count_params(gen), "params_discriminator": count_params(disc),
        "hyperparameters": {"encoding_dims": ENCODING_DIMS, "step_channels": STEP_CHANNELS, "image_size": GAN_SIZE,
                            "fit": args.fit, "adam_generator": G_ADAM, "adam_discriminator": D_ADAM},
        "train_images": len(images), "data": args.data, "class_names": class_names,
        "data_prep_seconds": round(prep_seconds, 2), "torch": torch.__version__,
    }
    write_outputs(out, samples, sample_labels, record, args.overwrite)
    print(f"{figures['iterations']} iterations ({figures['epochs']} epochs) in {figures['seconds_trained']} s: "
          f"{figures['train_images_per_s']} training img/s, {sample_rate} sampled img/s → {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
