"""Run one ``visrep train <stage>`` command and record, per process, a digest of the weights it ended with.

Used by tests/test_distributed.py under torchrun: DistributedDataParallel keeps the replicas equal
only if every rank's gradients are averaged before each step, so equal digests on every rank show
that the step really was synchronised (a rank that trained alone would drift from the first step).

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_probe.py OUT_DIR STAGE [visrep args...]

With VISREP_PROBE_STOP_AT=K every rank stops (KeyboardInterrupt) once step K is done: an interrupted
run, to be resumed with ``visrep train STAGE --resume``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from visrep.cli import main as visrep_main
from visrep.training import classifier, diffusion, gan, guide, step_loop

STAGES = {"classifier": classifier, "evaluator": classifier, "gan": gan, "diffusion": diffusion, "guide": guide}


def trained_networks(stage: str, loop) -> list[torch.nn.Module]:
    if stage == "gan":
        return [loop.stepper.generator, loop.stepper.critic, loop.ema.model]
    if stage == "diffusion":
        return [loop.model, loop.ema.model] + ([loop.projector] if loop.projector is not None else [])
    return [loop.model]


def digest(networks: list[torch.nn.Module]) -> str:
    """sha256 over every parameter's bytes, in order (buffers left out: BatchNorm statistics are per rank)."""
    hasher = hashlib.sha256()
    for network in networks:
        for name, parameter in network.named_parameters():
            hasher.update(name.encode())
            hasher.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def main(out_dir: str, stage: str, *argv: str) -> int:
    module = STAGES[stage]
    finish = module.finish

    def recording_finish(loop, *args, **kwargs):
        rank = int(os.environ.get("RANK", 0))
        record = {"weights": digest(trained_networks(stage, loop)), "step": loop.state.step}
        Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(record))
        return finish(loop, *args, **kwargs)

    module.finish = recording_finish
    stop_at = int(os.environ.get("VISREP_PROBE_STOP_AT", 0))
    if stop_at:
        after_step = step_loop.after_step  # the step loops' (GAN, diffusion, guide); the classifier's loop has none

        def stopping_after_step(loop):
            after_step(loop)
            if loop.state.step == stop_at:
                raise KeyboardInterrupt

        step_loop.after_step = stopping_after_step
    return visrep_main(["train", stage, *argv])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
