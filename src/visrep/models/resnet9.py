"""``resnet9``: the DAWNBench ResNet-9 (David Page, 2018) for 16-64 px images, with adjustable widths.

A residual network with a CIFAR stem, chosen for the CIFAR-10 evaluator because its family differs
from the conditioning classifiers' (``fastcnn``/``airbench``: plain conv blocks without shortcuts,
GELU, a whitening stem) while its cost per image is about the same at half width.

Layer names for inputs (N, C, S, S), widths (w0, w1, w2, w3)::

    stem         "stem"              (N, w0, S, S)          3x3 conv + BN + ReLU
    stage1       "stages.stage1"     (N, w1, S/2, S/2)      conv + max-pool + BN + ReLU, then a residual pair
    stage2       "stages.stage2"     (N, w2, S/4, S/4)      conv + max-pool + BN + ReLU
    stage3       "stages.stage3"     (N, w3, S/8, S/8)      conv + max-pool + BN + ReLU, then a residual pair
    penultimate  "flatten"           (N, w3)                global max-pool, flattened

The max-pool comes right after each stage's first conv, before BN and ReLU (as in airbench): a
quarter of the normalisation work, and nearly the same function. Logits are scaled by 1/8 (Page's
``Mul(0.125)``), which keeps early training stable at a high learning rate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from visrep.errors import UserError
from visrep.models.base import FeatureClassifier, _stage_layer_paths, check_classifier_sizes
from visrep.models.registry import register_model

LOGIT_SCALE = 0.125
MIN_IMAGE_SIZE = 8  # three 2x max-pools must leave at least 1 px


def conv_bn_relu(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """3x3 conv (→ 2x max-pool) → BN → ReLU: (N, c_in, H, W) → (N, c_out, H/2 if pool else H, ...)."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(f(x)) with two 3x3 conv-BN-ReLU layers of the same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(channels, channels), conv_bn_relu(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register_model("resnet9")
class ResNet9(FeatureClassifier):
    """ResNet-9 with ``widths`` (stem, stage1, stage2, stage3); Page's network is (64, 128, 256, 512)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        check_classifier_sizes(num_classes, in_channels, image_size)
        if len(widths) != 4 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise UserError(f"resnet9 widths must be 4 integers >= 1 (stem, stage1, stage2, stage3); got {widths!r}")
        if image_size < MIN_IMAGE_SIZE:
            raise UserError(f"resnet9 needs images of at least {MIN_IMAGE_SIZE} px (got {image_size})")
        stem, w1, w2, w3 = widths
        self.stem = conv_bn_relu(in_channels, stem)
        self.stages = nn.Sequential(OrderedDict([
            ("stage1", nn.Sequential(conv_bn_relu(stem, w1, pool=True), Residual(w1))),
            ("stage2", conv_bn_relu(w1, w2, pool=True)),
            ("stage3", nn.Sequential(conv_bn_relu(w2, w3, pool=True), Residual(w3))),
        ]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = LOGIT_SCALE
        self._set_feature_layers({"stem": "stem", **_stage_layer_paths(self.stages), "penultimate": "flatten"})

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) → logits (N, num_classes)."""
        return self.head(self.flatten(self.pool(self.stages(self.stem(x))))) * self.logit_scale
