"""The independent evaluator: a classifier trained on real data only, used as a feature space for scoring.

The evaluator stage (:mod:`visrep.training.evaluator`, ``visrep train evaluator``) trains it and
records its weights' hashes and test accuracy in ``evaluator.json``; this module loads it for scoring.

Features: the classifier's "penultimate" layer (its global pool, before the linear head: 256-d for
the CIFAR-10 ResNet-9, 128-d for the MNIST ResNet), float32, not normalised here. The scoring
(:mod:`visrep.evaluation.generative`) multiplies every set by one constant, 1 / RMS of the real
reference's features, before FID and KID; the memorisation and consistency checks use them
L2-normalised (cosine geometry).

:class:`EvaluatorNetwork` is what torchmetrics calls a custom feature extractor: it has
``num_features``, stays in eval mode, and normalises inside, so it takes raw images::

    FrechetInceptionDistance(feature=load_evaluator(run).network)   # uint8 (N, C, S, S) updates
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from visrep.data.transforms import Normalization
from visrep.errors import UserError
from visrep.hardware.distributed import current_info, sharded_results
from visrep.inference.encoder import FrozenEncoder
from visrep.inference.independence import EVALUATOR_RECORD, weights_hashes
from visrep.storage import read_json



class EvaluatorNetwork(FrozenEncoder):
    """Raw images → the classifier's "penultimate" features (and logits), normalisation included.

    Input: uint8 (N, C, S, S) in 0..255, or float in [0, 1] (torchmetrics' ``normalize=True``).
    Output of ``forward``: float32 (N, num_features). A :class:`FrozenEncoder`: it never switches to
    train mode, so BatchNorm statistics stay fixed whoever calls ``.train()``.
    """

    role = "evaluator"

    def __init__(self, classifier: nn.Module, normalization: Normalization, precision: str = "auto",
                 flip_views: bool = False):
        super().__init__(classifier, normalization, precision)
        self.num_features = self.embedding_dim
        self.flip_views = bool(flip_views)  # the run's eval.tta_flip: part of the function, as in its test accuracy

    def forward(self, images: Tensor) -> Tensor:
        """(N, C, S, S) images → (N, num_features) float32."""
        return self.features_and_logits(images)[0]

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, S, S) images → (features (N, D), logits (N, K)), both float32.

        With ``flip_views`` both are the mean over the image and its mirror: the same prediction that
        the evaluator's recorded test accuracy measured (eval.tta_flip), so GAN-test is judged by it.
        """
        features, logits = self._one_view(images)
        if self.flip_views:
            flipped_features, flipped_logits = self._one_view(images.flip(3))
            features, logits = 0.5 * (features + flipped_features), 0.5 * (logits + flipped_logits)
        return features, logits

    def _one_view(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, features = self.forward_intermediates(images, ["penultimate"])
        return features["penultimate"].float().flatten(1), logits.float()


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
                "num_features": self.network.num_features, "flip_views": self.network.flip_views, "weights_sha256": self.hashes["tensors"],
                "weights_file_sha256": self.hashes["file"], "trained_as_evaluator": self.registered,
                "test_accuracy": (self.record or {}).get("test_accuracy")}


def load_evaluator(run_path: Path, weights: str | None = None, precision: str = "auto",
                   device: torch.device | str = "cpu") -> Evaluator:
    """Rebuild the evaluator (or any classifier run) as an :class:`EvaluatorNetwork` on ``device``, hashes checked.

    ``weights`` None takes the checkpoint its evaluator.json records (the one whose hash was recorded),
    or for a plain classifier run best, unless it trained without a val split (then last)."""
    from visrep.inference.loading import load_classifier, saved_weights

    run_path = Path(run_path)
    if not (run_path / "config.yaml").is_file():
        raise UserError(f"evaluator run not found: {run_path} (no config.yaml)")
    record = read_json(run_path / EVALUATOR_RECORD) if (run_path / EVALUATOR_RECORD).is_file() else None
    if weights is None:
        weights = (record or {}).get("weights") or saved_weights(run_path)
    classifier, cfg = load_classifier(run_path, weights)
    normalization = Normalization.from_dict(read_json(run_path / "normalization.json"))
    class_names = read_json(run_path / "manifest.json")["classes"]
    hashes = weights_hashes(run_path / f"{weights}.safetensors")
    if record is not None and weights == record.get("weights") and record.get("weights_sha256") != hashes["tensors"]:
        raise UserError(f"the weights in {run_path} changed since training (hash differs from {EVALUATOR_RECORD})")
    network = EvaluatorNetwork(classifier, normalization, precision, flip_views=bool(cfg.eval.tta_flip)).to(device)
    return Evaluator(network, cfg, run_path, hashes, record, class_names)




@torch.inference_mode()
def extract_features(network: EvaluatorNetwork, images: Tensor, batch_size: int = 500, progress: bool = False,
                     desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, S, S) → (features (N, D) float32, logits (N, K) float32), in batches.

    Under torchrun the batches are shared out over the ranks (round-robin) and every rank gets all
    the features back, batch for batch the numbers one process computes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 (got {batch_size})")
    device = next(network.parameters()).device
    info = current_info()
    count = -(-len(images) // batch_size)
    bar = tqdm(total=len(range(info.rank, count, info.world_size)), desc=desc, leave=False, mininterval=1.0,
               disable=not (progress and info.is_main) or None)

    def one_batch(index: int) -> tuple[Tensor, Tensor]:
        batch = images[index * batch_size:(index + 1) * batch_size].to(device)
        batch_features, batch_logits = network.features_and_logits(batch)
        bar.update()
        return batch_features.cpu(), batch_logits.cpu()

    with bar:
        results = sharded_results(count, one_batch, info)
    features, logits = [part[0] for part in results], [part[1] for part in results]
    if not features:
        return np.zeros((0, network.num_features), np.float32), np.zeros((0, network.num_classes), np.float32)
    return torch.cat(features).numpy(), torch.cat(logits).numpy()
