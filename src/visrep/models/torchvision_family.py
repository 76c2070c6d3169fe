"""``tv:<arch>``: any torchvision classification architecture, randomly initialised, with named features.

The ``tv:`` prefix registers itself here (:func:`visrep.models.registry.register_prefix`); weights
come only from a local ``model.pretrained_path`` file, never from the network.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from visrep.errors import UserError
from visrep.models.base import FeatureClassifier, check_classifier_sizes
from visrep.models.registry import register_prefix

PREFIX = "tv:"

# torchvision classifiers without a final nn.Linear (their head is a 1x1 conv), so there is no
# "penultimate" vector to expose.
_UNSUPPORTED = frozenset({"squeezenet1_0", "squeezenet1_1"})


def torchvision_archs() -> list[str]:
    import torchvision  # here, not at the top: importing torchvision costs seconds, paid only by tv: users

    archs = torchvision.models.list_models(module=torchvision.models)  # classification models only
    return [arch for arch in archs if arch not in _UNSUPPORTED]


def _builder(arch: str):
    if arch not in torchvision_archs():
        raise UserError(f"unknown torchvision classifier {arch!r}; choose one of: {', '.join(torchvision_archs())}")

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs: Any) -> nn.Module:
        return TorchvisionClassifier(arch, num_classes, in_channels, image_size, **kwargs)

    return build


# googlenet and inception_v3 return (logits, aux...) tuples in training mode unless aux heads are off;
# init_weights=True silences their "default init will change" warning for random init.
_TORCHVISION_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}

# Stage names are read at (at least) torchvision's design resolution, so they do not depend on
# image_size: at 8 px several stages of a /32 network would collapse to the same 1x1 size.
_NAMING_PROBE_SIZE = 224

# Top-level children that reduce or regularise the final map rather than form a stage.
_NOT_A_STAGE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Flatten, nn.Identity)


class TorchvisionClassifier(FeatureClassifier):
    """Any torchvision classification architecture, randomly initialised, with named features.

    Structure: ``backbone`` is the torchvision net with its final ``nn.Linear`` replaced by
    ``nn.Identity``, so the backbone's output *is* the input of that Linear; ``head`` is the Linear.
    logits = head(backbone(x)) (``logit_scale`` 1), identical to the unmodified torchvision model.
    ``load_state_dict`` accepts this layout or a plain torchvision state dict.

    When ``in_channels`` != 3 the first ``nn.Conv2d`` is replaced by a fresh one with the same
    hyper-parameters and ``in_channels`` inputs. Construction checks on the meta device (no compute)
    that the net runs at ``image_size``, and raises UserError otherwise (e.g. ViT needs 224 px).

    Feature layers (paths all start with "backbone."):

    * "penultimate" → "backbone": the input of the final Linear, (N, embedding_dim);
    * "stem", "stage1", ... — a generic rule: the trunk is ``features``'s children, else ``layers``'s
      children (MNASNet), else the top-level children minus pooling/dropout/head, with top-level
      ModuleLists and Sequentials of Sequentials (RegNet's ``trunk_output``) expanded one level. A
      meta-device probe at max(image_size, 224) px records each trunk module's NCHW output size in
      call order; consecutive modules group until the size halves. "stem" is the last module of the
      first group, "stage{k}" the last module of group k+1, so stage k is the k-th downsampling.

    What the rule gives (paths without the "backbone." prefix)::

        resnet*, resnext*, wide_resnet*  stem relu; stage1-4 layer1..layer4
        mobilenet_v3_small               features.0; features.1, .3, .8, .12
        mobilenet_v3_large               features.1; features.3, .6, .12, .16
        mobilenet_v2                     features.1; features.3, .6, .13, .18
        efficientnet_b0..b7, v2_m, v2_l  features.1; features.2, .3, .5, .8   (v2_s: .7 last)
        densenet*                        features.relu0; denseblock1..3, norm5
        convnext_*                       features.1 (stem + first stage, same size); stage1-3 .3, .5, .7
        regnet_*                         stem; trunk_output.block1..block4
        shufflenet_v2_*                  conv1; maxpool, stage2, stage3, conv5
        mnasnet*                         layers.7; layers.8, .9, .11, .16
        googlenet                        conv1; conv3, inception3b, inception4e, inception5b
        inception_v3                     Conv2d_2b_3x3; Conv2d_4a_3x3, Mixed_5d, Mixed_6e, Mixed_7c
        vgg*, alexnet                    the module before each max-pool, the last max-pool as the last
                                         stage: 5 stages (vgg) / 3 (alexnet)
        maxvit_t                         stem.1; blocks.0..blocks.3
        vit_*                            stem conv_proj only (the encoder emits tokens, not maps)
        swin*                            "penultimate" only (its maps are NHWC)
    """

    def __init__(self, arch: str, num_classes: int, in_channels: int, image_size: int, **arch_kwargs: Any) -> None:
        super().__init__()
        check_classifier_sizes(num_classes, in_channels, image_size)
        self.arch = arch
        net = _build_torchvision_net(arch, num_classes, arch_kwargs)
        _adapt_input_channels(net, in_channels)
        self._head_path = _final_linear_path(net, arch)
        self.head = net.get_submodule(self._head_path)
        net.set_submodule(self._head_path, nn.Identity())
        self.backbone = net
        self.logit_scale = 1.0
        _check_runs_at(self, in_channels, image_size)
        stages = _stage_paths(net, self._head_path, in_channels, max(image_size, _NAMING_PROBE_SIZE))
        self._set_feature_layers({**{name: f"backbone.{path}" for name, path in stages.items()},
                                  "penultimate": "backbone"})

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) → logits (N, num_classes)."""
        return self.head(self.backbone(x))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load this model's own layout, or a plain torchvision state dict (``fc.weight``, ``features.0...``)."""
        return super().load_state_dict(self.own_layout(state_dict), strict=strict, assign=assign)

    def own_layout(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """This model's layout (``backbone.*``, ``head.*``) from itself or from a plain torchvision (or
        timm ResNet) state dict. Swin's plain layout also has "head.*" keys, so only an all-backbone/head
        key set counts as ours."""
        if all(key.startswith(("backbone.", "head.")) for key in state_dict):
            return dict(state_dict)
        head_prefix = self._head_path + "."
        return {(f"head.{key[len(head_prefix):]}" if key.startswith(head_prefix) else f"backbone.{key}"): value
                for key, value in state_dict.items()}


def _build_torchvision_net(arch: str, num_classes: int, arch_kwargs: dict[str, Any]) -> nn.Module:
    if "weights" in arch_kwargs or "progress" in arch_kwargs:
        raise UserError(f"tv:{arch} is always built without downloads; load local weights with pretrained_path=")
    import torchvision

    options = {**_TORCHVISION_DEFAULTS.get(arch, {}), **arch_kwargs}
    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    except TypeError as error:  # an option the torchvision builder does not know
        raise UserError(f"tv:{arch} does not accept option(s) {', '.join(sorted(arch_kwargs))}: {error}") from error


def _adapt_input_channels(net: nn.Module, in_channels: int) -> None:
    """Swap the first conv for one taking ``in_channels`` inputs (random init, like the rest of the net)."""
    convs = [(name, module) for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise UserError(f"{type(net).__name__} has no nn.Conv2d whose input channels could be adapted")
    path, conv = convs[0]
    if conv.in_channels == in_channels:
        return
    net.set_submodule(path, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                      padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                                      padding_mode=conv.padding_mode))


def _final_linear_path(net: nn.Module, arch: str) -> str:
    """Path of the last registered nn.Linear, which every torchvision classifier applies last."""
    linears = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError(f"tv:{arch} has no final nn.Linear layer, so it has no penultimate feature")
    return linears[-1]


def _check_runs_at(model: TorchvisionClassifier, in_channels: int, image_size: int) -> None:
    try:
        penultimate = _run_on_meta(model.backbone, in_channels, image_size)
    except (RuntimeError, AssertionError, ValueError) as error:
        raise UserError(f"tv:{model.arch} cannot process {image_size}x{image_size} inputs: {error}") from error
    if tuple(penultimate.shape) != (1, model.embedding_dim):
        raise UserError(f"tv:{model.arch} feeds its final Linear a {tuple(penultimate.shape)} tensor, "
                        f"not (N, {model.embedding_dim}); this architecture is not supported")


def _run_on_meta(net: nn.Module, in_channels: int, size: int) -> Tensor:
    """One eval-mode forward of a (1, in_channels, size, size) input with every tensor on the meta
    device: shapes are computed, values are not, so even large nets cost almost nothing."""
    meta_tensors = {name: torch.empty_like(tensor, device="meta")
                    for name, tensor in itertools.chain(net.named_parameters(), net.named_buffers())}
    was_training = net.training
    net.eval()  # train-mode BN rejects a 1-sample batch at 1x1 resolution
    try:
        with torch.no_grad():
            return functional_call(net, meta_tensors, (torch.zeros(1, in_channels, size, size, device="meta"),))
    finally:
        net.train(was_training)


def _stage_paths(net: nn.Module, head_path: str, in_channels: int, probe_size: int) -> dict[str, str]:
    """{"stem": path, "stage1": path, ...} by the grouping rule of :class:`TorchvisionClassifier`."""
    groups: list[tuple[str, int]] = []  # (last path, size where the group started)
    for path, size in _map_sizes_in_call_order(net, head_path, in_channels, probe_size):
        if groups and size * 2 > groups[-1][1] + 1:  # not yet halved (ceil or valid-conv rounding)
            groups[-1] = (path, groups[-1][1])
        else:
            groups.append((path, size))
    names = ["stem"] + [f"stage{k}" for k in range(1, len(groups))]
    return {name: path for name, (path, _) in zip(names, groups)}


def _map_sizes_in_call_order(net: nn.Module, head_path: str, in_channels: int,
                             probe_size: int) -> list[tuple[str, int]]:
    sizes: dict[str, int] = {}  # dicts keep insertion order = call order

    def recorder(path: str):
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            # The probe is square, so an NCHW map has H == W; token (3-D) and NHWC outputs don't count.
            if torch.is_tensor(output) and output.ndim == 4 and output.shape[-2] == output.shape[-1]:
                sizes.setdefault(path, output.shape[-1])
        return record

    handles = [module.register_forward_hook(recorder(path)) for path, module in _trunk(net, head_path)]
    try:
        _run_on_meta(net, in_channels, probe_size)
    finally:
        for handle in handles:
            handle.remove()
    return list(sizes.items())


def _trunk(net: nn.Module, head_path: str) -> list[tuple[str, nn.Module]]:
    """Candidate stage modules of a torchvision classifier (see TorchvisionClassifier)."""
    for container in ("features", "layers"):
        modules = getattr(net, container, None)
        if isinstance(modules, nn.Sequential):
            return [(f"{container}.{name}", module) for name, module in modules.named_children()]
    trunk = []
    for name, module in net.named_children():
        if isinstance(module, _NOT_A_STAGE) or head_path == name or head_path.startswith(name + "."):
            continue  # e.g. ViT's "heads", MaxViT's "classifier": they hold the head, not a stage
        if _is_stage_list(module):
            trunk += [(f"{name}.{child_name}", child) for child_name, child in module.named_children()]
        else:
            trunk.append((name, module))
    return trunk


def _is_stage_list(module: nn.Module) -> bool:
    children = list(module.children())
    return isinstance(module, nn.ModuleList) or (
        isinstance(module, nn.Sequential) and bool(children) and all(isinstance(c, nn.Sequential) for c in children))


register_prefix(PREFIX, _builder, torchvision_archs, kind="classifier",
                example="a torchvision classifier, e.g. tv:resnet18")
