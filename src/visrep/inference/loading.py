"""A trained classifier rebuilt from its run directory, for inference (evaluation, embeddings, scoring).

Which checkpoint: ``best`` (best val epoch) or ``last``; a run trained without a validation split
has only ``last``, and asking it for ``best`` says so in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from visrep.config import ClassifierConfig
from visrep.errors import UserError
from visrep.models import create_model
from visrep.runs import load_run_config
from visrep.storage import load_weights


def load_classifier(run_path: Path, weights: str | None = None) -> tuple[torch.nn.Module, object]:
    """Rebuild a trained classifier from its run directory: (model in eval mode, run config).

    ``weights`` is best or last; None takes the run's ``eval.weights``."""
    cfg = load_run_config(run_path, ClassifierConfig)
    weights = resolve_weights(cfg, weights)
    weights_file = Path(run_path) / f"{weights}.safetensors"
    if not weights_file.is_file():
        if weights == "best" and trained_without_val(Path(run_path)):
            raise UserError(f"{run_path} was trained without a validation split, so it has no best weights, "
                            f"only its last: ask for weights last (--weights last, embed.weights=last, "
                            f"generative.weights=last)")
        raise UserError(f"{run_path} is not a trained classifier run (no {weights}.safetensors)")
    tensors, model_config = load_weights(weights_file)
    model = create_model(**model_config)
    model.load_state_dict(tensors)
    return model.eval(), cfg


def trained_without_val(run_path: Path) -> bool:
    """True for a finished run whose metrics.json has no best epoch (data.val_fraction=0)."""
    try:
        return json.loads((run_path / "metrics.json").read_text()).get("best_epoch", 0) is None
    except (OSError, ValueError):
        return False


def saved_weights(run_path: Path) -> str:
    """The checkpoint to use when the caller has no preference: best, unless the run trained without a
    validation split and saved its last weights only."""
    return "last" if trained_without_val(Path(run_path)) else "best"


def resolve_weights(cfg, weights: str | None) -> str:
    weights = cfg.eval.weights if weights is None else weights
    if weights not in ("best", "last"):
        raise UserError(f"weights must be best or last (got '{weights}')")
    return weights


def check_finished(run_path: Path, allow_partial: bool = False) -> None:
    """Refuse a run that is still training or was interrupted (no metrics.json, which is written last):
    its best/last weights are from the middle of training, and outputs made from them would sit in
    the run beside the final ones. ``allow_partial`` (``--allow-partial``) uses them anyway."""
    if allow_partial or (Path(run_path) / "metrics.json").is_file():
        return
    raise UserError(f"{run_path} has not finished training (no metrics.json): it is still running or was "
                    f"interrupted; resume it with --resume, or add --allow-partial to use its mid-training weights")
