"""The noise-aware guide and classifier guidance: the copy starts as the clean classifier, its accuracy
falls with the noise level and stays above chance at moderate noise, guidance changes the samples and
is declared in generator.json, and each bad input is one error line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

from visrep.cli import main
from visrep.config import GuideConfig, load_config


@pytest.fixture(scope="session")
def guide_run(tiny_trained_run, tmp_path_factory):
    from visrep.training.guide import train_guide

    root = tmp_path_factory.mktemp("guide-runs")
    cfg = load_config(REPO / "configs" / "guide_tiny.yaml", [f"run.root={root}", "run.name=guide",
                                                             f"guide.conditioning_run={tiny_trained_run}",
                                                             f"data.cache_dir={root / 'cache'}"], GuideConfig)
    return train_guide(cfg, progress=False)


def test_a_fresh_guide_is_the_clean_classifier(tiny_trained_run):
    from visrep.inference.encoder import FrozenEncoder
    from visrep.storage import read_json
    from visrep.training.guide import build_guide

    encoder = FrozenEncoder.from_run(tiny_trained_run, precision="fp32", device="cpu")
    guide = build_guide(encoder.classifier, read_json(tiny_trained_run / "normalization.json"), 32).eval()
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        expected = encoder(images)
        got = guide(images.float() / 127.5 - 1, torch.tensor([0, 100, 500, 900, 999]))
    assert torch.allclose(got, expected, atol=1e-4)  # the FiLM starts at zero: time has no effect yet


def test_guide_accuracy_falls_with_noise_and_stays_above_chance(guide_run):
    from visrep.storage import read_json

    metrics = read_json(guide_run / "metrics.json")
    accuracy = [band["accuracy"] for band in metrics["accuracy_by_noise"]]
    assert metrics["stage"] == "guide" and len(accuracy) == 4
    assert accuracy[0] > accuracy[-1] + 0.2  # clean-ish images are told apart far better than pure noise
    assert accuracy[1] > metrics["chance"] + 0.3  # moderate noise (t 250-499): well above chance
    assert (guide_run / "guide.safetensors").is_file()


@pytest.fixture(scope="session")
def class_diffusion_run(tiny_trained_run, tmp_path_factory):
    from visrep.config import DiffusionConfig
    from visrep.training.diffusion import train_diffusion

    root = tmp_path_factory.mktemp("guided-diffusion")
    cfg = load_config(REPO / "configs" / "diffusion_tiny.yaml",
                      [f"run.root={root}", "run.name=class", f"diffusion.conditioning_run={tiny_trained_run}",
                       f"data.cache_dir={root / 'cache'}", "diffusion.final_samples=0"], DiffusionConfig)
    return train_diffusion(cfg, progress=False)


def test_classifier_guidance_changes_the_samples_and_is_declared(class_diffusion_run, guide_run, tmp_path):
    from visrep.inference.independence import read_generator_manifest, weights_hashes

    common = ["sample", str(class_diffusion_run), "--class", "3", "--n", "6", "--guidance", "1"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--classifier-guidance", str(guide_run), "--classifier-scale", "4",
                 "--out", str(tmp_path / "guided")]) == 0
    plain, guided = (np.load(tmp_path / name / "samples.npz")["images"] for name in ("plain", "guided"))
    assert not np.array_equal(plain, guided)
    manifest = read_generator_manifest(tmp_path / "guided")
    assert weights_hashes(guide_run / "guide.safetensors")["tensors"] in manifest["conditioning_weights_sha256"]
    assert manifest["classifier_guidance"].endswith("guide") and "classifier guidance" in manifest["classifier_used_for"]
    assert manifest["classifier_scale"] == 4 and manifest["guidance"] == 1  # what was used, not the run's defaults


def test_guidance_gradient_raises_the_guides_probability():
    """One small step along the gradient raises log p(y | x, t): the sign of the shift is right."""
    from visrep.diffusion.classifier_guidance import guide_gradient, guided_velocity
    from visrep.models import create_model

    torch.manual_seed(0)
    backbone = {"name": "fastcnn", "num_classes": 3, "in_channels": 1, "image_size": 8, "widths": [8, 8]}
    guide = create_model("noise_aware_classifier", backbone=backbone, mean=[0.5], std=[0.25], time_dim=16).eval()
    x, t, labels = torch.randn(4, 1, 8, 8), torch.tensor([100, 400, 700, 900]), torch.tensor([0, 1, 2, 0])
    gradient = guide_gradient(guide, x, t, labels)
    log_p = lambda images: torch.log_softmax(guide(images, t), 1).gather(1, labels.view(-1, 1)).sum()  # noqa: E731
    step = 1e-2 * gradient / gradient.norm()  # a small move along the gradient
    with torch.no_grad():
        assert log_p(x + step) > log_p(x) > log_p(x - step)
    # in v-space the shift is −s·√(1−ᾱ)/√ᾱ·∇ (v = (ε − √(1−ᾱ)·x)/√ᾱ, and ε moves by −s·√(1−ᾱ)·∇)
    zero = torch.zeros_like(x)
    assert torch.allclose(guided_velocity(zero, gradient, 0.2, 2.0), -2.0 * (0.8 / 0.2) ** 0.5 * gradient)
    assert torch.allclose(guided_velocity(zero, gradient, 0.0, 1.0), -(((1 - 1e-3) / 1e-3) ** 0.5) * gradient)  # floor


def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and message in err, err


def test_bad_classifier_guidance_input_is_one_error_line(class_diffusion_run, guide_run, tiny_trained_run, tmp_path,
                                                         capsys):
    run, out = str(class_diffusion_run), str(tmp_path / "a")
    _fails(capsys, ["sample", run, "--classifier-scale", "2", "--out", out], "needs --classifier-guidance")
    _fails(capsys, ["sample", run, "--classifier-guidance", str(tiny_trained_run), "--out", out],
           "not a finished guide run")
    _fails(capsys, ["sample", run, "--classifier-guidance", str(guide_run), "--classifier-scale", "-1",
                    "--out", out], "--classifier-scale must be ≥ 0")
    config = str(REPO / "configs" / "guide_tiny.yaml")
    _fails(capsys, ["train", "guide", "--config", config, f"run.root={tmp_path / 'runs'}",
                    f"guide.conditioning_run={guide_run}"], "not a trained classifier")
    assert not (tmp_path / "a").exists() and not (tmp_path / "runs").exists()
