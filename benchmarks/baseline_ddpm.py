"""Issue 22 baseline: denoising-diffusion-pytorch's classifier-free-guidance model, same data, same wall
time, same precision, same scoring.

    python benchmarks/baseline_ddpm.py --data ~/.cache/visrep-data/mnist --seconds 1200 --out DIR \
        --seed 0 --threads 2 [--n 1000] [--steps 20] [--batch-size 128]

The model is the package's ``classifier_free_guidance`` module as its README shows it (``Unet`` with
``num_classes`` and the default ``cond_drop_prob`` 0.5; ``GaussianDiffusion`` with its defaults: 1,000
steps, cosine schedule, ε-prediction), at the size the issue names: ``dim=32, dim_mults=(1, 2, 4)``,
``channels=1``, 28 px. The optimiser and the EMA are the package ``Trainer``'s defaults (Adam 1e-4,
betas (0.9, 0.99); EMA decay 0.995 updated every 10 steps, via ``ema_pytorch`` as the Trainer does);
the batch is ours (128) so that images per second compare like with like. Training and sampling run
under the same bf16 autocast as ours (``--precision``). The training loop is written here because
the Trainer runs on a step count, not on a clock, and writes files into the working directory.

Sampling uses the package's own DDIM sampler (``sampling_timesteps=--steps``; its default η = 1) with
guidance at the package's default ``cond_scale`` 6 and ``rescaled_phi`` 0.7, class-balanced labels.

Benchmark-only dependency: ``pip install --no-deps denoising-diffusion-pytorch==2.3.4 ema-pytorch einops
accelerate pytorch-fid`` (the last two are imported by the package's ``__init__`` only).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import time

import numpy as np
import torch

from baseline_torchgan import load_train_split
from common import add_peer_arguments, peer_output_folder, write_peer_run

VERSION = "2.3.4"
INSTALL = (f"pip install --no-deps denoising-diffusion-pytorch=={VERSION} ema-pytorch einops accelerate "
           "pytorch-fid")
ADAM = {"lr": 1e-4, "betas": (0.9, 0.99)}  # the package Trainer's defaults
EMA_DECAY, EMA_EVERY = 0.995, 10
COND_SCALE, RESCALED_PHI = 6.0, 0.7  # GaussianDiffusion.sample's defaults
SAMPLE_BATCH = 500


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_peer_arguments(parser, "DDIM sampling steps")
    return parser.parse_args(argv)


def require_package():
    try:
        from denoising_diffusion_pytorch.classifier_free_guidance import GaussianDiffusion, Unet
        from ema_pytorch import EMA
    except ImportError as err:
        raise SystemExit(f"error: the baseline needs denoising-diffusion-pytorch {VERSION} ({err}): {INSTALL}")
    return Unet, GaussianDiffusion, EMA


def precision_context(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def train(diffusion, ema, optimizer, images: np.ndarray, labels: np.ndarray, args) -> dict:
    """Steps on random batches until ``--seconds`` of training have passed (clock read before each step)."""
    generator = torch.Generator().manual_seed(args.seed)
    steps, seen, trained, losses = 0, 0, 0.0, []
    while trained < args.seconds:
        started = time.perf_counter()
        rows = torch.randint(len(images), (args.batch_size,), generator=generator).numpy()
        batch = torch.from_numpy(images[rows]).float() / 255.0  # the package wants [0, 1]
        with precision_context(args.precision):
            loss = diffusion(batch, classes=torch.from_numpy(labels[rows]).long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update()
        steps, seen = steps + 1, seen + len(rows)
        trained += time.perf_counter() - started
        losses.append(float(loss))
        if steps % 100 == 0:
            print(f"step {steps}: loss {np.mean(losses[-100:]):.4f} | {seen / trained:.1f} img/s", flush=True)
    return {"steps": steps, "images_seen": seen, "seconds_trained": round(trained, 1),
            "train_images_per_s": round(seen / trained, 1), "final_loss": float(np.mean(losses[-100:]))}


@torch.no_grad()
def sample(ema_diffusion, n: int, num_classes: int, args) -> tuple[np.ndarray, np.ndarray, float | None]:
    labels = np.arange(n) % num_classes
    chunks, started = [], time.perf_counter()
    torch.manual_seed(args.seed + 1)
    for start in range(0, n, SAMPLE_BATCH):
        classes = torch.from_numpy(labels[start:start + SAMPLE_BATCH]).long()
        with precision_context(args.precision):
            images = ema_diffusion.sample(classes, cond_scale=COND_SCALE, rescaled_phi=RESCALED_PHI)
        chunks.append((images.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        print(f"sampled {start + len(classes)} / {n}", flush=True)
    elapsed = time.perf_counter() - started
    return np.concatenate(chunks), labels, (round(n / elapsed, 2) if n else None)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = peer_output_folder(args)
    Unet, GaussianDiffusion, EMA = require_package()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels, class_names = load_train_split(args.config, args.data)
    labels = np.asarray(labels)
    channels, size = images.shape[1], images.shape[-1]
    model = Unet(dim=32, dim_mults=(1, 2, 4), num_classes=len(class_names), channels=channels)
    diffusion = GaussianDiffusion(model, image_size=size, timesteps=1000, sampling_timesteps=args.steps)
    ema = EMA(diffusion, beta=EMA_DECAY, update_every=EMA_EVERY)
    optimizer = torch.optim.Adam(diffusion.parameters(), **ADAM)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"denoising-diffusion-pytorch {VERSION}: {parameters:,} parameters, {len(images):,} training images, "
          f"{args.seconds:g} s on {args.threads} thread(s), {args.precision}", flush=True)
    figures = train(diffusion, ema, optimizer, images, labels, args)
    samples, sample_labels, rate = sample(ema.ema_model.eval(), args.n, len(class_names), args)
    record = {"library": "denoising-diffusion-pytorch",
              "version": importlib.metadata.version("denoising-diffusion-pytorch"), "parameters": parameters,
              "seconds_budget": args.seconds, **figures, "sampling_images_per_s": rate, "sampling_steps": args.steps,
              "cond_scale": COND_SCALE, "rescaled_phi": RESCALED_PHI, "samples": len(samples), "seed": args.seed,
              "threads": args.threads, "precision": args.precision, "batch_size": args.batch_size,
              "adam": ADAM, "ema": {"decay": EMA_DECAY, "update_every": EMA_EVERY}, "data": args.data,
              "torch": torch.__version__}
    write_peer_run(out, samples, sample_labels, f"denoising-diffusion-pytorch {VERSION} classifier-free guidance "
                   f"U-Net, {args.seconds:g} s", record, figures, rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
