"""Save and restore any named set of training objects, for exact resume after a crash or a kill.

Any object with ``state_dict()`` / ``load_state_dict()`` can be named: modules, optimizers,
schedulers, an EMA, a lookahead, a GAN's two networks and two optimizers. Each save writes
``<folder>/state-<index>.pt`` atomically (visrep.storage: temporary file, fsync, rename) with
every object's state, the Python/NumPy/torch RNG states and the loop's own plain values, keeps the
newest ``keep`` files, and loads back with ``weights_only=True``. A loop that restores the newest
state and replays its remaining steps ends with exactly the numbers of an uninterrupted run
(deterministic mode; tests/test_training_parts.py and the kill-and-resume tests).

Under DDP every rank calls :meth:`Checkpointer.save` (the weights are the same on every rank, but
each rank draws its own batches and noise): the RNG states of all ranks are gathered into the one
file rank 0 writes, and on resume each rank takes back its own. Such a file resumes only with the
same number of processes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from visrep.errors import UserError
from visrep.hardware.distributed import DistInfo, gather_objects
from visrep.storage import load_state, restore_rng_state, rng_state, save_state

RNG_KEY = "rng"


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def _index(path: Path) -> tuple[int, str]:
    digits = path.stem.removeprefix("state-")
    return (int(digits), path.name) if digits.isdigit() else (-1, path.name)


class Checkpointer:
    def __init__(self, folder: Path, keep: int = 2, logger: logging.Logger | None = None,
                 dist: DistInfo | None = None, **objects: Stateful | None):
        """``objects``: name → stateful object; None entries (an EMA that is switched off) are left out."""
        self.folder, self.keep, self.logger = Path(folder), max(1, int(keep)), logger
        self.dist = dist or DistInfo()
        self.objects = {name: obj for name, obj in objects.items() if obj is not None}
        if RNG_KEY in self.objects:
            raise ValueError(f"'{RNG_KEY}' is reserved for the RNG states")

    def save(self, index: int, **values: Any) -> Path | None:
        """state-<index>.pt with every object's state, the RNG states and ``values`` (plain data).

        Called on every rank under DDP (it gathers their RNG states); only rank 0 writes, and only it
        gets the path back."""
        clash = set(values) & (set(self.objects) | {RNG_KEY})
        if clash:
            raise ValueError(f"values {sorted(clash)} clash with checkpointed object names")
        rng = gather_objects(rng_state(), self.dist) if self.dist.enabled else rng_state()
        if not self.dist.is_main:
            return None
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        state.update(values, **{RNG_KEY: rng})
        path = save_state(state, self.folder / f"state-{index:05d}.pt")
        for old in self.saved()[:-self.keep]:
            old.unlink()
        return path

    def saved(self) -> list[Path]:
        """state-*.pt oldest first, by index as a number (state-100000 comes after state-99999)."""
        return sorted(self.folder.glob("state-*.pt"), key=_index)

    def restore_latest(self) -> dict:
        """Load the newest readable state into the objects and the RNGs; return the saved ``values``.

        A truncated or corrupt newest file is skipped for the one before it."""
        candidates = list(reversed(self.saved()))
        if not candidates:
            raise UserError(f"nothing to resume in {self.folder.parent}: no {self.folder.name}/state-*.pt")
        for path in candidates:
            try:
                state = load_state(path)
            except UserError as err:
                if self.logger is not None:
                    self.logger.warning("skipping unreadable checkpoint %s (%s)", path.name, err)
                continue
            self._load(state)
            if self.logger is not None:
                self.logger.info("resumed from %s", path.name)
            return {key: value for key, value in state.items() if key not in self.objects and key != RNG_KEY}
        raise UserError(f"no readable training state in {self.folder}")

    def _load(self, state: dict) -> None:
        own_rng = self._own_rng(state[RNG_KEY])  # first: a refused resume loads nothing
        for name, obj in self.objects.items():
            if state.get(name) is not None:  # a state saved before an object existed leaves it as built
                obj.load_state_dict(state[name])
        restore_rng_state(own_rng)

    def _own_rng(self, saved: dict | list) -> dict:
        """This rank's RNG states: a list holds one per rank (a DDP run), a dict the one process's."""
        processes = len(saved) if isinstance(saved, list) else 1
        if processes != self.dist.world_size:
            raise UserError(f"{self.folder.parent} was checkpointed by {processes} process(es); resume it with "
                            f"{processes} (torchrun --nproc_per_node) to continue exactly, not {self.dist.world_size}")
        return saved[self.dist.rank] if isinstance(saved, list) else saved
