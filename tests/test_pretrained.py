"""Fine-tuning from a local pretrained file (issue 33): weights made here (nothing downloads), a new head
trained first on the frozen backbone, then everything at a lower backbone rate, with the normalisation
and resolution the weights expect."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from conftest import make_folder
from visrep.cli import main
from visrep.config import ClassifierConfig, load_config
from visrep.errors import UserError
from visrep.models import create_model
from visrep.models.pretrained import IMAGENET_MEAN, IMAGENET_STD
from visrep.training.classifier import train_classifier


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A torchvision ResNet-18 state dict as torchvision saves it (1000 classes), random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    return path


def _fine_tune(tmp_path, weights, *extra):
    folder = make_folder(tmp_path / "photos", per_class=8)
    cfg = load_config(None, [f"data.source={folder}", f"data.cache_dir={tmp_path}/cache", f"run.root={tmp_path}/runs",
                             "run.name=tuned", "model.name=tv:resnet18", f"model.pretrained_path={weights}",
                             "data.image_size=32", "train.tensorboard=false", "train.threads=1", *extra],
                      ClassifierConfig)
    return train_classifier(cfg, progress=False)


def test_the_head_trains_alone_first_on_the_frozen_backbone_and_imagenet_statistics(tmp_path, imagenet_file):
    run = _fine_tune(tmp_path, imagenet_file, "train.epochs=1", "train.head_epochs=1")
    given = torch.load(imagenet_file, weights_only=True)
    trained = load_file(run / "last.safetensors")
    backbone = [key for key in given if not key.startswith("fc.")]
    assert all(torch.equal(trained[f"backbone.{key}"], given[key]) for key in backbone)  # BN statistics too
    assert trained["head.weight"].shape == (3, 512)  # a new head for the folder's 3 classes
    record = json.loads((run / "pretrained.json").read_text())
    assert record["new_head"] and record["file_classes"] == 1000 and record["tensors_loaded"] == len(backbone)
    normalization = json.loads((run / "normalization.json").read_text())
    assert normalization == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def test_then_the_whole_network_trains_with_the_backbone_at_a_lower_rate(tmp_path, imagenet_file, capsys):
    run = _fine_tune(tmp_path, imagenet_file, "train.epochs=2")  # head_epochs unset: max(1, 2 // 5) = 1
    assert "train.head_epochs not given: 1" in capsys.readouterr().out
    given, trained = torch.load(imagenet_file, weights_only=True), load_file(run / "last.safetensors")
    assert not torch.equal(trained["backbone.layer4.1.conv2.weight"], given["layer4.1.conv2.weight"])
    saved = load_config(run / "config.yaml", schema=ClassifierConfig, check=False)
    assert saved.train.head_epochs == 1 and saved.train.backbone_lr_scale == 0.1


def test_the_optimizer_gives_the_backbone_a_tenth_of_the_head_rate(imagenet_file):
    from visrep.training.finetune import backbone_parameters
    from visrep.training.optim import build_optimizer

    model = create_model("tv:resnet18", 3, 3, 32, pretrained_path=str(imagenet_file))
    cfg = load_config(None, ["train.lr=0.05"], ClassifierConfig)
    optimizer = build_optimizer(model, cfg.train, backbone_parameters(model), 0.1)
    head = {id(p) for p in model.head.parameters()}
    rates = {("head" if id(p) in head else "backbone", round(group["lr"], 6)) for group in optimizer.param_groups
             for p in group["params"] if p.ndim > 1}  # the weight matrices and filters
    assert rates == {("head", 0.05), ("backbone", 0.005)}


def test_a_grey_folder_takes_rgb_weights_summed_over_the_first_convolution(imagenet_file):
    model = create_model("tv:resnet18", 3, 1, 32, pretrained_path=str(imagenet_file))
    given = torch.load(imagenet_file, weights_only=True)["conv1.weight"]
    assert torch.equal(model.backbone.conv1.weight, given.sum(dim=1, keepdim=True))
    assert model.pretrained["first_conv_summed_to_grey"] == "backbone.conv1.weight"


def test_a_visrep_run_is_a_pretrained_file_with_its_own_size_and_statistics(tmp_path, tiny_trained_run, capsys):
    folder = make_folder(tmp_path / "grey", per_class=8, size=(16, 16), mode="L")
    cfg = load_config(None, [f"data.source={folder}", f"data.cache_dir={tmp_path}/cache", f"run.root={tmp_path}/runs",
                             "run.name=tuned", "model.options.widths=[16,32,32]", "train.epochs=1",
                             f"model.pretrained_path={tiny_trained_run / 'best.safetensors'}",
                             "train.tensorboard=false", "train.threads=1"], ClassifierConfig)
    run = train_classifier(cfg, progress=False)
    assert "data.image_size not given: 8 px (the resolution the pretrained weights" in capsys.readouterr().out
    own = json.loads((tiny_trained_run / "normalization.json").read_text())
    assert json.loads((run / "normalization.json").read_text()) == own


def test_a_file_of_another_architecture_is_one_clear_line(tmp_path, imagenet_file, capsys):
    folder = make_folder(tmp_path / "photos", per_class=8)
    code = main(["train", "classifier", str(folder), f"run.root={tmp_path}/runs", "model.name=tv:mobilenet_v3_small",
                 f"model.pretrained_path={imagenet_file}", "data.image_size=32", "train.epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: the weights in") and "do not fit" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made
    with pytest.raises(UserError, match="96 of its tensors missing"):
        create_model("tv:resnet34", 3, 3, 32, pretrained_path=str(imagenet_file))  # same names, more blocks
