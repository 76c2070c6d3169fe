"""Muon: the orthogonalised update, its SGD groups, its place in build_optimizer, and training with it."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from visrep.config import ClassifierConfig, TrainConfig, load_config
from visrep.errors import UserError
from visrep.models import create_model
from visrep.runs import load_run_config
from visrep.training.classifier import train_classifier
from visrep.training.muon import Muon, orthogonalise
from visrep.training.optim import build_optimizer, check_optim_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [(32, 200), (200, 32), (48, 48)])
def test_orthogonalise_flattens_the_spectrum_whatever_the_scale(shape):
    g = torch.Generator().manual_seed(0)
    # singular values spread over three orders of magnitude, as in a gradient dominated by a few directions
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g))
    spectrum = torch.logspace(0, -3, min(shape))
    matrix = u @ torch.diag(spectrum) @ v.T
    result = orthogonalise(matrix, steps=5, dtype=torch.float32)
    singular = torch.linalg.svdvals(result)
    assert result.shape == matrix.shape
    assert singular.max() < 1.25 and singular[: min(shape) // 2].min() > 0.6  # the large half, from 1 to 0.03
    assert torch.allclose(orthogonalise(1000 * matrix, steps=5, dtype=torch.float32), result, atol=1e-4)


def test_orthogonalise_refuses_a_non_matrix():
    with pytest.raises(ValueError, match="matrix"):
        orthogonalise(torch.ones(2, 3, 4))


def test_non_muon_groups_step_exactly_like_torch_sgd_nesterov():
    g = torch.Generator().manual_seed(1)
    start = torch.randn(5, 3, generator=g)
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    muon = Muon([{"params": [ours], "weight_decay": 0.01}], lr=0.1, momentum=0.85)
    sgd = torch.optim.SGD([theirs], lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    for _ in range(4):
        grad = torch.randn(5, 3, generator=g)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        muon.step()
        sgd.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_muon_step_holds_the_filter_norm_and_ignores_the_gradient_scale():
    g = torch.Generator().manual_seed(2)
    start, grad = torch.randn(8, 4, 3, 3, generator=g), torch.randn(8, 4, 3, 3, generator=g)
    results = []
    for scale in (1.0, 1000.0):
        weight = start.clone().requires_grad_()
        weight.grad = grad * scale
        Muon([{"params": [weight], "muon": True}], lr=1e-4, momentum=0.6).step()
        results.append(weight.detach())
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert results[0].norm() == pytest.approx(8 ** 0.5, rel=1e-3)  # rescaled to √out, then a tiny step
    step = results[0] - start * (8 ** 0.5 / start.norm())
    assert torch.linalg.svdvals(step.reshape(8, -1) / 1e-4).max() == pytest.approx(1.0, abs=0.3)


def test_build_optimizer_gives_conv_filters_to_muon_and_the_rest_to_sgd():
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=32)
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon", lr=0.5, bias_lr_scale=64, muon_lr=0.2,
                                                   muon_momentum=0.7))
    weights, biases, norms, filters = optimizer.param_groups
    assert [group["muon"] for group in optimizer.param_groups] == [False, False, False, True]
    assert [id(p) for p in weights["params"]] == [id(model.head.weight)]  # the linear head stays on SGD
    assert len(filters["params"]) == 6 and all(p.ndim == 4 for p in filters["params"])  # the six 3x3 convs
    assert filters["lr"] == 0.2 and filters["momentum"] == 0.7 and filters["weight_decay"] == 0.0
    assert norms["lr"] == 32.0 and weights["lr"] == 0.5
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.stem.whiten.weight) not in in_optimizer  # frozen whitening filters


@pytest.mark.parametrize("override", [{"muon_lr": 0.0}, {"muon_momentum": 1.0}])
def test_bad_muon_settings_are_user_errors(override):
    with pytest.raises(UserError, match="muon"):
        check_optim_config(TrainConfig(optimizer="muon", **override))


def test_training_with_muon_learns_and_resumes_exactly(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml",
                      [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/c", "run.name=r", "train.epochs=3",
                       "train.optimizer=muon", "train.muon_lr=0.05", "train.lr=0.05"], schema=ClassifierConfig)
    run = train_classifier(cfg, progress=False)
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 3
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and epochs[-1]["val_acc"] > 0.5  # chance 0.1
    uninterrupted = load_file(str(run / "last.safetensors"))
    (run / "checkpoints" / "state-00003.pt").unlink()  # as if killed during epoch 3
    (run / "metrics.json").unlink()
    train_classifier(load_run_config(run, ClassifierConfig), resume=run, progress=False)
    resumed = load_file(str(run / "last.safetensors"))
    assert all(torch.equal(uninterrupted[key], resumed[key]) for key in uninterrupted)
