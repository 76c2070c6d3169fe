"""A trained generator rebuilt from its run directory alone, for sampling.

A GAN run is self-contained: besides its own weights it keeps a copy of the conditioning
classifier's weights and normalisation (to embed an image given with ``--like``) and, in
``embedding`` mode, the condition bank fitted on the training embeddings (for sampled embeddings).
So the run can be moved or shared without the classifier run it was trained from.

Files (written by :mod:`visrep.training.gan`)::

    generator_ema.safetensors (+ .json) EMA generator weights (+ its model config; generator.json is the
                                      independence contract)
    encoder.safetensors (+ .json)     the conditioning classifier's weights, as used in training
    encoder_normalization.json        that classifier's input normalisation
    conditions.safetensors            ConditionBank (embedding mode)
    manifest.json, config.yaml        class names, data, the run's settings
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visrep.config import GanConfig
from visrep.data.transforms import Normalization
from visrep.errors import UserError
from visrep.generate.conditions import ConditionBank
from visrep.inference.encoder import FrozenEncoder
from visrep.models import create_model
from visrep.runs import load_run_config
from visrep.storage import load_weights, read_json

GENERATOR_WEIGHTS = "generator_ema.safetensors"
ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_NORMALIZATION = "encoder_normalization.json"
CONDITION_BANK = "conditions.safetensors"


@dataclass
class GeneratorRun:
    path: Path
    cfg: object  # GanConfig of the run
    generator: nn.Module  # eval mode
    class_names: list[str]
    device: torch.device
    loaded_encoder: FrozenEncoder | None = field(default=None, repr=False)  # read from the run when first needed
    loaded_bank: ConditionBank | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        return self.generator.mode

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.generator.image_shape)

    @property
    def layer(self) -> str:
        return self.cfg.gan.layer

    def encoder(self) -> FrozenEncoder:
        """The run's copy of the conditioning classifier (to embed given images)."""
        if self.loaded_encoder is None:
            self.loaded_encoder = load_encoder_copy(self.path, self.device)
        return self.loaded_encoder

    def bank(self) -> ConditionBank:
        """The condition bank sampled embeddings come from (embedding mode)."""
        if self.loaded_bank is None:
            self.loaded_bank = ConditionBank.load(self.path / CONDITION_BANK)
        return self.loaded_bank


def load_generator_run(path: str | Path, device: torch.device | None = None) -> GeneratorRun:
    """The finished generator of a run directory; one clear UserError for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"generator run not found: {path}")
    if not (path / GENERATOR_WEIGHTS).is_file():
        raise UserError(f"{path} is not a finished generator run (no {GENERATOR_WEIGHTS})")
    if not (path / "metrics.json").is_file():  # written last: its absence means training or its end was cut short
        raise UserError(f"{path} has not finished (no metrics.json): resume it with visrep train gan --resume {path}")
    cfg = load_run_config(path, GanConfig)
    device = device or torch.device("cpu")
    tensors, model_config = load_weights(path / GENERATOR_WEIGHTS)
    generator = create_model(**model_config)
    generator.load_state_dict(tensors)
    class_names = read_json(path / "manifest.json")["classes"]
    return GeneratorRun(path, cfg, generator.to(device).eval(), list(class_names), device)


def load_encoder_copy(path: Path, device: torch.device, precision: str = "auto") -> FrozenEncoder:
    tensors, model_config = load_weights(Path(path) / ENCODER_WEIGHTS)
    classifier = create_model(**model_config)
    classifier.load_state_dict(tensors)
    normalization = Normalization.from_dict(read_json(Path(path) / ENCODER_NORMALIZATION))
    return FrozenEncoder(classifier, normalization, precision).to(device)
