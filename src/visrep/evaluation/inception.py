"""Inception-v3 FID/KID, only from a local weights file (never downloaded).

Comparable with published numbers only at their resolution and N; on 28–32 px images upsampled
to 299 px they mostly show how ImageNet features see small images. The evaluator's numbers are
the primary ones; these are an extra column when ``generative.inception_weights`` is set.
Needs ``torch-fidelity`` (the feature extractor torchmetrics wraps) and its FID weights file
(``pt_inception-2015-12-05-6726825d.pth``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visrep.errors import UserError
from visrep.evaluation.distribution_metrics import fid, kid


def inception_network(weights_path: str | Path) -> torch.nn.Module:
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise UserError(f"Inception weights not found: {path} (they are never downloaded)")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                     feature_extractor_weights_path=str(path))
    except ModuleNotFoundError:
        raise UserError("Inception FID/KID need the torch-fidelity package (pip install torch-fidelity) "
                        "besides the local weights file") from None
    except (RuntimeError, OSError) as err:
        raise UserError(f"cannot load Inception weights {path}: {str(err).splitlines()[0]}") from None
    return network.eval()


@torch.inference_mode()
def inception_features(network: torch.nn.Module, images_uint8: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """uint8 (N, C, H, W) → (N, 2048); grayscale is repeated to RGB, resizing to 299 px happens inside."""
    chunks = []
    for start in range(0, len(images_uint8), batch_size):
        batch = images_uint8[start:start + batch_size]
        batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
        chunks.append(network(batch.contiguous()).reshape(len(batch), -1).double())
    return torch.cat(chunks).numpy()


def inception_scores(network: torch.nn.Module, real_uint8: torch.Tensor, fake_uint8: torch.Tensor, opts) -> dict:
    """Inception FID and KID of two uint8 image sets (KID settings and seed from ``opts``)."""
    real, fake = inception_features(network, real_uint8), inception_features(network, fake_uint8)
    return {"fid": fid(real, fake), "kid": kid(real, fake, opts.kid_subsets, opts.kid_subset_size, opts.seed),
            "weights": str(opts.inception_weights)}
