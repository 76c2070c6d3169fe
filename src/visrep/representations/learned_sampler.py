"""A learned generator of embeddings: RCG's representation diffusion model (Li et al. 2024), small.

Unconditional generation with a generator conditioned on embeddings needs embeddings to condition on.
The condition bank draws them from per-class Gaussians or k-means centres
(:mod:`visrep.representations.bank`); this module learns their distribution instead: an MLP denoiser
(residual blocks, the timestep added to every block) trained with ε-prediction on a cosine noise
schedule over the training embeddings, standardised per dimension; sampling is DDIM (η = 0) from
Gaussian noise. For embedding conditions the caller puts each sample back on the unit sphere.

Everything here is generic over vectors (N, D), so that a toy 2-D mixture checks it (tests).
Saved as one safetensors file (weights, the standardisation, the architecture in the metadata).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.diffusion.schedule import TRAIN_TIMESTEPS, alphas_cumprod
from visrep.models.unet import timestep_features
from visrep.representations.store import write_safetensors
from visrep.storage import read_safetensors

SAMPLER_FILE = "embedding_sampler.safetensors"  # in a generator run, beside the condition bank


@dataclass(frozen=True)
class SamplerRecipe:
    steps: int = 2000  # AdamW steps of batch_size vectors
    batch_size: int = 256
    lr: float = 1e-3
    width: int = 256  # hidden units of each residual block
    blocks: int = 3
    sample_steps: int = 50  # DDIM steps when sampling
    seed: int = 0


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: Tensor, time: Tensor) -> Tensor:
        return h + self.mlp(self.norm(h) + time)


class VectorDenoiser(nn.Module):
    """x_t (B, D), t (B,) → predicted noise ε (B, D)."""

    def __init__(self, dim: int, width: int = 256, blocks: int = 3):
        super().__init__()
        self.config = {"dim": dim, "width": width, "blocks": blocks}
        self.inp = nn.Linear(dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        nn.init.zeros_(self.out[1].weight)  # starts predicting no noise: a calm first step
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        time = self.time(timestep_features(t, self.config["width"]))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, time)
        return self.out(h)


@dataclass
class LearnedSampler:
    """The trained denoiser and the per-dimension standardisation of the vectors it was fitted on."""
    model: VectorDenoiser
    mean: Tensor  # (D,)
    std: Tensor  # (D,)
    bound: Tensor  # (D,) the largest |standardised value| seen in training, per dimension
    sample_steps: int = 50

    @classmethod
    def fit(cls, vectors: Tensor, recipe: SamplerRecipe = SamplerRecipe()) -> "LearnedSampler":
        """Train on ``vectors`` (N, D) (CPU, float32; reproducible for a given recipe.seed)."""
        x = vectors.float()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        data = (x - mean) / std
        generator = torch.Generator().manual_seed(recipe.seed)
        with torch.random.fork_rng():
            torch.manual_seed(recipe.seed)
            model = VectorDenoiser(x.shape[1], recipe.width, recipe.blocks)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
        schedule = alphas_cumprod()  # the diffusion stage's schedule (cosine, T = 1000)
        model.train()
        for step in range(recipe.steps):
            rows = torch.randint(len(data), (recipe.batch_size,), generator=generator)
            t = torch.randint(TRAIN_TIMESTEPS, (recipe.batch_size,), generator=generator)
            noise = torch.randn(recipe.batch_size, x.shape[1], generator=generator)
            alpha = schedule[t][:, None]
            noisy = alpha.sqrt() * data[rows] + (1 - alpha).sqrt() * noise
            loss = F.mse_loss(model(noisy, t), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:  # cosine decay to a tenth: a steadier end of training
                group["lr"] = recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / recipe.steps)))
            optimizer.step()
        return cls(model.eval(), mean, std, data.abs().amax(0), recipe.sample_steps)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, D) vectors by DDIM (η = 0) from Gaussian noise drawn from ``generator``."""
        schedule = alphas_cumprod()
        x = torch.randn(n, self.mean.shape[0], generator=generator)
        times = torch.linspace(TRAIN_TIMESTEPS - 1, 0, self.sample_steps).round().long()
        for index, t in enumerate(times):
            alpha = schedule[t]
            alpha_next = schedule[times[index + 1]] if index + 1 < len(times) else torch.tensor(1.0)
            noise = self.model(x, t.expand(n))
            # the clean estimate kept within the training data's range: at the noisiest steps 1/√ᾱ magnifies
            # any error in ε by hundreds (the samplers' usual x₀ clipping, per dimension)
            clean = torch.maximum(torch.minimum((x - (1 - alpha).sqrt() * noise) / alpha.sqrt(), self.bound), -self.bound)
            x = alpha_next.sqrt() * clean + (1 - alpha_next).sqrt() * noise
        return x * self.std + self.mean

    def save(self, path: Path) -> Path:
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        tensors.update({"mean": self.mean, "std": self.std, "bound": self.bound})
        return write_safetensors(Path(path), tensors, {"config": json.dumps({**self.model.config,
                                                                              "sample_steps": self.sample_steps})})

    @classmethod
    def load(cls, path: Path) -> "LearnedSampler":
        tensors, metadata = read_safetensors(Path(path), "embedding sampler")
        config = json.loads(metadata["config"])
        model = VectorDenoiser(config["dim"], config["width"], config["blocks"])
        model.load_state_dict({name[len("model."):]: value for name, value in tensors.items()
                               if name.startswith("model.")})
        return cls(model.eval(), tensors["mean"], tensors["std"], tensors["bound"], int(config["sample_steps"]))


def recipe_from(options) -> SamplerRecipe:
    """A SamplerRecipe from a config section with the same field names (a generator's learned_sampler:)."""
    return SamplerRecipe(**{name: getattr(options, name) for name in asdict(SamplerRecipe())})
