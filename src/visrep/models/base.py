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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visrep.errors import UserError


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

    def own_layout(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """A state dict in this model's key layout (families that also read another layout override it)."""
        return dict(state_dict)

    @property
    def embedding_dim(self) -> int:
        """Width D of the "penultimate" feature (N, D) that ``head`` maps to logits."""
        return self.head.in_features

    def forward_intermediates(self, x: Tensor, layers: Sequence[str] | str | None = None,
                              reduce: Callable[[str, Tensor], Tensor] | None = None
                              ) -> tuple[Tensor, dict[str, Tensor]]:
        """One forward of ``x`` (N, C, H, W) → (logits (N, K), ``{name: output}`` for ``layers``; default all).

        The only way intermediate layers are read in this project (embeddings, the evaluator, the frozen
        encoder of :mod:`visrep.inference.encoder`). The tensors are exactly what flows through the
        model in this call (same dtype and memory format, still attached to the autograd graph unless
        the caller disabled it), so gradients reach the input through them. ``reduce(name, output)``,
        when given, is applied as each layer's output appears (the embedding stage pools there), so
        that the full maps of every layer are never held at once.
        """
        names = self._check_layer_names(layers)
        captured: dict[str, Tensor] = {}
        handles = [self._capture_output(name, captured, reduce) for name in dict.fromkeys(names)]
        try:
            logits = self(x)  # the whole forward, head included: simpler than stopping early, and the head is cheap
        finally:
            for handle in handles:
                handle.remove()
        return logits, {name: captured[name] for name in names}

    def forward_features(self, x: Tensor, layers: Sequence[str] | str | None = None) -> dict[str, Tensor]:
        """``{name: output}`` of :meth:`forward_intermediates` (the logits dropped)."""
        return self.forward_intermediates(x, layers)[1]

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

    def _capture_output(self, name: str, captured: dict[str, Tensor],
                        reduce: Callable[[str, Tensor], Tensor] | None = None) -> torch.utils.hooks.RemovableHandle:
        def store(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            output = output[0] if isinstance(output, (tuple, list)) else output
            captured[name] = reduce(name, output) if reduce is not None else output

        return self.get_submodule(self.feature_layers[name]).register_forward_hook(store)


def _stage_layer_paths(stages: nn.Sequential) -> dict[str, str]:
    """{"stage1": "stages.stage1", ...} for models that keep their stages in a ``stages`` Sequential."""
    return {name: f"stages.{name}" for name, _ in stages.named_children()}



def check_positive_int(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{label} must be a positive integer (got {value!r})")



def check_classifier_sizes(num_classes: int, in_channels: int, image_size: int) -> None:
    """Every classifier builder's first check: the three sizes are positive integers."""
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        check_positive_int(label, value)
