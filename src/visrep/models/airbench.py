"""``airbench``: Keller Jordan's airbench94 CIFAR-10 network (2024), with its data-derived whitening stem.

Differences from ``fastcnn`` (which borrows only airbench's block layout), all from airbench94:

* the stem is an *unpadded* k x k conv (k = 2) whose 2·C·k² filters are the eigenvectors of the
  training images' k x k patch covariance, scaled to unit variance, and their negations; they are
  set once from data by :meth:`AirbenchNet.init_from_data` and never trained (``whiten_eps``, default
  5e-4, is added to each eigenvalue first: directions of variance λ come out with λ/(λ + eps)), and
  computed in float32 under autocast (``float32_stem``, default true; see :class:`FullPrecisionConv2d`); its
  bias is trained for the first ``whiten_bias_epochs`` epochs only (the trainer calls
  :meth:`AirbenchNet.start_epoch`);
* BatchNorm keeps its scale at 1 (only the shift is learned), eps 1e-12 and a fast running-stat
  momentum (airbench's 0.6 of the old value kept, i.e. PyTorch momentum 0.4);
* every 3x3 conv starts as an identity on its first ``in_channels`` filters (``dirac_``), so the
  untrained network passes its input through.

Layer names for inputs (N, C, S, S); the stem output is S' = S − k + 1 (31 for 32 px)::

    stem         "stem"              (N, 2·C·k², S', S')   whitening conv + GELU
    stage{i}     "stages.stage{i}"   (N, w_i, S_i, S_i)     S_i = S_(i-1) // 2 while S_(i-1) >= 2
    penultimate  "flatten"           (N, w_3)               global max-pool, flattened
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.errors import UserError
from visrep.models.base import FeatureClassifier, _stage_layer_paths, check_classifier_sizes
from visrep.models.fastcnn import FastConvBlock, pooling_plan
from visrep.models.registry import register_model

NULL_DIRECTION_RATIO = 1e-9  # eigenvalue / largest below which a patch direction counts as unspanned
WHITENING_EPS = 5e-4  # added to the patch-covariance eigenvalues before scaling (as airbench)
WHITENING_IMAGES = 5000  # training images whose patches estimate the covariance


class ShiftOnlyBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (not trained): only the shift is learned, as in airbench."""

    def __init__(self, channels: int, keep: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=1.0 - keep)  # PyTorch's momentum weighs the *new* value
        self.weight.requires_grad_(False)


