"""``precision: auto | fp32 | bf16 | fp16`` → the precision a stage actually runs in, and why.

auto picks bf16 autocast only where it is fast: a CPU that executes bf16 natively (see
:mod:`visrep.hardware.cpu`), or a CUDA device that supports bf16; on a CUDA device without bf16
(pre-Ampere GPUs: V100, T4) fp16 autocast, whose gradients go through a loss scaler
(:mod:`visrep.training.loss_scale`); fp32 everywhere else. Without native bf16, autocast makes a
CPU training step about 10× slower, never faster. fp32, bf16 and fp16 stay explicit choices (bf16
or fp16 on a CPU is allowed: it is slow, not wrong).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from visrep.errors import UserError
from visrep.hardware.cpu import read_cpu_info

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # what a config may ask for
RESOLVED = ("fp32", "bf16", "fp16")  # what a stage runs in


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str
    precision: str  # fp32 | bf16 | fp16
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_precision(requested: str, key: str = "precision") -> None:
    if requested not in PRECISIONS:
        raise UserError(f"{key} must be one of {', '.join(PRECISIONS)} (got '{requested}')")


def resolve_precision(requested: str, device: torch.device | str = "cpu", key: str = "precision",
                      training: bool = False) -> PrecisionChoice:
    """The precision to run ``requested`` in on ``device``; UserError for an unknown name.

    ``training``: auto may pick fp16 (a CUDA device without bf16), whose loss scaler only a training
    loop has; inference (features, sampling, scoring) keeps fp32 there, where fp16 could overflow."""
    check_precision(requested, key)
    if requested != "auto":
        return PrecisionChoice(requested, requested, "asked for explicitly")
    device_type = torch.device(device).type
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):  # emulated bf16 is the slow case
            return PrecisionChoice("auto", "bf16", "CUDA device supports bf16")
        if training:
            return PrecisionChoice("auto", "fp16", "CUDA device without bf16: fp16 autocast, gradients through a "
                                                   "loss scaler")
        return PrecisionChoice("auto", "fp32", "CUDA device without bf16: inference in fp32 (fp16 only for training)")
    if device_type != "cpu":
        return PrecisionChoice("auto", "fp32", f"{device_type}: fp32")
    cpu = read_cpu_info()
    return PrecisionChoice("auto", "bf16" if cpu.native_bf16 else "fp32", cpu.reason)
