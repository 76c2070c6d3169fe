"""The outer loop of every step-trained stage (GAN, diffusion, guide), written once.

A stage subclasses :class:`StepLoop` with its networks and writes only what differs: its step
(:meth:`StepLoop.train_step`), the line it logs, what it does between steps besides logging and
checkpointing (sample grids, a collapse check) and its outputs (:meth:`StepLoop.finish`). What every
stage does around the step is here: refusing a finished run, restoring the last checkpoint, the
progress bar, ``train.max_minutes``, the logging interval and the periodic checkpoint.

Written for DistributedDataParallel as the stages are: every rank runs the loop, logging means are
averaged over the ranks, and the time budget stops all ranks together.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch

from visrep.data.prepare import PreparedData
from visrep.errors import UserError
from visrep.hardware.distributed import any_rank, mean_across_ranks
from visrep.training.checkpointer import Checkpointer
from visrep.training.context import RunContext
from visrep.training.guards import NonFiniteGuard
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger, accumulate, interval_means, out_of_time


@dataclass
class StepState:
    """What a checkpoint restores besides the networks (``trainer`` in the checkpoint)."""
    step: int = 0  # optimizer steps taken (the generator's, for a GAN)
    images_seen: int = 0  # training images shown, over every rank
    train_seconds: float = 0.0  # inside training steps only
    interval: dict = field(default_factory=dict)  # sums of the logged numbers since the last record

    def close_step(self, images: int, started: float, record: dict) -> None:
        """Count one finished step: ``images`` shown (all ranks), the seconds since ``started``
        (a ``time.perf_counter()``), and its numbers for the next log record."""
        self.step += 1
        self.images_seen += images
        self.train_seconds += time.perf_counter() - started
        accumulate(self.interval, record)


@dataclass(kw_only=True)
class StepLoop:
    """The parts every step-trained stage has; a stage's subclass adds its networks and optimizers."""
    ctx: RunContext
    guard: NonFiniteGuard
    checkpointer: Checkpointer
    log: MetricsLogger
    state: StepState = field(default_factory=StepState)

    stage: ClassVar[str] = ""  # the run's stage name, as in the progress bar

    @property
    def cfg(self):
        return self.ctx.cfg

    # ---- what a stage writes -----------------------------------------------------------------------
    def start_line(self) -> str:
        """The line logged before the first step (what is trained, for how long, on what)."""
        raise NotImplementedError

    def train_step(self) -> None:
        """One step; ends with ``self.state.close_step(...)``."""
        raise NotImplementedError

    def log_line(self, record: dict) -> str:
        """The console line of one metrics record."""
        raise NotImplementedError

    def between_steps(self) -> None:
        """Work at the stage's own intervals after a step (sample grids, health checks); none by default."""

    def may_checkpoint(self) -> bool:
        """Whether the state after this step is one to resume from."""
        return True

    def log_extra(self) -> dict:
        """Numbers the stage adds to each metrics record (e.g. the learning rate)."""
        return {}

    def finish(self) -> None:
        """The stage's outputs; ``metrics.json`` is written last (it marks the run finished)."""
        raise NotImplementedError

    # ---- shared by every stage ---------------------------------------------------------------------
    def guarded_step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters,
                     scaler: LossScaler) -> None:
        """The optimizer step, unless the guard finds the loss (or, outside fp16, a gradient) non-finite;
        the gradients must already be unscaled (``scaler.unscale(optimizer)``)."""
        usable = self.guard.batch_is_usable(loss, scaler.guarded(parameters), self.state.step, 0)
        scaler.finish_step(optimizer, usable)

    def log_interval(self) -> None:
        """One metrics record: the means since the last one (every rank calls this together)."""
        state = self.state
        means = mean_across_ranks(interval_means(state.interval), self.ctx.dist)
        if not means:
            return
        record = {"step": state.step, **means, **self.log_extra(), "images_seen": state.images_seen,
                  "train_seconds": state.train_seconds,
                  "images_per_s": state.images_seen / max(state.train_seconds, 1e-9)}
        state.interval = {}
        self.log.log(record, state.step, self.log_line(record))


def train_or_resume(prepare: Callable[..., StepLoop], cfg, resume: Path | None = None, progress: bool = True,
                    data: PreparedData | None = None) -> Path:
    """Build the loop with ``prepare(cfg, progress, data, resume)``, train it to the end and return the run
    directory; ``resume``: an unfinished run directory whose last checkpoint is restored first."""
    if resume is not None and (Path(resume) / "metrics.json").is_file():  # written only when training ends
        raise UserError(f"{resume} finished training already (it has metrics.json): nothing to resume")
    loop = prepare(cfg, progress, data, resume)
    run_steps(loop, resumed=resume is not None)
    return loop.ctx.run.path


def run_steps(loop: StepLoop, resumed: bool = False) -> None:
    """Steps until ``train.steps`` or ``train.max_minutes``, then the stage's outputs."""
    loop.ctx.seed_rank_streams()
    cfg, run = loop.cfg, loop.ctx.run
    if resumed:
        loop.state = type(loop.state)(**loop.checkpointer.restore_latest()["trainer"])
        loop.log.truncate("step", loop.state.step)
        run.logger.info("resumed at step %d", loop.state.step)
    run.logger.info(loop.start_line())
    for _ in loop.log.bar(range(loop.state.step, cfg.train.steps), loop.stage, total=cfg.train.steps,
                          initial=loop.state.step):
        loop.train_step()
        after_step(loop)
        if any_rank(out_of_time(loop.state.train_seconds, cfg.train.max_minutes), loop.ctx.dist):
            run.logger.info("stopped at step %d: train.max_minutes=%s reached", loop.state.step,
                            cfg.train.max_minutes)
            break
    loop.log_interval()
    loop.finish()


def after_step(loop: StepLoop) -> None:
    """Metrics, the stage's own work, then the checkpoint, each at its interval."""
    cfg, state = loop.cfg, loop.state
    if state.step % cfg.train.log_every == 0 or state.step == cfg.train.steps:
        loop.log_interval()
    loop.between_steps()
    if state.step % cfg.train.checkpoint_every == 0 and loop.may_checkpoint():  # every rank: see Checkpointer
        loop.checkpointer.save(state.step, trainer=asdict(state))
