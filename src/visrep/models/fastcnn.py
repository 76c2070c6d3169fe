"""``fastcnn``: a small, fast CNN for 8-64 px images (airbench94's block layout with a plain trained stem)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

from torch import Tensor, nn

from visrep.errors import UserError
from visrep.models.base import FeatureClassifier, _stage_layer_paths, check_classifier_sizes
from visrep.models.base import check_positive_int as _check_positive_int
from visrep.models.registry import register_model


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
        check_classifier_sizes(num_classes, in_channels, image_size)
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

