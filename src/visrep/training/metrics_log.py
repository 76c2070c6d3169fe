"""Where a training loop's numbers go: metrics.jsonl, TensorBoard, the console, progress bars.

Only the main process (rank 0 under DDP) writes; on other ranks every method is a no-op. One JSON
line per record (an epoch for the classifier, a logging interval for a generator), appended; a
resumed run first drops the lines after its checkpoint, so that replayed records are not doubled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from visrep.runs import Run


class MetricsLogger:
    def __init__(self, run: Run, is_main: bool = True, tensorboard: bool = False, progress: bool = True,
                 scalars: Sequence[str] = ()):
        """``scalars``: the record keys sent to TensorBoard (all numeric keys when empty)."""
        self.run, self.is_main, self.progress, self.scalars = run, is_main, progress, tuple(scalars)
        self.path = run.file("metrics.jsonl")
        self.tensorboard = _open_tensorboard(run) if tensorboard and is_main else None

    def log(self, record: dict, step: int, message: str | None = None) -> None:
        """Append ``record`` to metrics.jsonl, its scalars to TensorBoard at ``step``, ``message`` to the log."""
        if not self.is_main:
            return
        if message:
            self.run.logger.info(message)
        with open(self.path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key in self.scalars or [k for k, v in record.items() if isinstance(v, (int, float))]:
                if record.get(key) is not None:
                    self.tensorboard.add_scalar(key, record[key], step)

    def history(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate(self, key: str, last: int) -> None:
        """Drop the records whose ``key`` is beyond ``last`` (they will be recomputed after a resume)."""
        if self.is_main and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)[key] <= last]
            self.path.write_text("".join(line + "\n" for line in kept))

    def bar(self, iterable: Iterable, description: str, **kwargs) -> Iterable:
        """A progress bar on the main process when progress is on (refreshed at most once a second)."""
        return tqdm(iterable, desc=description, leave=False, disable=not (self.progress and self.is_main) or None,
                    mininterval=1.0, **kwargs)

    def image(self, tag: str, path: Path, step: int) -> None:
        """A PNG already written to the run directory (a sample grid), also shown in TensorBoard."""
        if self.tensorboard is not None:
            import numpy as np
            from PIL import Image

            self.tensorboard.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _open_tensorboard(run: Run):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run.file("tensorboard")))


def accumulate(interval: dict, record: dict) -> None:
    """Add one step's numbers (tensors or floats) to the running sums of a logging interval; ``_steps`` counts."""
    for key, value in record.items():
        interval[key] = interval.get(key, 0.0) + float(value.detach() if torch.is_tensor(value) else value)
    interval["_steps"] = interval.get("_steps", 0.0) + 1


def interval_means(interval: dict) -> dict:
    """The logging interval's sums → means (empty when no step was added)."""
    steps = interval.get("_steps", 0.0)
    return {key: value / steps for key, value in interval.items() if key != "_steps"} if steps else {}


def out_of_time(train_seconds: float, max_minutes: float | None) -> bool:
    """Whether a loop with a train.max_minutes budget has used it (None: no budget)."""
    return max_minutes is not None and train_seconds >= 60 * max_minutes
