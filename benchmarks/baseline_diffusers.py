"""Issue 36 peer: Hugging Face diffusers, trained as its own training examples do, on our data, clock and scorer.

    python benchmarks/baseline_diffusers.py --data ~/.cache/visrep-data/mnist --seconds 1200 --out DIR \
        --seed 0 --threads 2 [--lr 3e-4] [--guidance 2] [--n 1000] [--steps 20] [--batch-size 128]

The model is ``UNet2DModel`` as diffusers' ``train_unconditional.py`` example builds it, scaled to the
images (three levels of ``layers_per_block=2`` with attention at the lowest, ``block_out_channels``
--width × (1, 2, 2)), made class-conditional the library's way: ``num_class_embeds`` = classes + 1,
the extra class being the null label that 10 % of training rows get (classifier-free guidance, as in
the library's conditional pipelines). Training follows the example: ``DDPMScheduler`` (1,000 steps,
``squaredcos_cap_v2``, ε-prediction), AdamW with a linear warm-up, ``EMAModel`` with the example's
warm-up EMA (``use_ema_warmup``, ``inv_gamma`` 1, ``power`` 3/4: an average that is short at first, so
a run of about a thousand steps is not stuck near its start), under the same bf16 autocast as ours.
Sampling uses ``DPMSolverMultistepScheduler`` (DPM-Solver++) built from the training scheduler's config,
``--steps`` steps, guidance ε_u + s·(ε_c − ε_u), class-balanced labels. The learning rate, EMA and
guidance are this peer's own short-run recipe, chosen on val by --sweep-style runs of this script.

diffusers is already a runtime dependency of visrep (its schedulers), so this peer installs nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time

import numpy as np
import torch
import torch.nn.functional as F

from baseline_ddpm import precision_context
from baseline_torchgan import load_train_split
from common import add_peer_arguments, peer_output_folder, write_peer_run

SAMPLE_BATCH = 250
NULL_DROP = 0.1  # rows trained with the null class (the unconditional branch guidance needs)
EMA_INV_GAMMA, EMA_POWER, EMA_MAX_DECAY = 1.0, 0.75, 0.9999  # diffusers' train_unconditional.py
WARMUP_STEPS = 100


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_peer_arguments(parser, "DPM-Solver++ sampling steps")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale s")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--width", type=int, default=32, help="channels of the first level")
    parser.add_argument("--ema", choices=("warmup", "none"), default="warmup", help="sample from the EMA or the "
                        "online model")
    return parser.parse_args(argv)


def build_unet(size: int, channels: int, classes: int, width: int):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=2,
                       block_out_channels=(width, 2 * width, 2 * width),
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                       num_class_embeds=classes + 1, norm_num_groups=min(32, width))


def train(unet, scheduler, ema, optimizer, images: np.ndarray, labels: np.ndarray, classes: int, args) -> dict:
    """Steps on random batches until ``--seconds`` of training have passed (clock read around each step)."""
    generator = torch.Generator().manual_seed(args.seed)
    steps, seen, trained, losses = 0, 0, 0.0, []
    while trained < args.seconds:
        started = time.perf_counter()
        rows = torch.randint(len(images), (args.batch_size,), generator=generator).numpy()
        clean = torch.from_numpy(images[rows]).float() / 127.5 - 1.0
        label = torch.from_numpy(labels[rows]).long()
        label = torch.where(torch.rand(len(rows), generator=generator) < NULL_DROP, torch.full_like(label, classes),
                            label)
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.randint(scheduler.config.num_train_timesteps, (len(rows),), generator=generator)
        with precision_context(args.precision):
            prediction = unet(scheduler.add_noise(clean, noise, t), t, class_labels=label).sample
        loss = F.mse_loss(prediction.float(), noise)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (steps + 1) / WARMUP_STEPS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.step(unet.parameters())
        steps, seen = steps + 1, seen + len(rows)
        trained += time.perf_counter() - started
        losses.append(float(loss.detach()))
        if steps % 100 == 0:
            print(f"step {steps}: loss {np.mean(losses[-100:]):.4f} | {seen / trained:.1f} img/s", flush=True)
    return {"steps": steps, "images_seen": seen, "seconds_trained": round(trained, 1),
            "train_images_per_s": round(seen / trained, 1), "final_loss": float(np.mean(losses[-100:]))}


@torch.no_grad()
def sample(unet, train_scheduler, n: int, classes: int, shape: tuple[int, int, int], args
           ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Class-balanced images by DPM-Solver++ with classifier-free guidance (one doubled batch per step)."""
    from diffusers import DPMSolverMultistepScheduler

    labels = np.arange(n) % classes
    chunks, started = [], time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed + 1)
    for start in range(0, n, SAMPLE_BATCH):
        label = torch.from_numpy(labels[start:start + SAMPLE_BATCH]).long()
        solver = DPMSolverMultistepScheduler.from_config(train_scheduler.config)
        solver.set_timesteps(args.steps)
        x = torch.randn(len(label), *shape, generator=generator)
        both = torch.cat([label, torch.full_like(label, classes)])
        for t in solver.timesteps:
            with precision_context(args.precision):
                eps = unet(torch.cat([x, x]), t, class_labels=both).sample.float()
            conditional, unconditional = eps.chunk(2)
            x = solver.step(unconditional + args.guidance * (conditional - unconditional), t, x).prev_sample
        chunks.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
        print(f"sampled {start + len(label)} / {n}", flush=True)
    elapsed = time.perf_counter() - started
    return np.concatenate(chunks), labels, (round(n / elapsed, 2) if n else None)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = peer_output_folder(args)
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels, class_names = load_train_split(args.config, args.data)
    labels, classes = np.asarray(labels), len(class_names)
    shape = tuple(images.shape[1:])
    unet = build_unet(shape[-1], shape[0], classes, args.width)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    ema = EMAModel(unet.parameters(), decay=EMA_MAX_DECAY, use_ema_warmup=True, inv_gamma=EMA_INV_GAMMA,
                   power=EMA_POWER) if args.ema == "warmup" else None
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr)
    parameters = sum(p.numel() for p in unet.parameters())
    print(f"diffusers {importlib.metadata.version('diffusers')} UNet2DModel: {parameters:,} parameters, "
          f"{len(images):,} training images, {args.seconds:g} s on {args.threads} thread(s), {args.precision}",
          flush=True)
    figures = train(unet, scheduler, ema, optimizer, images, labels, classes, args)
    if ema is not None:
        ema.copy_to(unet.parameters())
    samples, sample_labels, rate = sample(unet.eval(), scheduler, args.n, classes, shape, args)
    record = {"library": "diffusers", "version": importlib.metadata.version("diffusers"), "parameters": parameters,
              "seconds_budget": args.seconds, **figures, "sampling_images_per_s": rate, "solver": "dpm++",
              "sampling_steps": args.steps, "guidance": args.guidance, "samples": len(samples), "seed": args.seed,
              "threads": args.threads, "precision": args.precision, "batch_size": args.batch_size, "lr": args.lr,
              "width": args.width, "ema": args.ema if args.ema == "none" else
              {"inv_gamma": EMA_INV_GAMMA, "power": EMA_POWER, "max_decay": EMA_MAX_DECAY},
              "null_drop": NULL_DROP, "data": args.data, "torch": torch.__version__}
    write_peer_run(out, samples, sample_labels, f"diffusers UNet2DModel, class-conditional (num_class_embeds), "
                   f"{args.seconds:g} s", record, figures, rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
