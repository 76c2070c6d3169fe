"""What the two generator loops (GAN, diffusion) share beyond the step loop: the frozen conditioning
classifier and its training conditions, the EMA network that samples, the fixed progress grids, and
the outputs that make the run directory a self-contained generator run (weights, sampling files,
``samples.npz``, ``generator.json``, ``metrics.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.figures import save_image_grid
from visrep.generate.generator_run import GeneratorRun
from visrep.generate.outputs import SAMPLES_FILE, write_npz
from visrep.generate.sample import SampleSet, generate
from visrep.inference.independence import GENERATOR_MANIFEST, HASH_KEY
from visrep.storage import save_weights
from visrep.training.conditioning_run import Conditioning, TrainingConditions, declared_hashes, save_sampling_files
from visrep.training.ema import EMA
from visrep.training.step_loop import StepLoop

GRID_COLUMNS = 8


@dataclass(kw_only=True)
class GeneratorLoop(StepLoop):
    conditioning: Conditioning
    conditions: TrainingConditions
    ema: EMA  # the averaged network that every sample comes from
    fixed: tuple[Tensor, Tensor | None]  # (noise, condition) of the progress grids

    @property
    def options(self):
        """The stage's own config section (``gan`` or ``diffusion``)."""
        return getattr(self.cfg, self.stage)

    # ---- what a generator stage writes ---------------------------------------------------------------
    def as_generator_run(self, shard: bool = False, for_grid: bool = False) -> GeneratorRun:
        """The EMA network as a GeneratorRun, so that the stage samples with the code ``visrep sample`` uses;
        ``shard``: every rank generates its share of each request (all ranks must then ask together)."""
        raise NotImplementedError

    def classifier_uses(self) -> list[str]:
        """What the conditioning classifier did to the samples beyond a class label (generator.json)."""
        raise NotImplementedError

    def describe(self, samples: SampleSet) -> str:
        """generator.json's one-line description of the samples."""
        raise NotImplementedError

    def manifest_extra(self) -> dict:
        """Stage-specific generator.json fields (e.g. the sampler)."""
        return {}

    # ---- shared --------------------------------------------------------------------------------------
    def update_ema(self, model: nn.Module) -> None:
        """The EMA after a step, its decay warmed up from 0.1 so that early weights fade fast."""
        step = self.state.step
        self.ema.decay = min(self.cfg.train.ema_decay, (1 + step) / (10 + step))
        self.ema.update(model)

    def between_steps(self) -> None:
        if self.state.step % self.cfg.train.sample_every == 0:
            self.save_grid(f"step-{self.state.step:06d}.png")

    @torch.no_grad()
    def save_grid(self, name: str) -> Path | None:
        """A grid from the EMA network's fixed noise and conditions (run directory and TensorBoard)."""
        if not self.ctx.is_main:
            return None
        noise, condition = self.fixed
        images = generate(self.as_generator_run(for_grid=True), noise, condition)
        path = save_image_grid(images, self.ctx.run.file("grids") / name, GRID_COLUMNS)
        self.log.image("samples", path, self.state.step)
        return path

    def write_outputs(self, samples: SampleSet, weights_file: str, network_config: dict, metrics: dict) -> None:
        """Rank 0's files, ``metrics.json`` last; ``metrics``: the stage's own numbers beside the shared ones."""
        run, state = self.ctx.run, self.state
        save_weights(self.ema.model, run.file(weights_file), network_config)
        save_sampling_files(run, self.conditioning, self.conditions)
        self.save_grid("final.png")
        write_npz(run.file(SAMPLES_FILE), samples)
        run.write_json(GENERATOR_MANIFEST, self.generator_manifest(samples))
        run.write_json("metrics.json", {"stage": self.stage, "steps": state.step, "images_seen": state.images_seen,
                                        "train_seconds": state.train_seconds,
                                        "conditioning": self.options.conditioning,
                                        "final_samples": len(samples.images), **metrics})
        self.log.close()

    def generator_manifest(self, samples: SampleSet) -> dict:
        """generator.json: every network that shaped the samples (the independence contract)."""
        uses, mode = self.classifier_uses(), self.options.conditioning
        return {HASH_KEY: declared_hashes(self.conditioning, uses, mode), "samples": SAMPLES_FILE,
                "conditioning_run": str(self.conditioning.run), "stage": self.stage, "conditioning": mode,
                "classifier_used_for": uses, **self.manifest_extra(), **self.embedding_record(),
                "description": self.describe(samples)}

    def embedding_record(self) -> dict:
        """Embedding mode: the layer, the rule that chose it, and where the training embeddings came from."""
        conditions = self.conditions
        if self.options.conditioning != "embedding" or conditions.layer_choice is None:
            return {}
        return {"condition_layer": {**conditions.layer_choice.to_dict(), "embeddings": conditions.source},
                "embedding_sampler": self.options.embedding_sampler}
