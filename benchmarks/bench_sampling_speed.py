"""Sampling throughput side by side: our diffusion run against denoising-diffusion-pytorch's
classifier-free-guidance sampler, both at 20 guided steps, alternating, median of repeats.

    python benchmarks/bench_sampling_speed.py RUN [--n 500] [--repeats 3] [--threads 2] \
        [--variant NAME=--guidance-interval,0.3,0.7 ...] [--out JSON]

Sampling speed does not depend on the weights, so the baseline is its package's U-Net at the
issue's size (dim 32, dim_mults (1, 2, 4)) as built by benchmarks/baseline_ddpm.py, freshly
initialised; ours is the trained run, loaded as ``visrep sample`` loads it. Each repeat samples N
class-balanced images with each model in turn (same bf16 autocast, same threads), so that a busy
machine slows both alike; the figure is the median images/s over the repeats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch

from baseline_ddpm import COND_SCALE, RESCALED_PHI, precision_context, require_package
from common import machine_line
from verdicts import SAMPLING_IMAGES_PER_S, SAMPLING_SPEED_RATIO, sampling_speed_met, sampling_speed_rows

from visrep.generate.generator_run import load_generator_run
from visrep.generate.sample import sample_unconditional

BASELINE = "denoising-diffusion-pytorch 2.3.4"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained diffusion run")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAG,VALUE,...",
                        help="ours with other sampling settings, e.g. interval=--guidance-interval,0.3,0.7")
    parser.add_argument("--out")
    return parser.parse_args(argv)


def ours_sampler(run_path: str, steps: int, extra: dict):
    run = load_generator_run(run_path, sampling={"steps": steps, **extra})
    return lambda n: sample_unconditional(run, n, seed=0)


def baseline_sampler(steps: int, channels: int, size: int, classes: int):
    Unet, GaussianDiffusion, _ = require_package()
    model = Unet(dim=32, dim_mults=(1, 2, 4), num_classes=classes, channels=channels)
    diffusion = GaussianDiffusion(model, image_size=size, timesteps=1000, sampling_timesteps=steps).eval()

    @torch.no_grad()
    def sample(n: int):
        with precision_context("bf16"):
            return diffusion.sample(torch.arange(n) % classes, cond_scale=COND_SCALE, rescaled_phi=RESCALED_PHI)
    return sample


def _variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    flag, *values = spec.split(",")
    key = flag.lstrip("-").replace("-", "_")
    return name, {key: [float(v) for v in values] if len(values) > 1 else float(values[0])}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = ours_sampler(args.run, args.steps, {})
    channels, size, _ = load_generator_run(args.run).image_shape
    samplers = {"ours (the run's settings)": ours}
    for text in args.variant:
        name, extra = _variant(text)
        samplers[f"ours, {name}"] = ours_sampler(args.run, args.steps, extra)
    samplers[BASELINE] = baseline_sampler(args.steps, channels, size, 10)
    rates = {name: [] for name in samplers}
    for name, sample in samplers.items():  # warm-up
        sample(8)
    for _ in range(args.repeats):
        for name, sample in samplers.items():
            started = time.perf_counter()
            sample(args.n)
            rates[name].append(args.n / (time.perf_counter() - started))
    rows = sampling_speed_rows(rates, BASELINE)  # the baseline last
    record = {"goal": "Diffusion sampling speed beside denoising-diffusion-pytorch", "issue": 22, "order": 92,
              "target": f"≥ {SAMPLING_SPEED_RATIO}× the baseline's sampling throughput at 20 guided steps "
                        f"(aim ≥ {SAMPLING_IMAGES_PER_S} img/s)",
              "met": sampling_speed_met(rows[:-1]),
              "headline": ", ".join(f"{r['model']}: {r['images_per_s']} img/s ({r['ratio']}×)" for r in rows[:-1]),
              "host": machine_line(), "date": datetime.date.today().isoformat(), "commit": None,
              "source": "benchmarks/bench_sampling_speed.py output",
              "command": ["python benchmarks/bench_sampling_speed.py " + " ".join(sys.argv[1:])],
              "seeds": {"sampling": 0},
              "setup": f"{args.n} class-balanced images per model and repeat, {args.repeats} repeats alternating "
                       f"between the models, {args.steps} steps, bf16 autocast, {args.threads} threads.",
              "tables": [{"title": "Sampling throughput, median over repeats",
                          "columns": [{"key": "model", "label": "model"},
                                      {"key": "images_per_s", "label": "images/s"},
                                      {"key": "ratio", "label": "÷ baseline"},
                                      {"key": "runs", "label": "each repeat"}],
                          "rows": [{**r, "runs": ", ".join(map(str, r["runs"]))} for r in rows]}],
              "notes": []}
    text = json.dumps(record, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        open(args.out, "w").write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
