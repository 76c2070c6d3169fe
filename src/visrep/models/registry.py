"""Model names → classifier builders, plus loading local weight files.

Two kinds of names:

* registered names (``fastcnn``, ``resnet18_cifar``, ...), added with :func:`register_model`;
* ``tv:<arch>`` for any torchvision classification architecture (``tv:resnet18``,
  ``tv:mobilenet_v3_small``, ...), always randomly initialised: weights come only from a local
  ``pretrained_path`` file, never from the network.

Every created model carries ``model.config``, a flat dict such that ``create_model(**model.config)``
rebuilds the same architecture (``pretrained_path`` is left out: a checkpoint brings its own weights).
"""

from __future__ import annotations

import inspect
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from visrep.errors import UserError

TORCHVISION_PREFIX = "tv:"

# torchvision classifiers without a final nn.Linear (their head is a 1x1 conv), so there is no
# "penultimate" vector to expose.
_UNSUPPORTED_TORCHVISION = frozenset({"squeezenet1_0", "squeezenet1_1"})

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(num_classes, in_channels, image_size, **kwargs) -> nn.Module`` as ``name``."""
    if name.startswith(TORCHVISION_PREFIX):
        raise ValueError(f"model names starting with {TORCHVISION_PREFIX!r} are reserved for torchvision")

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name]!r})")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """All valid model names: registered ones first, then every supported ``tv:<arch>``."""
    return sorted(_REGISTRY) + [TORCHVISION_PREFIX + arch for arch in _torchvision_archs()]


def create_model(name: str, num_classes: int, in_channels: int, image_size: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` for ``(N, in_channels, image_size, image_size)`` inputs and ``num_classes`` logits.

    ``kwargs`` go to the model (for ``tv:`` names: to the torchvision builder), except
    ``pretrained_path``: a local ``.safetensors`` / ``.pt`` / ``.pth`` state-dict file loaded after building.
    Raises UserError for unknown names, bad sizes, unknown options and missing or unfitting weight files.
    """
    pretrained_path = kwargs.pop("pretrained_path", None)
    _check_sizes(num_classes, in_channels, image_size)
    builder = _resolve_builder(name)
    _check_options(name, builder, kwargs)
    model = builder(num_classes, in_channels, image_size, **kwargs)
    if pretrained_path is not None:
        load_weights(model, pretrained_path)
    model.config = {"name": name, "num_classes": num_classes, "in_channels": in_channels,
                    "image_size": image_size, **kwargs}
    return model


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local state-dict file into ``model`` (strict: every key must fit)."""
    state_dict = read_state_dict(path)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:  # missing / unexpected keys or shape mismatches
        raise UserError(f"weights in {path} do not fit this model: {error}") from error


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read ``.safetensors`` (safetensors) or ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``) onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise UserError(f"unsupported weight file type {suffix!r} for {path}; use .safetensors, .pt or .pth")
    try:
        state_dict = _read_file(path, suffix)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, SafetensorError) as error:
        raise UserError(f"could not read weight file {path}: {error}") from error
    if not (isinstance(state_dict, Mapping) and all(torch.is_tensor(value) for value in state_dict.values())):
        raise UserError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    return dict(state_dict)


def _read_file(path: Path, suffix: str) -> Any:
    if suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_sizes(num_classes: int, in_channels: int, image_size: int) -> None:
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{label} must be a positive integer (got {value!r})")


def _resolve_builder(name: str) -> ModelBuilder:
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_builder(name[len(TORCHVISION_PREFIX):])
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}, "
                        f"or {TORCHVISION_PREFIX}<arch> for a torchvision classifier (e.g. tv:resnet18)")
    return _REGISTRY[name]


def _torchvision_builder(arch: str) -> ModelBuilder:
    if arch not in _torchvision_archs():
        raise UserError(f"unknown torchvision classifier {arch!r}; choose one of: {', '.join(_torchvision_archs())}")
    # Imported here, not at module top: classifier.py imports this module to register its models.
    from visrep.models.classifier import TorchvisionClassifier

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs: Any) -> nn.Module:
        return TorchvisionClassifier(arch, num_classes, in_channels, image_size, **kwargs)

    return build


def _torchvision_archs() -> list[str]:
    archs = torchvision.models.list_models(module=torchvision.models)  # classification models only
    return [arch for arch in archs if arch not in _UNSUPPORTED_TORCHVISION]


def _check_options(name: str, builder: ModelBuilder, kwargs: dict[str, Any]) -> None:
    """Report misspelt options as a UserError before building (``**kwargs`` builders check their own)."""
    parameters = list(inspect.signature(builder).parameters.values())[3:]  # after num_classes, in_channels, size
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return
    accepted = [parameter.name for parameter in parameters]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(f"model {name!r} has no option(s) {', '.join(unknown)}; "
                        f"its options are: {', '.join(accepted) or 'none'}")
