"""How a training split is cut into batches when the user has not said: the batch size from the split's
size, and whether an epoch's last, short batch is kept.

The old fixed default (256) gave a folder of 717 photos two optimizer steps per epoch, and dropping
the short last batch left 29 % of the images out of every epoch: 61.9 % val where batch 32 reached
90.1 %. A batch of about a twentieth of the split, as a power of two within 16-256, gives every
folder 16-32 steps per epoch and leaves MNIST- and CIFAR-sized sets at 256.
"""

from __future__ import annotations

import math

MIN_BATCH = 16  # below this BatchNorm's batch statistics get noisy and a step costs as much as a bigger one
MAX_BATCH = 256  # above this plain SGD needs a retuned learning rate; large sets have steps enough at 256
STEPS_PER_EPOCH = 20  # the batch is about split / this, rounded to a power of two


def default_batch_size(train_images: int) -> tuple[int, str]:
    """(batch size, how it was chosen) for a training split of ``train_images`` images."""
    if train_images < 1:
        return MIN_BATCH, "no training images"
    exponent = round(math.log2(max(train_images / STEPS_PER_EPOCH, 1)))
    batch = min(MAX_BATCH, max(MIN_BATCH, 2 ** exponent))
    return batch, (f"{train_images} training images / {STEPS_PER_EPOCH}, to a power of two within "
                   f"{MIN_BATCH}-{MAX_BATCH}")


def keeps_last_batch(train_images: int, batch_size: int) -> bool:
    """Whether an epoch keeps its short last batch. Dropped only when it holds under a quarter of a batch:
    such a sliver would give one step of noisy BatchNorm statistics and full weight; the shuffle then
    rotates which images miss an epoch, and no image misses every epoch. A larger remainder is trained on."""
    remainder = train_images % batch_size
    return remainder == 0 or remainder >= max(2, batch_size // 4)


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps of one epoch at ``batch_size``, the short last batch kept or dropped as training does."""
    if keeps_last_batch(train_images, batch_size):
        return max(1, -(-train_images // batch_size))
    return max(1, train_images // batch_size)


def fill_batch_size(data_cfg, train_images: int, say=print) -> None:
    """Fill an unset data.batch_size from the training split (saved so in the run's config.yaml) and say so.

    ``train_images``: what one process trains on (under DDP its shard), since the batch is per process."""
    if data_cfg.batch_size is None:
        data_cfg.batch_size, how = default_batch_size(train_images)
        say(f"data.batch_size not given: {data_cfg.batch_size} ({how}; set data.batch_size to choose)")
