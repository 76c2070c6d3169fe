"""Model registry and classifiers: logits, named features and their shapes, weight loading, errors.

Inputs are tiny (batch 2, at most 32 px) so the whole file runs in seconds on a 2-core CPU.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from visrep.errors import UserError
from visrep.models import FeatureClassifier, create_model, list_models, register_model
from visrep.models import registry
from visrep.models.fastcnn import pooling_plan

NUM_CLASSES = 10
BATCH = 2
ALL_MODELS = ["fastcnn", "resnet18_cifar", "tv:resnet18", "tv:mobilenet_v3_small"]
BUILD_CASES = ([("fastcnn", channels, size) for channels in (1, 3) for size in (8, 28, 32)]
               + [("resnet18_cifar", channels, 32) for channels in (1, 3)] + [("resnet18_cifar", 1, 8)]
               + [("resnet9", 3, 32), ("resnet9", 1, 28), ("resnet9", 1, 8)]
               + [(name, channels, 32) for name in ALL_MODELS[2:] for channels in (1, 3)])

# Documented names, paths and (C, H) of each feature for 32 px inputs (see TorchvisionClassifier).
TORCHVISION_LAYERS_AT_32 = {
    "tv:resnet18": {"stem": ("backbone.relu", 64, 16), "stage1": ("backbone.layer1", 64, 8),
                    "stage2": ("backbone.layer2", 128, 4), "stage3": ("backbone.layer3", 256, 2),
                    "stage4": ("backbone.layer4", 512, 1), "penultimate": ("backbone", 512, None)},
    "tv:mobilenet_v3_small": {"stem": ("backbone.features.0", 16, 16), "stage1": ("backbone.features.1", 16, 8),
                              "stage2": ("backbone.features.3", 24, 4), "stage3": ("backbone.features.8", 48, 2),
                              "stage4": ("backbone.features.12", 576, 1), "penultimate": ("backbone", 1024, None)},
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Batches here are tiny: with several threads, OpenMP start-up and spinning cost far more than the maths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def built(name: str, in_channels: int, image_size: int) -> FeatureClassifier:
    """One eval-mode model per configuration, shared by the tests that only read it."""
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, in_channels, image_size).eval()


def images(in_channels: int = 3, image_size: int = 32) -> torch.Tensor:
    return torch.randn(BATCH, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(1))


def expected_native_shapes(name: str, in_channels: int, size: int) -> dict[str, tuple[int, ...]]:
    """The shapes documented in classifier.py for fastcnn (default widths) and resnet18_cifar."""
    if name == "fastcnn":
        shapes, spatial = {"stem": (BATCH, 18 * in_channels, size, size)}, size
        for index, (width, pools) in enumerate(zip((64, 256, 256), pooling_plan(size, 3)), start=1):
            spatial = spatial // 2 if pools else spatial
            shapes[f"stage{index}"] = (BATCH, width, spatial, spatial)
        return {**shapes, "penultimate": (BATCH, 256)}
    if name == "resnet9":  # each stage halves the size (floor) with a max-pool
        return {"stem": (BATCH, 64, size, size), "stage1": (BATCH, 128, size // 2, size // 2),
                "stage2": (BATCH, 256, size // 4, size // 4), "stage3": (BATCH, 512, size // 8, size // 8),
                "penultimate": (BATCH, 512)}
    shapes = {"stem": (BATCH, 64, size, size)}
    for index, width in enumerate((64, 128, 256, 512), start=1):
        spatial = math.ceil(size / 2 ** (index - 1))
        shapes[f"stage{index}"] = (BATCH, width, spatial, spatial)
    return {**shapes, "penultimate": (BATCH, 512)}


def test_list_models_names_registered_and_torchvision_models():
    names = list_models()
    assert {"fastcnn", "resnet18_cifar", "tv:resnet18", "tv:mobilenet_v3_small"} <= set(names)
    assert "tv:squeezenet1_0" not in names  # no final Linear, so no penultimate feature


@pytest.mark.parametrize("name, in_channels, size", BUILD_CASES)
def test_model_gives_logits_for_each_input_shape(name, in_channels, size):
    model = built(name, in_channels, size)
    with torch.no_grad():
        logits = model(images(in_channels, size))
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert model.num_classes == NUM_CLASSES
    assert model.config == {"name": name, "num_classes": NUM_CLASSES, "in_channels": in_channels,
                            "image_size": size}


@pytest.mark.parametrize("name, in_channels, size", [case for case in BUILD_CASES if not case[0].startswith("tv:")])
def test_native_features_have_documented_names_and_shapes(name, in_channels, size):
    model = built(name, in_channels, size)
    with torch.no_grad():
        features = model.forward_features(images(in_channels, size))
    expected = expected_native_shapes(name, in_channels, size)
    assert list(model.feature_layers) == list(expected)
    assert {layer: tuple(feature.shape) for layer, feature in features.items()} == expected
    assert model.embedding_dim == expected["penultimate"][1]


@pytest.mark.parametrize("name", TORCHVISION_LAYERS_AT_32)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_torchvision_features_have_documented_names_and_shapes(name, in_channels):
    model = built(name, in_channels, 32)
    with torch.no_grad():
        features = model.forward_features(images(in_channels, 32))
    documented = TORCHVISION_LAYERS_AT_32[name]
    assert model.feature_layers == {layer: path for layer, (path, _, _) in documented.items()}
    for layer, (_, channels, spatial) in documented.items():
        expected = (BATCH, channels) if spatial is None else (BATCH, channels, spatial, spatial)
        assert tuple(features[layer].shape) == expected, layer
    assert model.embedding_dim == documented["penultimate"][1]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_head_on_penultimate_reproduces_logits(name):
    model, x = built(name, 3, 32), images()
    with torch.no_grad():
        logits = model(x)
        penultimate = model.forward_features(x, ["penultimate"])["penultimate"]
        assert torch.allclose(model.head(penultimate) * model.logit_scale, logits, atol=1e-5)


def test_fastcnn_logit_scale_defaults_to_one_ninth_and_is_configurable():
    assert built("fastcnn", 3, 32).logit_scale == pytest.approx(1 / 9)
    model, x = create_model("fastcnn", NUM_CLASSES, 3, 16, width=0.25, logit_scale=1.0).eval(), images(3, 16)
    with torch.no_grad():
        assert torch.allclose(model.head(model.forward_features(x, "penultimate")["penultimate"]), model(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_feature_paths_work_with_create_feature_extractor(name):
    model, x = built(name, 3, 32), images()
    return_nodes = {path: layer for layer, path in model.feature_layers.items()}
    extractor = create_feature_extractor(model, return_nodes=return_nodes)
    with torch.no_grad():
        traced, hooked = extractor(x), model.forward_features(x)
    assert all(torch.equal(traced[layer], hooked[layer]) for layer in model.feature_layers)


def test_forward_features_returns_requested_layers_in_requested_order():
    features = built("fastcnn", 3, 32).forward_features(images(), ["stage2", "stem"])
    assert list(features) == ["stage2", "stem"]
    assert list(built("fastcnn", 3, 32).forward_features(images(), "stage1")) == ["stage1"]


def test_unknown_model_names_the_valid_choices():
    with pytest.raises(UserError, match=r"fastcnn.*resnet18_cifar.*tv:"):
        create_model("fastcnm", NUM_CLASSES, 3, 32)
    with pytest.raises(UserError, match=r"mobilenet_v3_small.*resnet18"):
        create_model("tv:resnet19", NUM_CLASSES, 3, 32)


@pytest.mark.parametrize("name", ["fastcnn", "tv:resnet18"])
def test_unknown_layer_names_the_valid_choices(name):
    with pytest.raises(UserError, match=r"'stage9'.*stem, stage1, stage2, stage3.*penultimate"):
        built(name, 3, 32).forward_features(images(), ["stem", "stage9"])


@pytest.mark.parametrize("sizes", [dict(num_classes=0), dict(in_channels=0), dict(image_size=-4),
                                   dict(image_size=32.0), dict(num_classes=True)])
def test_bad_sizes_are_user_errors(sizes):
    arguments = {"num_classes": NUM_CLASSES, "in_channels": 3, "image_size": 32, **sizes}
    with pytest.raises(UserError, match=next(iter(sizes))):
        create_model("fastcnn", **arguments)


def test_resnet9_refuses_images_its_pools_cannot_halve_three_times():
    with pytest.raises(UserError, match="at least 8 px"):
        create_model("resnet9", NUM_CLASSES, 3, 7)


@pytest.mark.parametrize("name, options, message", [
    ("fastcnn", {"widht": 2.0}, "widht.*widths, width"),
    ("fastcnn", {"width": 0}, "width"),
    ("fastcnn", {"widths": ()}, "widths"),
    ("resnet18_cifar", {"width": 2.0}, "options are: widths"),
    ("resnet18_cifar", {"widths": []}, "widths must be a non-empty list"),
    ("resnet9", {"widths": [8, 16]}, "4 integers"),
    ("tv:resnet18", {"weights": "DEFAULT"}, "pretrained_path"),
    ("tv:resnet18", {"no_such_option": 1}, "no_such_option"),
])
def test_bad_options_are_user_errors(name, options, message):
    with pytest.raises(UserError, match=message):
        create_model(name, NUM_CLASSES, 3, 32, **options)


def test_torchvision_model_too_small_for_image_size_is_a_user_error():
    with pytest.raises(UserError, match="inception_v3 cannot process 32x32"):
        create_model("tv:inception_v3", NUM_CLASSES, 3, 32)


def test_fastcnn_pools_only_while_resolution_allows():
    assert pooling_plan(32, 3) == [True, True, True]
    assert pooling_plan(4, 3) == [True, True, False]
    assert pooling_plan(1, 3) == [False, False, False]
    model = create_model("fastcnn", NUM_CLASSES, 1, 2, width=0.25).eval()
    with torch.no_grad():
        features = model.forward_features(images(1, 2))
    assert [features[f"stage{k}"].shape[-1] for k in (1, 2, 3)] == [1, 1, 1]


def test_fastcnn_width_multiplier_scales_every_stage():
    model = create_model("fastcnn", NUM_CLASSES, 3, 8, width=0.25)
    with torch.no_grad():
        features = model.eval().forward_features(images(3, 8))
    assert [features[f"stage{k}"].shape[1] for k in (1, 2, 3)] == [16, 64, 64]
    assert model.embedding_dim == 64


def test_fastcnn_trains_under_bf16_autocast_with_channels_last():
    model = create_model("fastcnn", NUM_CLASSES, 3, 32, width=0.5).to(memory_format=torch.channels_last)
    x = images().to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        features = model.forward_features(x, ["stage1", "penultimate"])
    assert logits.dtype == torch.bfloat16 and logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits.float()).all()
    assert features["stage1"].is_contiguous(memory_format=torch.channels_last)
    assert features["penultimate"].shape == (BATCH, model.embedding_dim)
    logits.float().logsumexp(dim=1).mean().backward()
    assert model.stem[0].weight.grad is not None


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_pretrained_path_round_trips_a_saved_state_dict(tmp_path, suffix):
    source = create_model("fastcnn", NUM_CLASSES, 3, 16, width=0.25).eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    loaded = create_model("fastcnn", NUM_CLASSES, 3, 16, width=0.25, pretrained_path=path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(images(3, 16)), source(images(3, 16)))
    assert "pretrained_path" not in loaded.config  # a checkpoint brings its own weights


def test_torchvision_model_loads_a_plain_torchvision_state_dict(tmp_path):
    reference = torchvision.models.resnet18(num_classes=NUM_CLASSES).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("tv:resnet18", NUM_CLASSES, 3, 32, pretrained_path=tmp_path / "resnet18.pth").eval()
    with torch.no_grad():
        assert torch.allclose(model(images()), reference(images()), atol=1e-6)


def test_torchvision_model_round_trips_its_own_state_dict(tmp_path):
    source = built("tv:mobilenet_v3_small", 1, 32)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    loaded = create_model("tv:mobilenet_v3_small", NUM_CLASSES, 1, 32, pretrained_path=tmp_path / "weights.pt")
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images(1, 32)), source(images(1, 32)))


def test_weight_file_problems_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        create_model("fastcnn", NUM_CLASSES, 3, 16, pretrained_path=tmp_path / "missing.pt")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(UserError, match="unsupported weight file type"):
        create_model("fastcnn", NUM_CLASSES, 3, 16, pretrained_path=tmp_path / "weights.bin")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot read weights"):
        create_model("fastcnn", NUM_CLASSES, 3, 16, pretrained_path=tmp_path / "corrupt.safetensors")
    torch.save(create_model("fastcnn", 3, 3, 16, width=0.5).state_dict(), tmp_path / "wider.pt")
    with pytest.raises(UserError, match="do not fit"):
        create_model("fastcnn", NUM_CLASSES, 3, 16, width=0.25, pretrained_path=tmp_path / "wider.pt")


def test_a_file_with_another_class_count_gives_a_new_head_and_keeps_the_rest(tmp_path):
    source = create_model("fastcnn", 3, 3, 16, width=0.25)
    torch.save(source.state_dict(), tmp_path / "three_classes.pt")
    model = create_model("fastcnn", NUM_CLASSES, 3, 16, width=0.25, pretrained_path=tmp_path / "three_classes.pt")
    assert model.pretrained["new_head"] and model.pretrained["file_classes"] == 3 and model.num_classes == NUM_CLASSES
    kept = [key for key in source.state_dict() if not key.startswith("head.")]
    assert all(torch.equal(model.state_dict()[key], source.state_dict()[key]) for key in kept)


@pytest.mark.parametrize("name, in_channels, options", [("fastcnn", 1, {"widths": (8, 16), "logit_scale": 0.5}),
                                                        ("tv:mobilenet_v3_small", 1, {"dropout": 0.1})])
def test_config_rebuilds_the_same_architecture(name, in_channels, options):
    model = create_model(name, NUM_CLASSES, in_channels, 16, **options)
    rebuilt = create_model(**model.config)
    assert rebuilt.config == model.config
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == \
           {key: value.shape for key, value in model.state_dict().items()}
    assert rebuilt.feature_layers == model.feature_layers


def test_register_model_adds_a_name_and_rejects_clashes(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PREFIXES", dict(registry._PREFIXES))

    @register_model("tiny_fastcnn")
    def tiny(num_classes: int, in_channels: int, image_size: int) -> FeatureClassifier:
        return create_model("fastcnn", num_classes, in_channels, image_size, width=0.125)

    assert "tiny_fastcnn" in list_models()
    assert create_model("tiny_fastcnn", NUM_CLASSES, 3, 8).embedding_dim == 32
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_fastcnn")(tiny)
    with pytest.raises(ValueError, match="reserved"):
        register_model("tv:mine")


def test_any_model_family_registers_with_its_own_signature(monkeypatch):
    """Generators and U-Nets register like classifiers; their builders take their own arguments."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("toy_generator", kind="generator")
    def toy_generator(latent_dim: int, image_size: int, channels: int = 3) -> torch.nn.Module:
        return torch.nn.Linear(latent_dim, channels * image_size * image_size)

    model = create_model("toy_generator", latent_dim=16, image_size=4)
    assert model.config == {"name": "toy_generator", "latent_dim": 16, "image_size": 4}
    assert create_model(**model.config).out_features == 48
    assert "toy_generator" in list_models("generator") and "toy_generator" not in list_models("classifier")
    assert registry.model_kind("toy_generator") == "generator" and registry.model_kind("tv:resnet18") == "classifier"
    with pytest.raises(UserError, match="has no option"):
        create_model("toy_generator", latent_dim=16, image_size=4, width=2)


def test_the_tv_prefix_registers_itself_and_cannot_be_taken():
    from visrep.models import torchvision_family

    assert "tv:" in registry._PREFIXES
    assert registry._PREFIXES["tv:"].members() == torchvision_family.torchvision_archs()
    with pytest.raises(ValueError, match="already in use"):
        registry.register_prefix("tv:", lambda member: None, list)
