"""``resnet18_cifar``: ResNet-18 with a CIFAR stem, for 16-64 px images."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import UserError
from visrep.models.base import FeatureClassifier, _stage_layer_paths, check_classifier_sizes
from visrep.models.registry import register_model


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
    """CIFAR-style ResNet-18: 3x3 stride-1 stem without max-pool, stages of 2 BasicBlocks (``widths``, default
    64-128-256-512; the stem has widths[0] channels).

    Keeping full resolution in the stem suits 32 px inputs, where the ImageNet stem (7x7 stride 2 +
    max-pool) would throw away 15/16 of the pixels. Any ``image_size`` ≥ 1 works (it only enters
    ``config``). Input (N, C, S, S) → logits (N, num_classes); ``logit_scale`` is 1.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        check_classifier_sizes(num_classes, in_channels, image_size)
        if len(widths) == 0 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise UserError(f"widths must be a non-empty list of integers >= 1 (got {widths!r})")
        self.stage_widths = tuple(widths)  # one stage of 2 BasicBlocks per width; the stem has widths[0] channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(OrderedDict(_resnet_stages(widths[0], self.stage_widths)))
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

