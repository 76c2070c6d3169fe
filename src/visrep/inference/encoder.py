"""The frozen, differentiable encoder: a trained classifier as images → (logits, {layer: features}).

Everything that reads a classifier's representations goes through it: embeddings of new images
(:mod:`visrep.representations.embed`), the independent evaluator's feature space, and the generators' guidance (a GAN's guidance loss and
projected discriminator head, diffusion's classifier guidance and REPA), which need gradients
with respect to the *images*. So the encoder is frozen (parameters never require grad, BatchNorm
statistics never move: it stays in eval mode whoever calls ``.train()``) but not wrapped in
``no_grad``: call sites that want no graph say ``torch.no_grad()`` themselves.

Inputs: raw images, uint8 0..255 or float in [0, 1], (N, C, S, S) at the run's image shape,
normalised inside with the run's training statistics; or, with ``normalized=True``, tensors already
normalised as in training (what the data loaders yield).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.data.transforms import Normalization
from visrep.errors import UserError
from visrep.hardware.distributed import resolve_device
from visrep.hardware.precision import check_precision
from visrep.inference.autocast import autocast_context


class FrozenEncoder(nn.Module):
    role = "encoder"  # named in messages: subclasses say what they are used as

    def __init__(self, classifier: nn.Module, normalization: Normalization, precision: str = "auto",
                 channels_last: bool = False):
        super().__init__()
        check_precision(precision, f"{self.role} precision")  # auto is resolved per call, for the input's device
        self.classifier = classifier.eval().requires_grad_(False)
        if channels_last:  # weights and inputs in the layout it trained in: its fast path, and the embeddings
            self.classifier = self.classifier.to(memory_format=torch.channels_last)  # stage's exact numbers
        self.precision, self.channels_last, self.normalization = precision, channels_last, normalization
        self.feature_layers = dict(classifier.feature_layers)
        self.num_classes = int(classifier.num_classes)
        self.embedding_dim = int(classifier.embedding_dim)
        self.image_shape = (classifier.config["in_channels"], classifier.config["image_size"],
                            classifier.config["image_size"])
        std = torch.tensor(normalization.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(normalization.mean, dtype=torch.float32).view(1, -1, 1, 1)
        # (x/255 − mean)/std as one multiply-add on the 0..255 values
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    @classmethod
    def from_run(cls, run_path: str | Path, weights: str | None = None, precision: str = "auto",
                 device: torch.device | str | None = None) -> "FrozenEncoder":
        """The classifier of a run directory (``weights`` best | last; None: the run's eval.weights)."""
        import json

        from visrep.inference.loading import load_classifier

        run_path = Path(run_path)
        classifier, cfg = load_classifier(run_path, weights)
        normalization = Normalization.from_dict(json.loads((run_path / "normalization.json").read_text()))
        encoder = cls(classifier, normalization, precision, bool(cfg.train.channels_last))
        return encoder.to(device or resolve_device("auto", key="device"))

    def train(self, mode: bool = True) -> "FrozenEncoder":
        return super().train(False)

    def forward(self, images: Tensor, normalized: bool = False) -> Tensor:
        """Logits (N, K) float32."""
        return self.forward_intermediates(images, [], normalized)[0]

    def forward_intermediates(self, images: Tensor, layers: Sequence[str] | str = ("penultimate",),
                              normalized: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """(logits (N, K) float32, {layer: output as computed, e.g. (N, C, H, W) or (N, D)}), one forward.

        Layer outputs keep the dtype they were computed in (bf16 under autocast): callers pool or
        cast them, so that stored embeddings and new ones are computed alike."""
        x = images if normalized else self.normalise(images)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(x.device, self.precision):
            logits, features = self.classifier.forward_intermediates(x, layers)
        return logits.float(), features

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 0..255 or float 0..1 images (N, C, S, S) → float32 normalised as in training."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise UserError(f"the {self.role} takes images of shape {self.image_shape} (C, H, W), "
                            f"got {tuple(images.shape[1:])}")
        pixels = images.float() if images.dtype == torch.uint8 else images.float() * 255.0
        return torch.addcmul(self.shift, pixels, self.scale)