class AirbenchBlock(FastConvBlock):
    """conv3x3 → maxpool2 → BN → GELU → conv3x3 → BN → GELU with shift-only BN and identity-initialised convs."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool, bn_keep: float) -> None:
        super().__init__(in_channels, out_channels, pool)
        self.norm1 = ShiftOnlyBatchNorm(out_channels, bn_keep)
        self.norm2 = ShiftOnlyBatchNorm(out_channels, bn_keep)
        for conv in (self.conv1, self.conv2):
            _identity_init(conv.weight)


@register_model("airbench")
class AirbenchNet(FeatureClassifier):
    """airbench94's network: frozen patch-whitening stem, three conv blocks (64, 256, 256), max-pool, linear.

    Input (N, C, S, S) normalised images → logits (N, num_classes) = head(penultimate) · ``logit_scale``.
    Call :meth:`init_from_data` with ``init_images`` training images before training (the trainer does).
    """

    init_images = WHITENING_IMAGES  # how many training images init_from_data wants

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 widths: Sequence[int] = (64, 256, 256), whiten_kernel: int = 2, bn_keep: float = 0.6,
                 logit_scale: float = 1 / 9, whiten_bias_epochs: int | None = 3,
                 whiten_eps: float = WHITENING_EPS, float32_stem: bool = True) -> None:
        super().__init__()
        check_classifier_sizes(num_classes, in_channels, image_size)
        _check_options(widths, whiten_kernel, image_size, bn_keep)
        if isinstance(whiten_eps, bool) or not isinstance(whiten_eps, (int, float)) or not whiten_eps > 0:
            raise UserError(f"whiten_eps must be a number > 0 (got {whiten_eps!r})")
        self.whiten_eps = float(whiten_eps)  # damps the stem's gain on low-variance patch directions
        if whiten_bias_epochs is not None and (isinstance(whiten_bias_epochs, bool) or
                                               not isinstance(whiten_bias_epochs, int) or whiten_bias_epochs < 0):
            raise UserError(f"whiten_bias_epochs must be an integer ≥ 0 or null (got {whiten_bias_epochs!r})")
        self.whiten_bias_epochs = whiten_bias_epochs  # None: trained throughout
        if not isinstance(float32_stem, bool):
            raise UserError(f"float32_stem must be true or false (got {float32_stem!r})")
        stem_width = 2 * in_channels * whiten_kernel ** 2
        stem_conv = FullPrecisionConv2d if float32_stem else nn.Conv2d  # False: autocast's dtype, as before
        self.stem = nn.Sequential(OrderedDict(
            whiten=stem_conv(in_channels, stem_width, whiten_kernel, padding=0, bias=True), act=nn.GELU()))
        self.stem.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.stem.whiten.bias)
        plan = pooling_plan(image_size - whiten_kernel + 1, len(widths))
        in_widths = (stem_width, *widths[:-1])
        self.stages = nn.Sequential(OrderedDict(
            (f"stage{i}", AirbenchBlock(c_in, c_out, pool, bn_keep))
            for i, (c_in, c_out, pool) in enumerate(zip(in_widths, widths, plan), start=1)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = float(logit_scale)
        self._set_feature_layers({"stem": "stem", **_stage_layer_paths(self.stages), "penultimate": "flatten"})

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) → logits (N, num_classes)."""
        return self.head(self.flatten(self.pool(self.stages(self.stem(x))))) * self.logit_scale

    def start_epoch(self, epoch: int) -> None:
        """Freeze the stem's bias from epoch ``whiten_bias_epochs`` (0-based) on: airbench trains it early only."""
        if self.whiten_bias_epochs is not None:
            self.stem.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the stem to whiten k x k patches of ``images`` (N, C, S, S), normalised as in training."""
        weight = self.stem.whiten.weight
        filters = whitening_filters(images[:self.init_images].float(), weight.shape[-1], self.whiten_eps)
        weight.copy_(torch.cat([filters, -filters]).to(weight.dtype))


class FullPrecisionConv2d(nn.Conv2d):
    """A conv computed in its weights' dtype (float32) even under autocast; its output in autocast's dtype.

    The whitening stem scales the faintest patch directions up to unit variance (×40 on JPEG CIFAR-10,
    eigenvalues ≈ 1e-4 plus eps 5e-4). bf16 keeps 8 significant bits (airbench's fp16 keeps 11), so
    rounding its inputs and filters puts noise of 10–13 % of the signal on those channels; in float32
    the stem is exact. Cost on a 2-core CPU: a few % of a step while the stem's bias trains (its float32
    backward), nothing once it is frozen; 0.8 % of the CIFAR recipe's training (benchmarks/RESULTS.md).
    """

    def forward(self, x: Tensor) -> Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(x)
        with torch.autocast(device, enabled=False):
            out = super().forward(x.to(self.weight.dtype))  # float32 unless the weights themselves are lower
        return out.to(torch.get_autocast_dtype(device))  # the rest of the network runs in autocast's dtype


def patch_covariance(images: Tensor, kernel: int) -> Tensor:
    """(C·k², C·k²) float64 covariance of the raw (uncentred) k x k patches of ``images`` (N, C, S, S)."""
    patches = F.unfold(images, kernel)  # (N, C·k², L) with L patch positions per image
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
    return patches.T @ patches / len(patches)


def whitening_filters(images: Tensor, kernel: int, eps: float = WHITENING_EPS) -> Tensor:
    """(C·k², C, k, k) filters projecting k x k patches onto their covariance eigenvectors, unit variance each.

    The covariance is of the raw (uncentred) patches, largest eigenvalue first, computed in float64
    so that the small eigenvalues of natural-image patches keep their precision.
    """
    channels = images.shape[1]
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images, kernel))  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    # Directions the data does not span (grey images made RGB: 8 of 12 at k = 2) hold only rounding
    # noise (eigenvalue ~1e-16 of the largest; natural RGB patches' smallest is ~1e-5). Whitened, that
    # noise reaches BatchNorm (eps 1e-12) as a channel of ~1e-6 std whose gradients reach 1e14 and
    # more, and a zero filter (a constant channel) is no better; repeating the spanned filters in
    # those slots keeps every channel a real signal. Full-rank data is untouched.
    spanned = int((eigenvalues > NULL_DIRECTION_RATIO * eigenvalues[0]).sum())
    if 0 < spanned < len(filters):
        filters[spanned:] = filters[torch.arange(len(filters) - spanned) % spanned]
    return filters.reshape(-1, channels, kernel, kernel).float()


def _identity_init(weight: Tensor) -> None:
    """Filter j of the first min(out, in) filters copies input channel j (centre tap 1, rest 0)."""
    with torch.no_grad():
        count = min(weight.shape[0], weight.shape[1])
        nn.init.dirac_(weight[:count])


def _check_options(widths, whiten_kernel, image_size, bn_keep) -> None:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths or \
            any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise UserError(f"widths must be a non-empty list of positive integers (got {widths!r})")
    if isinstance(whiten_kernel, bool) or not isinstance(whiten_kernel, int) or not 1 <= whiten_kernel < image_size:
        raise UserError(f"whiten_kernel must be an integer in [1, image_size) (got {whiten_kernel!r})")
    if not 0 <= bn_keep < 1:
        raise UserError(f"bn_keep (fraction of the old BatchNorm statistics kept) must be in [0, 1) (got {bn_keep})")
