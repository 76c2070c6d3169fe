import numpy as np
import torch

from visrep.data.transforms import (Normalization, augment_batch, compute_normalization, denormalize_to_uint8,
                                    normalize_uint8, random_flip, random_translate)


def _batch(n=16, c=3, h=8, w=8, seed=0):
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_normalization_matches_numpy():
    images = _batch().numpy()
    norm = compute_normalization(images)
    scaled = images.astype(np.float64) / 255
    assert np.allclose(norm.mean, scaled.mean(axis=(0, 2, 3)))
    assert np.allclose(norm.std, scaled.std(axis=(0, 2, 3)))


def test_normalize_then_denormalize_round_trips():
    batch = _batch()
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    normalized = normalize_uint8(batch, norm)
    expected = (batch.double() / 255 - torch.tensor(norm.mean).view(1, 3, 1, 1)) / torch.tensor(norm.std).view(1, 3, 1, 1)
    assert torch.allclose(normalized.double(), expected, atol=1e-5)
    assert torch.equal(denormalize_to_uint8(normalized, norm), batch)


def test_flip_mirrors_about_half_the_images():
    batch = _batch(n=400)
    flipped = random_flip(batch, torch.Generator().manual_seed(0))
    mirrored = (flipped == batch.flip(3)).flatten(1).all(1)
    unchanged = (flipped == batch).flatten(1).all(1)
    assert (mirrored | unchanged).all()
    assert 150 < mirrored.sum() < 250


def test_translate_shifts_whole_images_within_range():
    batch = _batch(n=64, h=10, w=10)
    shifted = random_translate(batch, 2, torch.Generator().manual_seed(1))
    assert shifted.shape == batch.shape and shifted.dtype == torch.uint8
    for original, moved in zip(batch, shifted):
        # the 6×6 centre of the shifted image must equal some shifted window of the original
        found = any(torch.equal(moved[:, 2:8, 2:8], original[:, 2 + dy:8 + dy, 2 + dx:8 + dx])
                    for dy in range(-2, 3) for dx in range(-2, 3))
        assert found


def test_translate_zero_is_identity_and_augment_is_seeded():
    batch = _batch()
    assert torch.equal(random_translate(batch, 0, torch.Generator()), batch)
    first = augment_batch(batch, True, 2, torch.Generator().manual_seed(5))
    second = augment_batch(batch, True, 2, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
