"""Process-group facts for torchrun + DistributedDataParallel, and the device a stage runs on.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything runs as the single rank 0
and every helper here is a no-op. The backend follows the device: NCCL on CUDA, gloo on CPU.

``device: auto | cpu | cuda | mps`` (every config's train.device, and --device of the scoring and
sampling verbs): auto takes CUDA when visible (GPU ``LOCAL_RANK`` under torchrun), else the CPU.
Apple's MPS is there when asked for by name, one process only; auto does not pick it: the loops
were never run on it (float64 reductions and airbench's eigh have no MPS kernels).
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from visrep.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
# rank 0 may work alone at the end (final report, evaluator test accuracy) while the others wait
GROUP_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_info() -> DistInfo:
    """What torchrun says about this process (rank 0 of 1 without torchrun)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def current_info() -> DistInfo:
    """This process's rank once the process group is up (rank 0 of 1 otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return launched_info()


def check_device(requested: str, key: str = "train.device") -> None:
    if requested not in DEVICES:
        raise UserError(f"{key} must be one of {', '.join(DEVICES)} (got '{requested}')")


def resolve_device(requested: str = "auto", info: DistInfo | None = None, key: str = "train.device") -> torch.device:
    """The torch device for ``requested``; one clear UserError when it is not there."""
    check_device(requested, key)
    info = info or launched_info()
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError(f"{key}=cuda but no CUDA device is visible (torch {torch.__version__}); "
                            f"use {key}=auto or cpu")
        if info.local_rank >= torch.cuda.device_count():
            raise UserError(f"process {info.local_rank} on this machine has no GPU of its own "
                            f"({torch.cuda.device_count()} visible): start at most that many with --nproc_per_node")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    if requested == "mps":
        if not _mps_available():
            raise UserError(f"{key}=mps but Apple's MPS backend is not available here; use {key}=auto or cpu")
        if info.enabled:
            raise UserError(f"{key}=mps runs as one process: torch.distributed has no MPS backend")
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def setup_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the process group torchrun started (NCCL for a CUDA device, gloo otherwise); rank 0 of 1 without it."""
    info = launched_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    return info


def _collective_device() -> torch.device:
    """Where a tensor must live for the group's backend: NCCL reduces CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``values`` summed over the ranks, returned on the CPU (float64 stays float64)."""
    if not info.enabled:
        return values.cpu()
    reduced = values.to(_collective_device())
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any: a decision (stop now, skip this batch) all ranks
    must take together."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_across_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Each number averaged over the ranks (every rank passes the same keys in the same order)."""
    if not info.enabled or not values:
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return dict(zip(values, (stacked / info.world_size).tolist()))


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (a run directory's name, a decision made on rank 0)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sharded_results(count: int, compute: Callable[[int], Any], info: DistInfo | None = None) -> list[Any]:
    """``compute(i)`` for i in 0..count−1, item i on rank i mod world size; every rank gets all results in order.

    Round-robin over whole items (batches), so a batch holds the same images as in one process and
    gives the same numbers. Results must be CPU objects (they are pickled to travel)."""
    info = info or current_info()
    if not info.enabled:
        return [compute(index) for index in range(count)]
    mine = {index: compute(index) for index in range(info.rank, count, info.world_size)}
    merged: dict[int, Any] = {}
    for part in gather_objects(mine, info):
        merged.update(part)
    return [merged[index] for index in range(count)]


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm statistics) copied into ``module`` on every rank."""
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def leave_process_group() -> None:
    """After a command succeeded: wait for every rank (rank 0 may still be writing its files), then leave
    the process group; a process that exits while gloo's threads still run is aborted."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()  # release finished work objects (and their tensors) now, not during interpreter shutdown
