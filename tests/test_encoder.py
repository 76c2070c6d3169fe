"""The frozen, differentiable encoder that every reader of a classifier's representations shares."""

from __future__ import annotations

import pytest
import torch

from visrep.errors import UserError
from visrep.inference.encoder import FrozenEncoder


@pytest.fixture(scope="module")
def encoder(tiny_trained_run):
    return FrozenEncoder.from_run(tiny_trained_run, "best", precision="fp32", device="cpu")


def _images(encoder, n: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *encoder.image_shape), generator=generator, dtype=torch.uint8)


def test_gradients_reach_the_images_but_not_the_weights(encoder):
    images = (_images(encoder).float() / 255).requires_grad_(True)
    logits, features = encoder.forward_intermediates(images, ["stage1", "penultimate"])
    (features["penultimate"].float().pow(2).sum() + logits[:, 0].sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())


def test_it_stays_in_eval_mode_so_batchnorm_statistics_never_move(encoder):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    assert not encoder.training and not encoder.classifier.training
    encoder(_images(encoder, 16).float() / 255)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_one_forward_gives_the_logits_and_every_asked_layer(encoder):
    images = _images(encoder)
    logits, features = encoder.forward_intermediates(images, list(encoder.feature_layers))
    assert logits.shape == (6, encoder.num_classes) and set(features) == set(encoder.feature_layers)
    assert features["penultimate"].shape == (6, encoder.embedding_dim)
    assert torch.allclose(encoder(images), logits)
    # raw uint8 and [0, 1] floats are the same images; already-normalised tensors skip normalisation
    assert torch.allclose(encoder(images.float() / 255), logits, atol=1e-5)
    assert torch.allclose(encoder(encoder.normalise(images), normalized=True), logits)


def test_wrong_image_shape_is_one_clear_error(encoder):
    with pytest.raises(UserError, match=r"the encoder takes images of shape \(1, 8, 8\)"):
        encoder(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_evaluator_network_is_the_same_encoder(tiny_trained_run, encoder):
    """The evaluator's network computes what a FrozenEncoder of the same weights in the same memory layout does
    (the evaluator keeps the standard layout; a classifier trained channels_last is encoded in that layout)."""
    from visrep.evaluation.evaluator import load_evaluator
    from visrep.inference.loading import load_classifier

    network = load_evaluator(tiny_trained_run, "best", precision="fp32").network
    images = _images(encoder)
    features, logits = network.features_and_logits(images)
    same_layout = FrozenEncoder(load_classifier(tiny_trained_run, "best")[0], encoder.normalization, "fp32")
    expected_logits, expected = same_layout.forward_intermediates(images, ["penultimate"])
    assert torch.equal(features, expected["penultimate"].float()) and torch.equal(logits, expected_logits)
