"""Small committed figures of a trained generator (GAN or diffusion): a class grid, and given images with
their variations.

    python benchmarks/gan_figures.py classes RUN OUT.png [--per-class 8]
    python benchmarks/gan_figures.py variations RUN OUT.png [--images 6] [--per-image 7]

``variations`` needs an embedding-conditional run: each row is a held-out test image of the run's
data (framed red; one per class, in class order) followed by samples conditioned on its embedding.
Both use the package's public sampling API, with seed 0.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from visrep.data.prepare import prepare_data
from visrep.figures import save_image_grid
from visrep.representations.embed import embed_conditions
from visrep.generate.generator_run import load_generator_run
from visrep.generate.sample import generate, latents, sample_class


def class_grid(run_path: str, out: str, per_class: int) -> None:
    run = load_generator_run(run_path)
    rows = [sample_class(run, label, per_class, seed=label).images for label in range(len(run.class_names))]
    save_image_grid(torch.cat(rows), out, per_class, row_labels=run.class_names)


def variations_grid(run_path: str, out: str, images: int, per_image: int) -> None:
    run = load_generator_run(run_path)
    test = prepare_data(run.cfg.data, progress=False).splits["test"]
    labels = test.labels.numpy()
    rows = [int(np.flatnonzero(labels == label)[0]) for label in range(min(images, len(run.class_names)))]
    given = test.uint8_batch(np.array(rows))
    embeddings = embed_conditions(run.encoder(), given, run.layer)
    tiles, frames = [], []
    for index, embedding in enumerate(embeddings):
        made = generate(run, latents(run, per_image, seed=index), embedding.expand(per_image, -1))
        tiles += [given[index:index + 1], made]
        frames += [(220, 40, 40)] + [None] * per_image
    save_image_grid(torch.cat(tiles), out, per_image + 1, frames=frames)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("classes", "variations"))
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--per-image", type=int, default=7)
    args = parser.parse_args(argv)
    if args.kind == "classes":
        class_grid(args.run, args.out, args.per_class)
    else:
        variations_grid(args.run, args.out, args.images, args.per_image)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
