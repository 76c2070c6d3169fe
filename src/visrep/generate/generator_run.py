"""A trained generator — a GAN, or a diffusion model with its sampler — rebuilt from its run directory alone.

A generator run is self-contained: besides its own weights it keeps a copy of the conditioning
classifier's weights and normalisation (to embed an image given with ``--like``) and, in
``embedding`` mode, the condition bank fitted on the training embeddings (for sampled embeddings).
So the run can be moved or shared without the classifier run it was trained from.

Files (written by :mod:`visrep.training.gan` and :mod:`visrep.training.diffusion`)::

    generator_ema.safetensors (+ .json) GAN: EMA generator weights (+ its model config; generator.json is the
                                      independence contract)
    denoiser_ema.safetensors (+ .json)  diffusion: EMA U-Net weights; sampled through
                                      :class:`visrep.diffusion.sampler.DiffusionGenerator`
    encoder.safetensors (+ .json)     the conditioning classifier's weights, as used in training
    encoder_normalization.json        that classifier's input normalisation
    conditions.safetensors            ConditionBank (embedding mode)
    manifest.json, config.yaml        class names, data, the run's settings
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.config import DiffusionConfig, GanConfig
from visrep.data.transforms import Normalization
from visrep.diffusion.sampler import DiffusionGenerator, SamplingOptions
from visrep.errors import UserError
from visrep.representations.bank import ConditionBank
from visrep.representations.learned_sampler import SAMPLER_FILE, LearnedSampler
from visrep.hardware.distributed import DistInfo
from visrep.inference.encoder import FrozenEncoder
from visrep.models import create_model
from visrep.runs import load_run_config
from visrep.storage import load_weights, read_json

GENERATOR_WEIGHTS = "generator_ema.safetensors"
DENOISER_WEIGHTS = "denoiser_ema.safetensors"
ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_NORMALIZATION = "encoder_normalization.json"
CONDITION_BANK = "conditions.safetensors"
GUIDE_WEIGHTS = "guide.safetensors"  # a guide run's noise-aware classifier (visrep.training.guide)


@dataclass
class GeneratorRun:
    path: Path
    cfg: object  # GanConfig or DiffusionConfig of the run
    generator: nn.Module  # eval mode: (z, condition) → images in [-1, 1]
    class_names: list[str]
    device: torch.device
    loaded_encoder: FrozenEncoder | None = field(default=None, repr=False)  # read from the run when first needed
    loaded_bank: ConditionBank | None = field(default=None, repr=False)
    loaded_sampler: LearnedSampler | None = field(default=None, repr=False)
    # under torchrun with several ranks, each generates its share of a request's batches and all get
    # the whole (visrep.generate.sample.generate); every rank must then make the same requests
    dist: DistInfo = field(default_factory=DistInfo)

    @property
    def mode(self) -> str:
        return self.generator.mode

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.generator.image_shape)

    @property
    def options(self):
        """The run's gan: or diffusion: section."""
        return self.cfg.gan if "gan" in self.cfg else self.cfg.diffusion

    @property
    def layer(self) -> str:
        return self.options.layer

    @property
    def bank_method(self) -> str:
        """How sampled embeddings are drawn: gaussian | kmeans | learned."""
        return self.options.embedding_sampler

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

    def learned_sampler(self) -> LearnedSampler:
        """RCG's learned model of the embeddings (embedding_sampler=learned)."""
        if self.loaded_sampler is None:
            self.loaded_sampler = LearnedSampler.load(self.path / SAMPLER_FILE)
        return self.loaded_sampler

    def sampled_embeddings(self, n: int, labels: Tensor | None, generator: torch.Generator
                           ) -> tuple[Tensor, Tensor | None]:
        """(n unit embeddings, their classes or None) by the run's embedding sampler; a class asked for
        (``labels``) always comes from the bank's class Gaussians, the one sampler that knows classes."""
        if self.bank_method == "learned" and labels is None:
            return F.normalize(self.learned_sampler().sample(n, generator), dim=1), None
        method = "gaussian" if labels is not None else self.bank_method
        return self.bank().sample(n, method, labels, generator=generator)


