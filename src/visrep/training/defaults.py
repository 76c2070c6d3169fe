"""A classifier's schedule when the user has not set one: enough optimizer steps whatever the split's size.

Ten epochs, the old fixed default, are 20 steps for a 700-photo folder at batch 32 with a fixed batch
of 256 and about 200 at the derived batch: too few for SGD from scratch. Epochs are raised until the run
makes MIN_STEPS optimizer steps, within MIN_EPOCHS-MAX_EPOCHS (a large set gets MIN_EPOCHS, as before).
"""

from __future__ import annotations

import math

# optimizer steps a from-scratch run gets at least. Chosen on photo folders (issue 33, 3 seeds, best val;
# benchmarks/results/folder_defaults.json): 400 steps left flowers17 at 0.917 and clothing10 at 0.515,
# 800 reached 0.941 and 0.547.
MIN_STEPS = 800
MIN_EPOCHS = 10  # never fewer passes than the old default ...
MAX_EPOCHS = 60  # ... nor so many that a tiny folder trains for its own sake (a user sets more)


def default_epochs(steps_per_epoch: int) -> tuple[int, str]:
    """(epochs, how it was chosen) for ``steps_per_epoch`` optimizer steps per epoch."""
    wanted = math.ceil(MIN_STEPS / max(1, steps_per_epoch))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, wanted))
    return epochs, (f"{steps_per_epoch} steps per epoch; at least {MIN_STEPS} steps in all, within "
                    f"{MIN_EPOCHS}-{MAX_EPOCHS} epochs: {epochs * steps_per_epoch} steps")


def fill_epochs(train_cfg, steps_per_epoch: int, say=print) -> None:
    """Fill an unset train.epochs (saved so in the run's config.yaml) and say so."""
    if train_cfg.epochs is None:
        train_cfg.epochs, how = default_epochs(steps_per_epoch)
        say(f"train.epochs not given: {train_cfg.epochs} ({how}; set train.epochs to choose)")
