"""A local pretrained file → a classifier to fine-tune: what the weights expect, and loading them.

Files accepted (never downloaded; ``visrep models`` lists them per family):

* a torchvision state dict of the same architecture (``tv:<arch>``; ``.pth``/``.pt``/``.safetensors``),
  or a timm one whose keys are torchvision's (timm's ResNets: ``conv1``, ``bn1``, ``layer1``.., ``fc``);
  these weights expect ImageNet's normalisation and 224 px images;
* a visrep classifier run's ``best``/``last.safetensors`` (any architecture): its ``.json`` sidecar
  names the architecture and size, and ``normalization.json`` beside it holds the statistics it
  was trained with.

Loading keeps the file's head when it fits (same classes), else gives the model a new one (random
init, trained first: :mod:`visrep.training.classifier`); a first convolution made for 3 channels is
summed over them for grey images (the response to a grey image is then what the RGB filters gave
for that grey). Any other tensor that is missing, extra or of another shape is one error line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from visrep.errors import UserError
from visrep.models.registry import read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's and timm's ImageNet weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224  # their training resolution


@dataclass
class PretrainedFile:
    """What a pretrained file's weights expect of the data."""
    path: Path
    kind: str  # "visrep" (a visrep run's weights) | "imagenet" (torchvision or timm)
    image_size: int  # the resolution the weights were trained at
    mean: tuple[float, ...]  # per channel, [0, 1] pixel units
    std: tuple[float, ...]
    architecture: str | None  # the visrep model name, when the file says

    def normalization_for(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for ``channels``-channel data: RGB statistics averaged for grey images."""
        if len(self.mean) == channels:
            return self.mean, self.std
        if channels == 1:
            return (sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),)
        return (self.mean[0],) * channels, (self.std[0],) * channels


def describe_file(path: str | Path) -> PretrainedFile:
    """Read what a pretrained file expects (its sidecar and normalisation, or ImageNet's conventions)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"model.pretrained_path: file not found: {path}")
    sidecar = path.with_suffix(".json")
    if path.suffix == ".safetensors" and sidecar.is_file():
        return _visrep_file(path, sidecar)
    return PretrainedFile(path, "imagenet", IMAGENET_SIZE, IMAGENET_MEAN, IMAGENET_STD, None)


def _visrep_file(path: Path, sidecar: Path) -> PretrainedFile:
    try:
        config = json.loads(sidecar.read_text(encoding="utf-8"))
        stats = json.loads((path.parent / "normalization.json").read_text(encoding="utf-8"))
        mean, std = tuple(float(v) for v in stats["mean"]), tuple(float(v) for v in stats["std"])
        size = int(config["image_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"model.pretrained_path {path}: a visrep run's weights need their {sidecar.name} and the "
                        f"run's normalization.json beside them ({str(err)[:120]})") from None
    return PretrainedFile(path, "visrep", size, mean, std, config.get("name"))


def load_pretrained(model: nn.Module, path: str | Path) -> dict:
    """Load ``path`` into the classifier ``model`` (see the module docstring); returns what was done."""
    state = model.own_layout(read_state_dict(path))
    own = model.state_dict()
    head = {key for key in own if key.startswith("head.")}
    new_head = any(key not in state or state[key].shape != own[key].shape for key in head)
    file_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else None  # rows of its head
    if new_head:
        state = {key: value for key, value in state.items() if key not in head}
    adapted = _adapt_first_conv(state, own)
    _check_fits(model, state, own, head if new_head else set(), path)
    model.load_state_dict({**own, **state})
    return {"file": str(path), "tensors_loaded": len(state), "new_head": new_head,
            "file_classes": file_classes,
            "first_conv_summed_to_grey": adapted}


def _adapt_first_conv(state: dict, own: dict) -> str | None:
    """A 3-channel first convolution given to a 1-channel model: summed over its input channels."""
    for key, tensor in state.items():
        target = own.get(key)
        if (target is not None and tensor.ndim == 4 and target.ndim == 4 and tensor.shape[1] == 3
                and target.shape[1] == 1 and tensor.shape[0] == target.shape[0]):
            state[key] = tensor.sum(dim=1, keepdim=True)
            return key
    return None


def _check_fits(model: nn.Module, state: dict, own: dict, new: set[str], path) -> None:
    missing = sorted(set(own) - set(state) - new)
    extra = sorted(set(state) - set(own))
    shapes = sorted(key for key in set(state) & set(own) if state[key].shape != own[key].shape)
    if not (missing or extra or shapes):
        return
    name = model.config["name"] if hasattr(model, "config") else type(model).__name__
    parts = [f"{len(missing)} of its tensors missing (first: {missing[0]})" if missing else "",
             f"{len(extra)} unexpected (first: {extra[0]})" if extra else "",
             f"{len(shapes)} of another shape (first: {shapes[0]}: {tuple(state[shapes[0]].shape)} in the file, "
             f"{tuple(own[shapes[0]].shape)} here)" if shapes else ""]
    raise UserError(f"the weights in {path} do not fit {name}: {', '.join(p for p in parts if p)}; another "
                    f"architecture's file? (`visrep models` says which files each architecture takes)")


def head_parameters(model: nn.Module) -> set[int]:
    """ids of the head's parameters: what trains first, and at the full rate, when fine-tuning."""
    return {id(parameter) for parameter in model.head.parameters()}


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Freeze (or free) every parameter but the head's; a frozen backbone's BatchNorm keeps its pretrained
    statistics too (eval mode), so the head learns on the features the weights give."""
    head = head_parameters(model)
    for parameter in model.parameters():
        if id(parameter) not in head:
            parameter.requires_grad_(not frozen)
    if frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

