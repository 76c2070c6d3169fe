"""Classifiers that expose stable, named intermediate features for the embedding stage.

Every model is a :class:`FeatureClassifier`:

* ``logits = model.head(penultimate) * model.logit_scale`` — ``head`` is the final ``nn.Linear``;
* ``model.feature_layers`` — ordered ``{public name: module path}``. The feature is the *output* of the
  module at that dotted path, so the paths work with ``register_forward_hook`` and with
  ``torchvision.models.feature_extraction.create_feature_extractor(model, return_nodes=[path])``;
* ``model.forward_features(x, layers)`` → ``{name: tensor}``; ``model.embedding_dim`` is D of
  "penultimate" (N, D) and ``model.num_classes`` the number of logits.

Layer names per model, for inputs (N, C, S, S) with S = ``image_size``:

``fastcnn`` (stem width c0 = 18·C; widths w1..wK after the ``width`` multiplier, K = 3 by default)::

    stem         "stem"              (N, c0, S, S)         padded 3x3 conv + GELU
    stage{k}     "stages.stage{k}"   (N, wk, Sk, Sk)       Sk = S(k-1) // 2 while S(k-1) >= 2, else S(k-1)
    penultimate  "flatten"           (N, wK)               global max-pool, flattened

``resnet18_cifar``::

    stem         "stem"              (N, 64, S, S)
    stage1       "stages.stage1"     (N, 64, S, S)
    stage2       "stages.stage2"     (N, 128, ⌈S/2⌉, ⌈S/2⌉)
    stage3       "stages.stage3"     (N, 256, ⌈S/4⌉, ⌈S/4⌉)
    stage4       "stages.stage4"     (N, 512, ⌈S/8⌉, ⌈S/8⌉)
    penultimate  "flatten"           (N, 512)              global average-pool, flattened

``tv:<arch>``: see :class:`TorchvisionClassifier` for the rule and the names it gives per family.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.func import functional_call

from visrep.errors import UserError
from visrep.models.registry import register_model


class FeatureClassifier(nn.Module):
    """Base class: a classifier with a final ``head`` (nn.Linear) and named intermediate features.

    Subclasses build their modules, define ``forward`` as ``head(penultimate) * logit_scale`` and end
    ``__init__`` with :meth:`_set_feature_layers`. ``create_model`` adds ``config``.
    """

    head: nn.Linear
    logit_scale: float
    feature_layers: dict[str, str]
    config: dict[str, Any]
    init_images: int = 5000  # training images an ``init_from_data(images)`` method wants, for models that have one

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def embedding_dim(self) -> int:
        """Width D of the "penultimate" feature (N, D) that ``head`` maps to logits."""
        return self.head.in_features

    def forward_features(self, x: Tensor, layers: Sequence[str] | str | None = None) -> dict[str, Tensor]:
        """Run ``x`` (N, C, H, W) through the model and return ``{name: output}`` for ``layers`` (default: all).

        The tensors are exactly what flows through the model in this call (same dtype and memory
        format, still attached to the autograd graph unless the caller disabled it).
        """
        names = self._check_layer_names(layers)
        captured: dict[str, Tensor] = {}
        handles = [self._capture_output(name, captured) for name in dict.fromkeys(names)]
        try:
            self(x)  # the whole forward, head included: simpler than stopping early, and the head is cheap
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name] for name in names}

    def _set_feature_layers(self, feature_layers: Mapping[str, str]) -> None:
        for path in feature_layers.values():
            self.get_submodule(path)  # fail at construction, not at first use, if a path is wrong
        self.feature_layers = dict(feature_layers)

    def _check_layer_names(self, layers: Sequence[str] | str | None) -> list[str]:
        if layers is None:
            return list(self.feature_layers)
        names = [layers] if isinstance(layers, str) else list(layers)
        unknown = [name for name in names if name not in self.feature_layers]
        if unknown:
            raise UserError(f"unknown feature layer(s) {', '.join(map(repr, unknown))} for "
                            f"{type(self).__name__}; choose from: {', '.join(self.feature_layers)}")
        return names

    def _capture_output(self, name: str, captured: dict[str, Tensor]) -> torch.utils.hooks.RemovableHandle:
        def store(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            captured[name] = output

        return self.get_submodule(self.feature_layers[name]).register_forward_hook(store)


def _stage_layer_paths(stages: nn.Sequential) -> dict[str, str]:
    """{"stage1": "stages.stage1", ...} for models that keep their stages in a ``stages`` Sequential."""
    return {name: f"stages.{name}" for name, _ in stages.named_children()}


# --------------------------------------------------------------------------------------------- fastcnn

class FastConvBlock(nn.Sequential):
    """conv3x3 → maxpool2 (or identity) → BN → GELU → conv3x3 → BN → GELU, as in airbench's ConvGroup.

    (N, c_in, H, W) → (N, c_out, H//2, W//2), or (N, c_out, H, W) when ``pool`` is False.
    Pooling right after the first conv (before BN) is airbench's choice: the BN then sees the
    pooled statistics, and the second conv runs at the lower resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__(OrderedDict(
            conv1=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            pool=nn.MaxPool2d(2) if pool else nn.Identity(),
            norm1=nn.BatchNorm2d(out_channels),
            act1=nn.GELU(),
            conv2=nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm2=nn.BatchNorm2d(out_channels),
            act2=nn.GELU(),
        ))


@register_model("fastcnn")
class FastCNN(FeatureClassifier):
    """A small, fast CNN for 8–64 px images on a CPU, after Keller Jordan's airbench94 CIFAR-10 net (2024).

    Differences from airbench, and why:

    * the "whiten" stem is a *padded* 3x3 conv (airbench: unpadded 2x2), so the stem keeps the S x S
      size and the pooling plan below depends only on ``image_size``; its width defaults to
      2·C·3·3 (= 54 for RGB), twice the patch dimension as in airbench, leaving room for a
      whitening basis and its negation. It is trained like any layer (no data-derived init).
    * blocks pool only while the spatial size is ≥ 2, so 8 px inputs (8→4→2→1) never reach 0;
    * standard ``BatchNorm2d`` and PyTorch's default init.

    Input (N, C, S, S) → logits (N, num_classes) = (head(penultimate) with no bias) · ``logit_scale``;
    airbench scales by 1/9 to keep the initial logits small without a learned temperature.
    Runs under channels_last and ``torch.autocast("cpu", dtype=torch.bfloat16)``.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 widths: Sequence[int] = (64, 256, 256), width: float = 1.0, stem_width: int | None = None,
                 logit_scale: float = 1 / 9) -> None:
        super().__init__()
        widths = _scaled_widths(widths, width)
        stem_width = 2 * in_channels * 3 * 3 if stem_width is None else stem_width
        _check_positive_int("stem_width", stem_width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=True), nn.GELU())
        self.stages = nn.Sequential(OrderedDict(_fast_stages(stem_width, widths, image_size)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = float(logit_scale)
        self._set_feature_layers({"stem": "stem", **_stage_layer_paths(self.stages),
                                  "penultimate": "flatten"})

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) → logits (N, num_classes)."""
        features = self.flatten(self.pool(self.stages(self.stem(x))))
        return self.head(features) * self.logit_scale


def pooling_plan(image_size: int, num_stages: int) -> list[bool]:
    """Whether each FastCNN stage halves the resolution: only while the incoming size is ≥ 2."""
    plan, size = [], image_size
    for _ in range(num_stages):
        plan.append(size >= 2)
        size = size // 2 if size >= 2 else size
    return plan


def _fast_stages(stem_width: int, widths: tuple[int, ...], image_size: int) -> Iterator[tuple[str, nn.Module]]:
    in_widths = (stem_width, *widths[:-1])
    plan = pooling_plan(image_size, len(widths))
    for index, (c_in, c_out, pool) in enumerate(zip(in_widths, widths, plan), start=1):
        yield f"stage{index}", FastConvBlock(c_in, c_out, pool)


def _scaled_widths(widths: Sequence[int], width: float) -> tuple[int, ...]:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise UserError(f"width multiplier must be a positive number (got {width!r})")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise UserError(f"widths must be a non-empty list of positive integers (got {widths!r})")
    for value in widths:
        _check_positive_int("each widths entry", value)
    return tuple(max(1, round(value * width)) for value in widths)


def _check_positive_int(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{label} must be a positive integer (got {value!r})")


# --------------------------------------------------------------------------------------- resnet18_cifar

class BasicBlock(nn.Module):
    """ResNet basic block: (N, c_in, H, W) → (N, c_out, ⌈H/stride⌉, ⌈W/stride⌉).

    The shortcut is a strided 1x1 conv + BN only when the shape changes, identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_channels)) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@register_model("resnet18_cifar")
class ResNet18Cifar(FeatureClassifier):
    """CIFAR-style ResNet-18: 3x3 stride-1 stem without max-pool, 4 stages of 2 BasicBlocks (64-128-256-512).

    Keeping full resolution in the stem suits 32 px inputs, where the ImageNet stem (7x7 stride 2 +
    max-pool) would throw away 15/16 of the pixels. Any ``image_size`` ≥ 1 works (it only enters
    ``config``). Input (N, C, S, S) → logits (N, num_classes); ``logit_scale`` is 1.
    """

    stage_widths = (64, 128, 256, 512)

    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        self.stages = nn.Sequential(OrderedDict(_resnet_stages(64, self.stage_widths)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(self.stage_widths[-1], num_classes)
        self.logit_scale = 1.0
        self._set_feature_layers({"stem": "stem", **_stage_layer_paths(self.stages),
                                  "penultimate": "flatten"})

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) → logits (N, num_classes)."""
        return self.head(self.flatten(self.pool(self.stages(self.stem(x)))))


def _resnet_stages(in_width: int, widths: Sequence[int]) -> Iterator[tuple[str, nn.Module]]:
    for index, width in enumerate(widths, start=1):
        stride = 1 if index == 1 else 2
        yield f"stage{index}", nn.Sequential(BasicBlock(in_width, width, stride), BasicBlock(width, width, 1))
        in_width = width


# ------------------------------------------------------------------------------------------- tv:<arch>

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
        # Swin's plain layout also has "head.*" keys, so only an all-backbone/head key set counts as ours.
        if not all(key.startswith(("backbone.", "head.")) for key in state_dict):
            state_dict = self._from_torchvision_layout(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _from_torchvision_layout(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        head_prefix = self._head_path + "."
        return {(f"head.{key[len(head_prefix):]}" if key.startswith(head_prefix) else f"backbone.{key}"): value
                for key, value in state_dict.items()}


def _build_torchvision_net(arch: str, num_classes: int, arch_kwargs: dict[str, Any]) -> nn.Module:
    if "weights" in arch_kwargs or "progress" in arch_kwargs:
        raise UserError(f"tv:{arch} is always built without downloads; load local weights with pretrained_path=")
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
