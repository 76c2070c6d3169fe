"""Model names → builders, plus loading local weight files.

Any model family registers here, not only classifiers: a builder is any callable returning an
``nn.Module`` and taking its options as arguments (a classifier's are ``num_classes, in_channels,
image_size, **options``; a generator or a U-Net has its own). Two kinds of names:

* registered names (``fastcnn``, ``resnet18_cifar``, ...), added with :func:`register_model`;
* prefixed families, added with :func:`register_prefix` by the module that implements them:
  ``tv:<arch>`` for any torchvision classification architecture (always randomly initialised:
  weights come only from a local ``pretrained_path`` file, never from the network).

Every created model carries ``model.config``, a flat dict such that ``create_model(**model.config)``
rebuilds the same architecture (``pretrained_path`` is left out: a checkpoint brings its own weights).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visrep.errors import UserError
from visrep.storage import read_safetensors, read_torch_file

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class Prefix:
    """A family of names ``<prefix><member>`` resolved by the family itself."""
    builder: Callable[[str], ModelBuilder]  # member → builder (raises UserError for an unknown member)
    members: Callable[[], list[str]]  # every valid member, for listings and messages
    kind: str
    example: str


_REGISTRY: dict[str, tuple[ModelBuilder, str]] = {}  # name → (builder, kind)
_PREFIXES: dict[str, Prefix] = {}


def register_model(name: str, kind: str = "classifier") -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(**options) -> nn.Module`` as ``name`` (``kind``: classifier, generator, ...)."""
    prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
    if prefix is not None:
        raise ValueError(f"model names starting with {prefix!r} are reserved for that family")

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name][0]!r})")
        _REGISTRY[name] = (builder, kind)
        return builder

    return decorate


def register_prefix(prefix: str, builder: Callable[[str], ModelBuilder], members: Callable[[], list[str]],
                    kind: str = "classifier", example: str = "") -> None:
    """Register a family named ``<prefix><member>`` (e.g. ``tv:resnet18``), resolved by ``builder(member)``."""
    if prefix in _PREFIXES or any(name.startswith(prefix) for name in _REGISTRY):
        raise ValueError(f"prefix {prefix!r} is already in use")
    _PREFIXES[prefix] = Prefix(builder, members, kind, example)


def list_models(kind: str | None = None) -> list[str]:
    """Valid model names (of one ``kind``, or all): registered ones first, then every prefixed member."""
    names = sorted(name for name, (_, k) in _REGISTRY.items() if kind in (None, k))
    for prefix, family in sorted(_PREFIXES.items()):
        if kind in (None, family.kind):
            names += [prefix + member for member in family.members()]
    return names


def model_kind(name: str) -> str:
    return _resolve(name)[1]


def create_model(name: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with the builder's own arguments.

    For a classifier: ``create_model(name, num_classes, in_channels, image_size, **options)`` for
    ``(N, in_channels, image_size, image_size)`` inputs and ``num_classes`` logits. ``pretrained_path``
    (any model): a local ``.safetensors`` / ``.pt`` / ``.pth`` state-dict file loaded after building.
    Raises UserError for unknown names, unknown or missing options, bad sizes and unfitting weight files.
    """
    pretrained_path = kwargs.pop("pretrained_path", None)
    builder, _ = _resolve(name)
    arguments = _bind(name, builder, args, kwargs)
    model = builder(*args, **kwargs)
    model.config = {"name": name, **arguments}
    if pretrained_path is not None and hasattr(model, "own_layout"):  # a classifier: fine-tuned from the file
        from visrep.models.pretrained import load_pretrained  # noqa: PLC0415  (it imports this module)

        model.pretrained = load_pretrained(model, pretrained_path)
    elif pretrained_path is not None:
        load_weights(model, pretrained_path)
    return model


def _resolve(name: str) -> tuple[ModelBuilder, str]:
    if not isinstance(name, str):
        raise UserError(f"model name must be a string (got {name!r})")
    for prefix, family in _PREFIXES.items():
        if name.startswith(prefix):
            return family.builder(name[len(prefix):]), family.kind
    if name not in _REGISTRY:
        families = "".join(f", or {p}<name> ({f.example})" if f.example else f", or {p}<name>"
                           for p, f in sorted(_PREFIXES.items()))
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}{families}")
    return _REGISTRY[name]


def _bind(name: str, builder: ModelBuilder, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The builder's arguments by name (``**options`` flattened), or a UserError naming what does not fit."""
    signature = inspect.signature(builder)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        named = [p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        unknown = sorted(set(kwargs) - set(named))
        accepted = named[len(args):]  # the options: what the call did not already give by position
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            raise UserError(f"model {name!r} has no option(s) {', '.join(unknown)}; its options are: "
                            f"{', '.join(accepted) or 'none'}") from None
        raise UserError(f"model {name!r}: {error}") from None
    arguments = {}
    for key, value in bound.arguments.items():
        if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        else:
            arguments[key] = value
    return arguments


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
    state_dict = read_safetensors(path)[0] if suffix == ".safetensors" else read_torch_file(path)
    if not (isinstance(state_dict, Mapping) and all(torch.is_tensor(value) for value in state_dict.values())):
        raise UserError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    return dict(state_dict)

