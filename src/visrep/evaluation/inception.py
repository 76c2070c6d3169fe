"""Inception-v3 FID/KID, only from a local weights file (never downloaded).

The network is torch-fidelity's port of the TensorFlow FID Inception (through torchmetrics'
``NoTrainInceptionV3``), with the weights file torch-fidelity and clean-fid use,
``pt_inception-2015-12-05-6726825d.pth``: 2048-d pool features, images resized to 299 px inside
with TensorFlow-1-compatible bilinear interpolation, as the published FID code does. Its features
are not rescaled (unlike the evaluator's), so the numbers are on the published scale.

Comparable with published numbers only with their reference set and N (CIFAR-10 papers mostly use
50k samples against the 50k training images; here the reference is the scoring's real split and N);
on 28–32 px images upsampled to 299 px they mostly show how ImageNet features see small images.
The evaluator's numbers are the primary ones; these are an extra column when
``generative.inception_weights`` is set.
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
    _check_plain_state_dict(path)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                     feature_extractor_weights_path=str(path))
    except ModuleNotFoundError:
        raise UserError("Inception FID/KID need the torch-fidelity package (pip install torch-fidelity) "
                        "besides the local weights file") from None
    except (RuntimeError, OSError) as err:
        raise UserError(f"cannot load Inception weights {path}: {_first_line(err)}") from None
    return network.eval()


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _check_plain_state_dict(path: Path) -> None:
    """Refuse a file that is not a plain dict of tensors before torch-fidelity unpickles it in full.

    torch-fidelity loads with ``weights_only=False`` (any pickle, code included); the real weights
    file is a plain state dict, which the safe loader reads.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and unpickler errors alike)
        raise UserError(f"cannot read Inception weights {path}: not a plain PyTorch state dict "
                        f"({_first_line(err)[:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UserError(f"{path} is not an Inception state dict (a dict of tensors)")


@torch.inference_mode()
def inception_features(network: torch.nn.Module, images_uint8: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """uint8 (N, C, H, W) → (N, 2048); grayscale is repeated to RGB, resizing to 299 px happens inside."""
    chunks = []
    for start in range(0, len(images_uint8), batch_size):
        batch = images_uint8[start:start + batch_size]
        batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
        chunks.append(network(batch.contiguous()).reshape(len(batch), -1).double())
    return torch.cat(chunks).numpy()


def inception_scores(network: torch.nn.Module, real_uint8: torch.Tensor, fake_uint8: torch.Tensor) -> dict:
    """Inception FID and KID (whole-set, with its standard error) of two uint8 image sets."""
    real, fake = inception_features(network, real_uint8), inception_features(network, fake_uint8)
    return {"fid": fid(real, fake), "kid": kid(real, fake)}
