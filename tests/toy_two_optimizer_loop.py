"""A toy GAN-shaped loop built from the training parts: two networks, two optimizers, an EMA copy.

    python tests/toy_two_optimizer_loop.py RUNS_ROOT NAME [--resume]

It exists to show that the parts fit a loop that is not the classifier's (tests/test_training_parts.py
kills it mid-run and checks that the resumed run ends with the same weights). The 2-D "data" is a
Gaussian drawn from torch's global RNG, so a resume that lost the RNG state would diverge.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

from visrep.config import ClassifierConfig, load_config
from visrep.runs import create_run, open_run
from visrep.seeding import seed_everything, set_deterministic
from visrep.training.checkpointer import Checkpointer
from visrep.training.ema import EMA
from visrep.training.guards import NonFiniteGuard
from visrep.training.metrics_log import MetricsLogger

STEPS, CHECKPOINT_EVERY, BATCH = 60, 5, 32
STEP_SLEEP_S = 0.03  # slows the loop so that a kill can land between checkpoints


def networks() -> tuple[nn.Module, nn.Module]:
    generator = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    discriminator = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return generator, discriminator


def real_batch() -> torch.Tensor:
    return torch.randn(BATCH, 2) * 0.5 + torch.tensor([1.0, -1.0])


def main(root: str, name: str, resume: bool) -> None:
    cfg = load_config(overrides=[f"run.root={root}", f"run.name={name}", "run.deterministic=true"],
                      schema=ClassifierConfig)
    seed_everything(0)
    set_deterministic(True)
    generator, discriminator = networks()
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.9))
    ema = EMA(generator, decay=0.9)
    run = open_run(Path(root) / name) if resume else create_run(cfg, "toy")
    checkpointer = Checkpointer(run.file("checkpoints"), keep=2, logger=run.logger, generator=generator,
                                discriminator=discriminator, opt_g=opt_g, opt_d=opt_d, ema=ema)
    log = MetricsLogger(run, tensorboard=False, progress=False)
    guard = NonFiniteGuard("toy gan")
    step = checkpointer.restore_latest()["step"] if resume else 0
    log.truncate("step", step)
    while step < STEPS:
        d_loss, g_loss = gan_step(generator, discriminator, opt_g, opt_d, guard, step)
        ema.update(generator)
        step += 1
        time.sleep(STEP_SLEEP_S)
        if step % CHECKPOINT_EVERY == 0:
            log.log({"step": step, "d_loss": d_loss, "g_loss": g_loss}, step)
            checkpointer.save(step // CHECKPOINT_EVERY, step=step)
    torch.save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "ema": ema.model.state_dict()}, run.file("final.pt"))


def gan_step(generator, discriminator, opt_g, opt_d, guard, step: int) -> tuple[float, float]:
    """One hinge-loss discriminator step, then one generator step."""
    fake = generator(torch.randn(BATCH, 4))
    d_loss = torch.relu(1 - discriminator(real_batch())).mean() + torch.relu(1 + discriminator(fake.detach())).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    if guard.batch_is_usable(d_loss, discriminator.parameters(), step, 1):
        opt_d.step()
    g_loss = -discriminator(generator(torch.randn(BATCH, 4))).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    if guard.batch_is_usable(g_loss, generator.parameters(), step, 1):
        opt_g.step()
    return float(d_loss), float(g_loss)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--resume" in sys.argv[3:])
