"""The airbench94 pieces: whitening stem, shift-only BN, identity init, lookahead, lr shape,
alternating flip, translate TTA, and an exact resume with all of them on."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from visrep.config import ClassifierConfig, TrainConfig, load_config
from visrep.data.dataset import BatchLoader, ImageSplit
from visrep.data.transforms import Normalization
from visrep.inference.predict import _shift
from visrep.models import create_model
from visrep.models.airbench import whitening_filters
from visrep.runs import load_run_config
from visrep.storage import load_state
from visrep.training.classifier import train_classifier
from visrep.training.lookahead import Lookahead
from visrep.training.optim import build_optimizer, lr_factor

REPO = Path(__file__).resolve().parents[1]
AIRBENCH_OVERRIDES = ["model.name=airbench", "model.options={widths: [16, 32, 32], whiten_bias_epochs: 2}", "data.augment.flip=true",
                      "data.augment.alternate_flip=true", "train.lookahead_every=3", "train.bias_lr_scale=8",
                      "train.warmup_start_factor=0.2", "train.final_lr_factor=0.07", "train.momentum=0.85"]


def _correlated_images(n=64, size=12, seed=0):
    """RGB images with strongly correlated neighbouring pixels and channels (like photos)."""
    g = torch.Generator().manual_seed(seed)
    base = F.avg_pool2d(torch.randn(n, 1, size + 3, size + 3, generator=g), 4, stride=1)
    return base.repeat(1, 3, 1, 1) + 0.1 * torch.randn(n, 3, size, size, generator=g)


def test_whitening_stem_decorrelates_patches_to_unit_variance():
    images = _correlated_images()
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=12)
    model.init_from_data(images)
    weight = model.stem.whiten.weight
    assert weight.shape == (24, 3, 2, 2) and not weight.requires_grad
    responses = F.conv2d(images.double(), weight[:12].double())  # the eigenvector half, bias-free
    flat = responses.permute(1, 0, 2, 3).reshape(12, -1)
    covariance = flat @ flat.T / flat.shape[1]
    # unit variance except where eps (5e-4) dominates a tiny eigenvalue, and uncorrelated
    assert torch.allclose(covariance.diagonal()[:8], torch.ones(8, dtype=torch.float64), atol=0.05)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 1e-3
    assert torch.equal(weight[12:], -weight[:12])


def test_whitening_filters_are_ordered_by_variance():
    filters = whitening_filters(_correlated_images(), 2, eps=0.0)
    norms = filters.flatten(1).norm(dim=1)  # 1/sqrt(eigenvalue): ascending as eigenvalues descend
    assert torch.all(norms[1:] >= norms[:-1] - 1e-4)


def test_whitening_of_grey_images_made_rgb_has_no_noise_channels():
    grey = _correlated_images()[:, :1].repeat(1, 3, 1, 1)  # three identical channels: rank 4 of 12 at k = 2
    filters = whitening_filters(grey, 2)
    responses = F.conv2d(grey.double(), filters.double()).transpose(0, 1).reshape(12, -1)
    # Without the fix 8 channels are whitened rounding noise (std ~1e-6), which BatchNorm's eps 1e-12
    # turns into gradients of 1e14 and more; every channel must carry the data's own variance.
    assert responses.std(dim=1).min() > 0.1
    assert torch.equal(filters[4:8], filters[:4])  # the unspanned slots repeat the spanned filters
    full = whitening_filters(_correlated_images(), 2)  # full rank: all 12 filters distinct
    assert len({tuple(f.flatten().tolist()) for f in full}) == 12


def test_whiten_eps_damps_low_variance_directions_by_lambda_over_lambda_plus_eps():
    images = _correlated_images()
    patches = F.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)  # descending, as the filters
    for eps in (5e-4, 5e-2):
        model = create_model("airbench", num_classes=10, in_channels=3, image_size=12, whiten_eps=eps)
        model.init_from_data(images)
        responses = F.conv2d(images.double(), model.stem.whiten.weight[:12].double())
        variance = responses.transpose(0, 1).reshape(12, -1).pow(2).mean(dim=1)  # uncentred, as the covariance
        assert torch.allclose(variance, eigenvalues / (eigenvalues + eps), rtol=1e-3)


def test_whitening_stem_is_computed_in_float32_under_bf16_autocast():
    """The stem lifts faint patch directions ~40x; bf16 inputs/filters would put their rounding on them."""
    images = _correlated_images(n=32)
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=12, whiten_eps=1e-6)
    model.init_from_data(images)
    stem = model.stem.whiten
    exact = F.conv2d(images.double(), stem.weight.double(), stem.bias.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stem(images)
        rounded_inputs = F.conv2d(images, stem.weight, stem.bias)  # what a plain conv does under autocast
    assert out.dtype == torch.bfloat16  # handed on in autocast's dtype
    out.float().sum().backward()  # the bias trains through it in the first epochs
    assert stem.bias.grad.dtype == torch.float32 and torch.allclose(
        stem.bias.grad, torch.full_like(stem.bias, out[0, 0].numel() * len(images)))
    scale = exact.abs().amax(dim=(0, 2, 3), keepdim=True)  # per channel
    ours = ((out.double() - exact).abs() / scale).amax()
    plain = ((rounded_inputs.double() - exact).abs() / scale).amax()
    assert ours <= 2 ** -8  # only the output's own bf16 rounding (8 significant bits)
    assert plain > 2 * ours
    assert torch.equal(stem(images), F.conv2d(images, stem.weight, stem.bias))  # no autocast: a plain conv
    plain_model = create_model("airbench", num_classes=10, in_channels=3, image_size=12, float32_stem=False)
    plain_model.load_state_dict(model.state_dict())  # same parameter names either way
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(plain_model.stem.whiten(images), rounded_inputs)


def test_float32_stem_must_be_a_bool():
    from visrep.errors import UserError
    with pytest.raises(UserError, match="float32_stem"):
        create_model("airbench", num_classes=10, in_channels=3, image_size=12, float32_stem="yes")


@pytest.mark.parametrize("eps", [0, -1e-3, "big", True])
def test_whiten_eps_must_be_a_positive_number(eps):
    from visrep.errors import UserError
    with pytest.raises(UserError, match="whiten_eps"):
        create_model("airbench", num_classes=10, in_channels=3, image_size=12, whiten_eps=eps)


def test_whitening_sample_is_drawn_from_every_class_not_the_first_images(tiny_folder, data_cfg):
    from visrep.data.prepare import prepare_data
    from visrep.training.classifier import init_sample

    data = prepare_data(data_cfg(tiny_folder, val_fraction=0.1), progress=False)  # 3 classes of 10 images
    first_labels = next(iter(data.loader("train", 6)))[1]
    assert first_labels.unique().tolist() == [0]  # a folder split lists its images class by class
    images, labels = init_sample(data, 12, seed=0)
    assert labels.unique().tolist() == [0, 1, 2]
    assert torch.equal(images, init_sample(data, 12, seed=0)[0])  # seeded: the same stem on every run and rank
    assert not torch.equal(images, init_sample(data, 12, seed=1)[0])
    assert len(init_sample(data, 1000, seed=0)[1]) == len(data.splits["train"])  # capped at the split's size


def test_airbench_blocks_start_as_identity_with_shift_only_batchnorm():
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=32)
    conv = model.stages.stage2.conv1  # 64 → 256
    centre = conv.weight[:64, :, 1, 1]
    assert torch.equal(centre, torch.eye(64)) and conv.weight[:64].abs().sum() == 64
    norm = model.stages.stage2.norm1
    assert not norm.weight.requires_grad and norm.bias.requires_grad and norm.momentum == pytest.approx(0.4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.forward_features(torch.randn(2, 3, 32, 32), "stage3")["stage3"].shape == (2, 256, 3, 3)


def test_bias_lr_scale_and_frozen_parameters_in_optimizer():
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=32)
    optimizer = build_optimizer(model, TrainConfig(lr=0.5, bias_lr_scale=64))
    weights, biases, norms = optimizer.param_groups
    assert weights["lr"] == 0.5 and biases["lr"] == 0.5 and norms["lr"] == 32.0
    assert biases["weight_decay"] == norms["weight_decay"] == 0.0 and weights["weight_decay"] > 0
    assert [id(p) for p in biases["params"]] == [id(model.stem.whiten.bias)]  # a conv bias is not a BN shift
    assert len(norms["params"]) == 6  # the shifts of the six BatchNorms; their scales stay frozen
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.stem.whiten.weight) not in in_optimizer


def test_decay_biases_shrinks_every_parameter_by_the_weights_per_step_fraction():
    model = create_model("airbench", num_classes=10, in_channels=3, image_size=32)
    cfg = TrainConfig(lr=0.5, bias_lr_scale=64, weight_decay=0.01, decay_biases=True, momentum=0.0)
    optimizer = build_optimizer(model, cfg)
    params = {"weight": model.head.weight, "bias": model.stem.whiten.bias, "shift": model.stages.stage1.norm1.bias}
    with torch.no_grad():
        for p in params.values():
            p.fill_(1.0)
            p.grad = torch.zeros_like(p)  # only the decay moves them
    optimizer.step()
    for name, p in params.items():  # SGD with L2: p ← p − lr_group · wd_group · p, the same fraction for all
        assert torch.allclose(p, torch.full_like(p, 1 - 0.5 * 0.01)), name


def test_lr_warmup_start_and_final_factor():
    factors = [lr_factor(step, 100, 23, "onecycle", start=0.2, final=0.07) for step in range(100)]
    assert factors[0] == pytest.approx(0.2 + 0.8 / 23)
    assert max(factors) == pytest.approx(1.0) and factors.index(1.0) == 22
    assert lr_factor(100, 100, 23, "onecycle", start=0.2, final=0.07) == pytest.approx(0.07)
    assert min(factors) > 0.07 and factors[-1] < 0.09
    assert lr_factor(99, 100, 23, "onecycle") == pytest.approx(1 - 76 / 77)  # defaults unchanged


def test_lookahead_pulls_toward_slow_weights_and_ends_on_them():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    lookahead = Lookahead(model, every=2, decay=0.5, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(model, 1)  # not a sync step
    assert torch.all(model.weight == 1.0)
    lookahead.after_step(model, 2)  # keep = 0.5² · (2/4)³ = 1/32 of the slow (0)
    assert torch.allclose(model.weight, torch.full((1, 2), 31 / 32))
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.after_step(model, 4)  # last step: back to the slow weights
    assert torch.allclose(model.weight, torch.full((1, 2), 31 / 32))


def _half_white_split(n=8, size=4):
    images = np.zeros((n, 1, size, size), np.uint8)
    images[:, :, :, size // 2:] = 255  # right half white: a mirror makes the left half white
    return ImageSplit(images, np.arange(n), [f"image{i}" for i in range(n)], [str(i) for i in range(n)],
                      Normalization((0.5,), (0.5,)))


def _mirrored_by_label(loader, epoch):
    loader.set_epoch(epoch)
    mirrored = {}
    for images, labels in loader:
        for image, label in zip(images, labels):
            mirrored[int(label)] = bool(image[0, 0, 0] > 0)  # left column white
    return mirrored


def test_alternate_flip_mirrors_each_image_on_every_other_epoch():
    loader = BatchLoader(_half_white_split(), 3, shuffle=True, flip=True, alternate_flip=True, seed=3)
    epochs = [_mirrored_by_label(loader, epoch) for epoch in range(4)]
    for label in range(8):
        assert epochs[0][label] != epochs[1][label] and epochs[0][label] == epochs[2][label] != epochs[3][label]
    assert 0 < sum(epochs[0].values()) < 8  # the first side is a coin per image


def test_shift_moves_content_and_reflects_the_border():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    down_right = _shift(images, 1, 1)
    assert torch.equal(down_right[0, 0, 1:, 1:], images[0, 0, :3, :3])
    assert torch.equal(_shift(images, 1, -1)[0, 0, :3, :3], images[0, 0, 1:, 1:])
    assert torch.equal(down_right[0, 0, 0, 1:], images[0, 0, 1, :3])  # row −1 reflects row 1


def test_whitening_bias_trains_only_in_its_first_epochs(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/c",
                                                        "run.name=r", "train.epochs=3", *AIRBENCH_OVERRIDES,
                                                        "model.options.whiten_bias_epochs=1", "train.lookahead_every=0"],
                      schema=ClassifierConfig)
    run = train_classifier(cfg, progress=False)
    after_epoch = {epoch: load_state(run / "checkpoints" / f"state-{epoch:05d}.pt")["model"]["stem.whiten.bias"]
                   for epoch in (2, 3)}
    assert after_epoch[2].abs().sum() > 0  # moved from zero in epoch 1
    assert torch.equal(after_epoch[2], after_epoch[3])
    assert torch.equal(load_file(str(run / "last.safetensors"))["stem.whiten.bias"], after_epoch[3])


def test_resume_with_whitening_lookahead_and_alternate_flip_is_exact(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={tmp_path}/runs", f"data.cache_dir={tmp_path}/c",
                                                        "run.name=r", "train.epochs=3", *AIRBENCH_OVERRIDES],
                      schema=ClassifierConfig)
    run = train_classifier(cfg, progress=False)
    uninterrupted = load_file(str(run / "last.safetensors"))
    (run / "checkpoints" / "state-00003.pt").unlink()  # as if killed during epoch 3
    (run / "metrics.json").unlink()
    train_classifier(load_run_config(run, ClassifierConfig), resume=run, progress=False)
    resumed = load_file(str(run / "last.safetensors"))
    assert "resumed from state-00002.pt" in (run / "log.txt").read_text()
    assert all(torch.equal(uninterrupted[key], resumed[key]) for key in uninterrupted)


def test_progressive_resizing_downscales_only_the_first_epochs():
    loader = BatchLoader(_half_white_split(size=8), 4, shuffle=True, low_res=(4, 2))
    sizes = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        sizes.append({tuple(images.shape[-2:]) for images, _ in loader})
    assert sizes == [{(4, 4)}, {(4, 4)}, {(8, 8)}]


def test_low_res_size_not_below_image_size_is_a_user_error(tmp_path):
    from visrep.errors import UserError

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={tmp_path}/runs", "data.augment.low_res_size=8",
                                                        "data.augment.low_res_epochs=1"], schema=ClassifierConfig)
    with pytest.raises(UserError, match="low_res_size"):
        train_classifier(cfg, progress=False)
    assert not (tmp_path / "runs").exists()