def load_generator_run(path: str | Path, device: torch.device | None = None,
                       sampling: dict | None = None) -> GeneratorRun:
    """The finished generator of a run directory; one clear UserError for anything else.

    ``sampling`` ({"solver", "steps", "guidance", "guidance_interval", "guide", "classifier_scale"}, None
    values ignored)
    overrides a diffusion run's sampling settings (``guide``: a guide run for classifier guidance); a GAN
    has none."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"generator run not found: {path}")
    weights = next((path / name for name in (GENERATOR_WEIGHTS, DENOISER_WEIGHTS) if (path / name).is_file()), None)
    if weights is None:
        raise UserError(f"{path} is not a finished generator run (no {GENERATOR_WEIGHTS} or {DENOISER_WEIGHTS})")
    diffusion = weights.name == DENOISER_WEIGHTS
    if not (path / "metrics.json").is_file():  # written last: its absence means training or its end was cut short
        verb = "diffusion" if diffusion else "gan"
        raise UserError(f"{path} has not finished (no metrics.json): resume it with visrep train {verb} --resume {path}")
    sampling = {key: value for key, value in (sampling or {}).items() if value is not None}
    if sampling and not diffusion:
        flags = {"guide": "--classifier-guidance"}
        named = ", ".join(flags.get(key, "--" + key.replace("_", "-")) for key in sampling)
        raise UserError(f"{named}: a GAN draws in one step; these apply to diffusion runs only")
    cfg = load_run_config(path, DiffusionConfig if diffusion else GanConfig)
    device = device or torch.device("cpu")
    tensors, model_config = load_weights(weights)
    network = create_model(**model_config)
    network.load_state_dict(tensors)
    network = network.to(device).eval()
    if diffusion:
        network = _diffusion_generator(network, cfg, sampling, path, device)
    class_names = read_json(path / "manifest.json")["classes"]
    return GeneratorRun(path, cfg, network, list(class_names), device)


def _diffusion_generator(denoiser: nn.Module, cfg, sampling: dict, path: Path,
                         device: torch.device) -> DiffusionGenerator:
    chosen = {key: sampling[key] for key in ("solver", "steps", "guidance", "classifier_scale", "guidance_interval")
              if key in sampling}
    options = SamplingOptions.from_config(cfg.diffusion, cfg.train.precision, **chosen)
    trained_unconditional = cfg.diffusion.condition_dropout > 0 or cfg.diffusion.conditioning == "none"
    options.check(trained_unconditional)
    guide = None
    if sampling.get("guide") is not None:
        if cfg.diffusion.conditioning != "class":
            raise UserError("--classifier-guidance steers towards a class: it needs a class-conditional diffusion "
                            f"run (this one is conditioned on '{cfg.diffusion.conditioning}')")
        guide = load_guide(sampling["guide"], path, device, tuple(denoiser.image_shape))
        options.classifier_scale = sampling.get("classifier_scale", 1.0)
    elif options.classifier_scale:
        raise UserError("--classifier-scale needs --classifier-guidance RUN (a noise-aware guide: visrep train guide)")
    return DiffusionGenerator(denoiser, options, trained_unconditional, guide).eval()


def with_guidance(run: GeneratorRun, scale: float) -> GeneratorRun:
    """The same diffusion run sampling at classifier-free guidance ``scale``: the networks are shared, not
    loaded again (a guidance sweep over one run)."""
    generator = run.generator
    options = replace(generator.options, guidance=float(scale))
    options.check(generator.trained_unconditional)
    return replace(run, generator=DiffusionGenerator(generator.denoiser, options, generator.trained_unconditional,
                                                     generator.guide))


def load_guide(guide_run: str | Path, diffusion_run: Path, device: torch.device,
               image_shape: tuple[int, int, int]) -> nn.Module:
    """The noise-aware classifier of a finished guide run trained on the diffusion run's data."""
    guide_run = Path(guide_run)
    if not (guide_run / GUIDE_WEIGHTS).is_file() or not (guide_run / "metrics.json").is_file():
        raise UserError(f"{guide_run} is not a finished guide run (visrep train guide)")
    ours, theirs = (read_json(folder / "manifest.json").get("hash") for folder in (diffusion_run, guide_run))
    if ours != theirs:
        raise UserError(f"the guide {guide_run} was trained on other data than {diffusion_run}")
    tensors, model_config = load_weights(guide_run / GUIDE_WEIGHTS)
    backbone = model_config.get("backbone", {})
    guide_shape = (backbone.get("in_channels"), backbone.get("image_size"), backbone.get("image_size"))
    if guide_shape != tuple(image_shape):
        raise UserError(f"the guide {guide_run} takes {guide_shape[0]}x{guide_shape[1]}x{guide_shape[2]} images, the "
                        f"diffusion run makes {'x'.join(map(str, image_shape))}: train the guide on the same data")
    guide = create_model(**model_config)
    guide.load_state_dict(tensors)
    return guide.to(device).eval().requires_grad_(False)


def load_encoder_copy(path: Path, device: torch.device, precision: str = "auto") -> FrozenEncoder:
    tensors, model_config = load_weights(Path(path) / ENCODER_WEIGHTS)
    classifier = create_model(**model_config)
    classifier.load_state_dict(tensors)
    record = read_json(Path(path) / ENCODER_NORMALIZATION)
    normalization = Normalization.from_dict(record)
    # the layout the conditions were embedded in (runs written before it was recorded: the standard one)
    return FrozenEncoder(classifier, normalization, precision, bool(record.get("channels_last", False))).to(device)
