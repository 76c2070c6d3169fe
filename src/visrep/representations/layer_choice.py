"""Which classifier layer a generator's embedding conditions come from, by a stated rule.

* ``penultimate`` (the default): the vector the classifier's own head reads. It is class-separable by
  construction (the head is linear on it), one vector per image whatever the architecture, and the
  classifier's training made it so; the embeddings stage's analysis usually ranks it at or near the
  top for the linear probe, and it needs no analysis to exist.
* ``best``: the layer with the highest linear-probe accuracy on the validation split in the embeddings
  stage's analysis (``<classifier run>/embeddings/analysis.json``) of the same weights.
* any other name: that layer, as the config says.

The choice, its rule and the analysis's best layer (when there is an analysis) go into generator.json,
and the report shows them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from visrep.errors import UserError
from visrep.inference.independence import file_sha256

BEST = "best"
DEFAULT_LAYER = "penultimate"


@dataclass(frozen=True)
class LayerChoice:
    layer: str
    rule: str  # why this layer, in words
    analysis_best: str | None = None  # the analysis's best val-probe layer for these weights (None: no analysis)
    analysis_best_val_probe: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def choose_layer(requested: str, classifier_run: str | Path, weights: str, key: str,
                 embeddings: Path | None = None, maps_only: bool = False) -> LayerChoice:
    """The layer for ``requested`` (a name or "best") of ``classifier_run``'s ``weights``, the analysis read from
    ``embeddings`` (default ``<classifier run>/embeddings``); ``key`` names the setting. ``maps_only``: only
    feature maps qualify (REPA aligns the U-Net's map with one)."""
    best = best_probe_layer(Path(classifier_run), weights, embeddings, maps_only)
    kind = "feature map" if maps_only else "layer"
    if requested == BEST:
        if best is None:
            raise UserError(f"{key}=best takes the {kind} with the best val linear probe from the embeddings analysis, "
                            f"and {classifier_run} has none for its {weights} weights: run `visrep embed "
                            f"{classifier_run} --layers all` first, or name a layer")
        return LayerChoice(best[0], f"{key}=best: the embeddings analysis's best val linear probe among its "
                                    f"{kind}s ({best[1]:.3f})", *best)
    rule = (f"{key}={requested}, the default: the vector the classifier's own head reads"
            if requested == DEFAULT_LAYER and not maps_only else f"{key}={requested}, set in the config")
    return LayerChoice(requested, rule, *(best or (None, None)))


def best_probe_layer(classifier_run: Path, weights: str, embeddings: Path | None = None,
                     maps_only: bool = False) -> tuple[str, float] | None:
    """(layer, val probe accuracy) of the analysis row with the highest val probe, among rows computed from
    these weights (sha256) in the form a generator conditions on (average-pooled, or a vector layer; with
    ``maps_only`` average-pooled feature maps alone); None when there is no such analysis."""
    path = (embeddings or classifier_run / "embeddings") / "analysis.json"
    weights_file = classifier_run / f"{weights}.safetensors"
    if not path.is_file() or not weights_file.is_file():
        return None
    sha = file_sha256(weights_file)
    rows = [row for row in json.loads(path.read_text()).get("layers", [])
            if row.get("weights_sha256") == sha and isinstance(row.get("probe"), dict) and "val" in row["probe"]
            and (row.get("pooling") == "avg" or len(row.get("layer_output_shape", [])) == 1)
            and (not maps_only or len(row.get("layer_output_shape", [])) == 3)]
    if not rows:
        return None
    top = max(rows, key=lambda row: row["probe"]["val"])
    return top["layer"], float(top["probe"]["val"])
