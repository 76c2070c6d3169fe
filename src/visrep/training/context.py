"""What every training loop sets up the same way before its first step: the run context.

Order matters and is the same for every stage: the device (train.device), the process group (its
backend follows the device), seeds, deterministic mode and threads first; then the data (prepared
here unless the caller passes it in) and the precision;
and only after the model is built (so that a bad model name leaves no run directory behind) the
run directory, with the manifest, the normalisation statistics and compute.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from visrep.data.batching import fill_batch_size
from visrep.data.inspect import carved_lines
from visrep.data.manifest import write_manifest
from visrep.data.sanity import data_warnings
from visrep.data.prepare import PreparedData, prepare_data
from visrep.hardware.distributed import DistInfo, launched_info, resolve_device, setup_distributed
from visrep.hardware.precision import PrecisionChoice, resolve_precision
from visrep.hardware.record import compute_line, compute_record
from visrep.hardware.threads import apply_threads
from visrep.runs import Run, create_run, open_run
from visrep.seeding import seed_everything, set_deterministic


@dataclass
class RunContext:
    cfg: object  # the stage's config (run:, data:, train: sections)
    data: PreparedData
    dist: DistInfo
    device: torch.device
    precision: PrecisionChoice
    progress: bool
    run: Run | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @classmethod
    def prepare(cls, cfg, progress: bool = True, data: PreparedData | None = None) -> "RunContext":
        """Device, process group, seeds, threads, data and precision; no run directory yet."""
        device = resolve_device(cfg.train.device, launched_info(), "train.device")
        dist = setup_distributed(device)
        seed_everything(cfg.run.seed)  # the same on every rank: weights, EMA copies, grids (see seed_rank_streams)
        set_deterministic(cfg.run.deterministic)
        apply_threads(cfg.train.threads)
        data = data if data is not None else prepare_data(cfg.data, progress=progress and dist.is_main)
        # per process: under DDP each rank trains on its shard with its own batch of data.batch_size
        fill_batch_size(cfg.data, len(data.splits["train"]) // dist.world_size,
                        say=print if dist.is_main else (lambda line: None))
        precision = resolve_precision(cfg.train.precision, device, "train.precision", training=True)
        return cls(cfg, data, dist, device, precision, progress)

    def seed_rank_streams(self) -> None:
        """Under DDP each rank draws its own batches, noise and augmentation from here on (seed + rank);
        everything built before (initial weights, EMA and lookahead copies) was the same on every rank.
        Called once the loop is built, before a resume restores each rank's saved RNG states; one
        process keeps its single stream untouched."""
        if self.dist.enabled:
            seed_everything(self.cfg.run.seed + self.dist.rank)

    def open_run(self, stage: str, resume: Path | None = None) -> Run:
        """A new run directory (rank 0 writes manifest and normalisation), or the one being resumed."""
        if resume is not None:
            self.run = open_run(resume, self.data.manifest["hash"])
            return self.run
        self.run = create_run(self.cfg, stage, self.is_main)
        if self.is_main:
            write_manifest(self.data.manifest, self.run.file("manifest.json"))
            self.run.write_json("normalization.json", self.data.normalization.to_dict())
            for line in carved_lines(self.data.manifest.get("carved", {})):  # a split the source lacked
                self.run.logger.info(line)
            for line in data_warnings(self.data.manifest, self.cfg.data.batch_size):
                self.run.logger.warning("warning: %s", line)
        return self.run

    def ddp(self, module: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """``module`` in DistributedDataParallel under torchrun (gradients averaged over the ranks at each
        backward; buffers such as BatchNorm statistics broadcast from rank 0 at each forward), else itself."""
        if not self.dist.enabled:
            return module
        ids = [self.dist.local_rank] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                         find_unused_parameters=find_unused_parameters)

    def record_compute(self, channels_last: bool) -> str:
        """compute.json (what precision, threads and CPU flags were picked, and why); returns the log line."""
        if self.is_main and self.run is not None:
            self.run.write_json("compute.json", compute_record(self.device, self.precision, channels_last))
        return compute_line(self.device, self.precision)
