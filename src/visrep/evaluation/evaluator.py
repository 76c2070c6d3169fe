"""The independent evaluator: a classifier trained on real data only, used as a feature space for scoring.

``visrep train evaluator`` reuses the classifier training loop with its own config (another
architecture and seed than the conditioning CNN), then records the stage as "evaluator", the
weights' hashes (see :mod:`visrep.evaluation.independence`) and the test accuracy in
``evaluator.json``.

:class:`EvaluatorNetwork` is what torchmetrics calls a custom feature extractor: it has
``num_features``, stays in eval mode, and normalises inside, so it takes raw images::

    FrechetInceptionDistance(feature=load_evaluator(run).network)   # uint8 (N, C, S, S) updates
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from visrep.config import ClassifierConfig
from visrep.data.transforms import Normalization
from visrep.errors import UserError
from visrep.evaluation.independence import check_architecture_differs, weights_hashes
from visrep.evaluation.predict import autocast_context
from visrep.hardware.precision import check_precision
from visrep.runs import load_run_config

EVALUATOR_RECORD = "evaluator.json"


class EvaluatorNetwork(nn.Module):
    """Raw images → the classifier's "penultimate" features (and logits), normalisation included.

    Input: uint8 (N, C, S, S) in 0..255, or float in [0, 1] (torchmetrics' ``normalize=True``).
    Output of ``forward``: float32 (N, num_features). The module never switches to train mode, so
    BatchNorm statistics stay fixed whoever calls ``.train()``.
    """

    def __init__(self, classifier: nn.Module, normalization: Normalization, precision: str = "auto"):
        super().__init__()
        check_precision(precision, "evaluator precision")  # auto is resolved per call, for the input's device
        self.classifier = classifier.eval()
        self.precision = precision
        self.num_features = int(classifier.embedding_dim)
        self.num_classes = int(classifier.num_classes)
        self.image_shape = (classifier.config["in_channels"], classifier.config["image_size"],
                            classifier.config["image_size"])
        std = torch.tensor(normalization.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(normalization.mean, dtype=torch.float32).view(1, -1, 1, 1)
        # (x/255 − mean)/std as one multiply-add on the 0..255 values
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)
        self._penultimate = classifier.get_submodule(classifier.feature_layers["penultimate"])

    def train(self, mode: bool = True) -> "EvaluatorNetwork":
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """(N, C, S, S) images → (N, num_features) float32."""
        return self.features_and_logits(images)[0]

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, S, S) images → (features (N, D), logits (N, K)), both float32, from one forward pass."""
        x = self._normalise(images)
        captured: list[Tensor] = []
        handle = self._penultimate.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            with autocast_context(x.device, self.precision):
                logits = self.classifier(x)
        finally:
            handle.remove()
        return captured[0].float().flatten(1), logits.float()

    def _normalise(self, images: Tensor) -> Tensor:
        if tuple(images.shape[1:]) != self.image_shape:
            raise UserError(f"the evaluator takes images of shape {self.image_shape} (C, H, W), "
                            f"got {tuple(images.shape[1:])}")
        pixels = images.float() if images.dtype == torch.uint8 else images.float() * 255.0
        return torch.addcmul(self.shift, pixels, self.scale)


@dataclass
class Evaluator:
    network: EvaluatorNetwork
    cfg: object  # the run's ClassifierConfig
    run_path: Path
    hashes: dict  # {"tensors": hex, "file": hex} of the weights actually loaded
    record: dict | None  # evaluator.json, or None for a plain classifier run
    class_names: list[str]

    @property
    def registered(self) -> bool:
        """True when the run was trained as an evaluator (not a conditioning classifier reused as one)."""
        return self.record is not None

    def describe(self) -> dict:
        return {"run": str(self.run_path), "model": self.cfg.model.name, "seed": int(self.cfg.run.seed),
                "num_features": self.network.num_features, "weights_sha256": self.hashes["tensors"],
                "weights_file_sha256": self.hashes["file"], "trained_as_evaluator": self.registered,
                "test_accuracy": (self.record or {}).get("test_accuracy")}


def load_evaluator(run_path: Path, weights: str | None = None, precision: str = "auto") -> Evaluator:
    """Rebuild the evaluator (or any classifier run) as an :class:`EvaluatorNetwork`, hashes checked.

    ``weights`` None takes the checkpoint its evaluator.json records (the one whose hash was recorded),
    or for a plain classifier run best, unless it trained without a val split (then last)."""
    from visrep.evaluation.classifier_eval import load_classifier, saved_weights

    run_path = Path(run_path)
    if not (run_path / "config.yaml").is_file():
        raise UserError(f"evaluator run not found: {run_path} (no config.yaml)")
    record = _read_json(run_path / EVALUATOR_RECORD) if (run_path / EVALUATOR_RECORD).is_file() else None
    if weights is None:
        weights = (record or {}).get("weights") or saved_weights(run_path)
    classifier, cfg = load_classifier(run_path, weights)
    normalization = Normalization.from_dict(_read_json(run_path / "normalization.json"))
    class_names = _read_json(run_path / "manifest.json")["classes"]
    hashes = weights_hashes(run_path / f"{weights}.safetensors")
    if record is not None and weights == record.get("weights") and record.get("weights_sha256") != hashes["tensors"]:
        raise UserError(f"the weights in {run_path} changed since training (hash differs from {EVALUATOR_RECORD})")
    return Evaluator(EvaluatorNetwork(classifier, normalization, precision), cfg, run_path, hashes, record,
                     class_names)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None


@torch.inference_mode()
def extract_features(network: EvaluatorNetwork, images: Tensor, batch_size: int = 500, progress: bool = False,
                     desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, S, S) → (features (N, D) float32, logits (N, K) float32), in batches."""
    device = next(network.parameters()).device
    features, logits = [], []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, disable=not progress or None,
                      mininterval=1.0):
        batch = images[start:start + batch_size].to(device)
        batch_features, batch_logits = network.features_and_logits(batch)
        features.append(batch_features.cpu())
        logits.append(batch_logits.cpu())
    if not features:
        return np.zeros((0, network.num_features), np.float32), np.zeros((0, network.num_classes), np.float32)
    return torch.cat(features).numpy(), torch.cat(logits).numpy()


def train_evaluator(cfg=None, conditioning_run: Path | None = None, progress: bool = True,
                    resume: Path | None = None) -> Path:
    """Train an evaluator per ``cfg`` (a ClassifierConfig) and record it as one; returns the run directory.

    With ``conditioning_run`` (the classifier whose embeddings condition the generators) the
    evaluator must differ from it in architecture and seed, and its hashes are recorded too.
    With ``resume`` (an interrupted evaluator run) training continues from its newest readable
    checkpoint; ``cfg`` may then be None to use the run's own saved config.
    """
    from visrep.evaluation.classifier_eval import evaluate_classifier, resolve_weights
    from visrep.training.classifier import train_classifier

    if resume is not None:
        resume = Path(resume)
        check_resumable(resume)
        cfg = cfg if cfg is not None else load_run_config(resume, ClassifierConfig)
    elif cfg is None:
        raise UserError("train_evaluator needs a config (or resume= an interrupted evaluator run)")
    # checked before training, on a resumed run too: a wrong pairing must not cost a training run
    conditioning = _conditioning_summary(cfg, conditioning_run) if conditioning_run else None
    started = time.perf_counter()
    run_path = train_classifier(cfg, resume=resume, progress=progress, stage="evaluator")
    weights = resolve_weights(cfg, None)  # the checkpoint its eval.weights names (last without a val split)
    hashes = weights_hashes(run_path / f"{weights}.safetensors")
    if conditioning and hashes["tensors"] == conditioning["weights_sha256"]:
        raise UserError("the evaluator's weights are identical to the conditioning CNN's")  # cannot happen by chance
    test_metrics = evaluate_classifier(run_path, "test")
    record = {"stage": "evaluator", "weights": weights, "weights_sha256": hashes["tensors"],
              "weights_file_sha256": hashes["file"], "model": cfg.model.name,
              "model_options": _plain_options(cfg.model.options), "seed": int(cfg.run.seed),
              "test_accuracy": test_metrics["accuracy"], "test_n": test_metrics["n"],
              "seconds": time.perf_counter() - started, "resumed": resume is not None, "conditioning": conditioning}
    _write_record(run_path, record)
    return run_path


def check_resumable(run_path: Path) -> None:
    """Refuse, before any work, a directory that is not an interrupted classifier-loop training run.

    The training loop writes metrics.json only when it ends and evaluator.json is written after
    that, so either file means there is nothing left to resume. An interrupted evaluator cannot be
    told apart from an interrupted conditioning classifier by its files (only an unnamed run's
    folder, ``<stamp>-evaluator``, says which): resuming either records it as an evaluator.
    """
    if not run_path.is_dir():
        raise UserError(f"run directory not found: {run_path}")
    if (run_path / EVALUATOR_RECORD).is_file():
        raise UserError(f"{run_path} is a finished evaluator run ({EVALUATOR_RECORD} exists); nothing to resume")
    if (run_path / "metrics.json").is_file():
        stage = _read_json(run_path / "metrics.json").get("stage", "unknown")
        raise UserError(f"{run_path} has finished (metrics.json of stage '{stage}', no {EVALUATOR_RECORD}); "
                        "nothing to resume as an evaluator")
    if not (run_path / "config.yaml").is_file():
        raise UserError(f"{run_path} is not a visrep run directory (no config.yaml)")
    if not list((run_path / "checkpoints").glob("state-*.pt")):
        raise UserError(f"{run_path} has no training checkpoints (checkpoints/state-*.pt): "
                        "not an interrupted evaluator run")


def _conditioning_summary(cfg, conditioning_run: Path) -> dict:
    from visrep.evaluation.classifier_eval import saved_weights

    run_path = Path(conditioning_run)
    conditioning_cfg = load_run_config(run_path, ClassifierConfig)
    check_architecture_differs(cfg, conditioning_cfg)
    hashes = weights_hashes(run_path / f"{saved_weights(run_path)}.safetensors")
    return {"run": str(conditioning_run), "model": conditioning_cfg.model.name, "seed": int(conditioning_cfg.run.seed),
            "weights_sha256": hashes["tensors"], "weights_file_sha256": hashes["file"]}


def _plain_options(options) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(options, resolve=True) if OmegaConf.is_config(options) else dict(options)


def _write_record(run_path: Path, record: dict) -> None:
    """evaluator.json, and the evaluator's hashes and test accuracy added to metrics.json."""
    from visrep.runs import atomic_write_text

    atomic_write_text(run_path / EVALUATOR_RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    metrics_path = run_path / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics.update({"stage": "evaluator", "weights_sha256": record["weights_sha256"],
                    "test_accuracy": record["test_accuracy"]})
    atomic_write_text(metrics_path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")
