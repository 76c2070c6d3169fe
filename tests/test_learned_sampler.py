"""RCG's learned embedding sampler: it learns a toy 2-D mixture, and a generator samples with it."""

from __future__ import annotations

import torch

from visrep.representations.learned_sampler import LearnedSampler, SamplerRecipe

CENTRES = torch.tensor([[-4.0, 0.0], [4.0, 1.0], [0.0, 5.0]])


def mixture(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(CENTRES), (n,), generator=generator)
    return CENTRES[labels] + 0.5 * torch.randn(n, 2, generator=generator), labels


def test_the_learned_sampler_fits_a_two_d_mixture_and_matches_its_moments(tmp_path):
    """Three well-separated Gaussians (σ = 0.5): the samples sit on the components in about their proportions,
    with the data's mean and covariance; saved and loaded, it draws the same samples."""
    points, _ = mixture(3000, seed=0)
    sampler = LearnedSampler.fit(points, SamplerRecipe(steps=600, width=64, blocks=2))
    drawn = sampler.sample(3000, torch.Generator().manual_seed(1))
    nearest = torch.cdist(drawn, CENTRES)
    assert (nearest.min(1).values < 1.5).float().mean() > 0.85  # 98.9 % of the data lies this close (3σ)
    shares = torch.bincount(nearest.argmin(1), minlength=3).float() / len(drawn)
    assert shares.min() > 0.2 and shares.max() < 0.45  # each component about a third
    assert torch.allclose(drawn.mean(0), points.mean(0), atol=0.5)  # the data spans ~8 units per axis
    assert torch.allclose(torch.cov(drawn.T).diagonal(), torch.cov(points.T).diagonal(), rtol=0.2)
    sampler.save(tmp_path / "sampler.safetensors")
    again = LearnedSampler.load(tmp_path / "sampler.safetensors").sample(50, torch.Generator().manual_seed(2))
    assert torch.equal(again, sampler.sample(50, torch.Generator().manual_seed(2)))


def test_an_untrained_sampler_does_not_pass(tmp_path):
    """The checks above can fail: a sampler fitted for one step draws noise, not the mixture."""
    points, _ = mixture(3000, seed=0)
    drawn = LearnedSampler.fit(points, SamplerRecipe(steps=1, width=64, blocks=2)).sample(
        3000, torch.Generator().manual_seed(1))
    assert (torch.cdist(drawn, CENTRES).min(1).values < 1.5).float().mean() < 0.85
