"""Degenerate generated images are named, not scored in silence: constant images, and a share of
near-identical images far above the real data's (which may itself hold look-alikes)."""

import torch

from visrep.evaluation.degenerate import constant_count, degenerate_warnings, duplicate_share


def _noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_constant_images_are_counted_whatever_their_colour():
    images = _noise(10)
    images[2] = 0
    images[5] = 173
    assert constant_count(images) == 2
    assert "2 of 10 generated images are constant" in degenerate_warnings(images, _noise(10, 1))[0]


def test_a_collapsed_set_is_flagged_and_a_varied_one_is_not():
    real = _noise(200, 1)
    collapsed = _noise(1).expand(200, -1, -1, -1).to(torch.int16)
    jitter = torch.randint(-2, 3, collapsed.shape, generator=torch.Generator().manual_seed(7), dtype=torch.int16)
    collapsed = (collapsed + jitter).clamp(0, 255).to(torch.uint8)  # ±2 grey levels of pixel noise: one image
    assert duplicate_share(collapsed) > 0.8 and duplicate_share(real) == 0.0
    assert any("near-identical" in line for line in degenerate_warnings(collapsed, real))
    assert degenerate_warnings(_noise(200, 2), real) == []


def test_look_alikes_as_common_as_in_the_real_data_are_not_flagged():
    real = torch.cat([_noise(1, 3).expand(100, -1, -1, -1), _noise(100, 4)])  # half the real set is one image
    fake = torch.cat([_noise(1, 5).expand(110, -1, -1, -1), _noise(90, 6)])  # 55 % vs the real 50 %
    assert degenerate_warnings(fake, real) == []
