"""What a stage runs on, as written to ``<run>/compute.json``: device, precision, threads, CPU."""

from __future__ import annotations

import torch

from visrep.hardware.cpu import read_cpu_info
from visrep.hardware.precision import PrecisionChoice
from visrep.hardware.threads import configure_process


def compute_record(device: torch.device, precision: PrecisionChoice, channels_last: bool) -> dict:
    """JSON-ready: what was picked and why (the CPU flags seen, the load seen)."""
    return {"device": str(device), "precision": precision.to_dict(), "channels_last": bool(channels_last),
            "threads": {**configure_process().to_dict(), "torch_threads": torch.get_num_threads()},
            "cpu": read_cpu_info().to_dict()}


def compute_line(device: torch.device, precision: PrecisionChoice) -> str:
    """One log line: 'cpu, fp32 (no AMX or AVX512_BF16: ...), 1 thread (2 usable cores, 1.0 busy ...)'."""
    threads = configure_process()
    count = torch.get_num_threads()
    return (f"{device}, {precision.precision} ({precision.reason}), {count} thread{'s' * (count != 1)} "
            f"({threads.reason})")
