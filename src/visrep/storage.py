"""Checkpoints that are safe to load and never half-written.

- Weights: ``.safetensors`` (tensors only, no code) + a JSON sidecar with the model config.
- Training state (optimizer, schedule, EMA, RNG, step, history): ``torch.save`` of plain
  dicts of tensors and numbers, always loaded with ``weights_only=True`` so a crafted pickle
  cannot run code.
- Every write goes to a temporary file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from visrep.errors import UserError


def atomic_write(path: Path, write) -> Path:
    """Call ``write(temp_path)``, fsync, then rename onto ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temp)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path) -> dict:
    """A run's JSON record, or one UserError line when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None


def save_weights(model: torch.nn.Module, path: Path, model_config: dict) -> Path:
    """``path`` (.safetensors) + ``path.with_suffix('.json')`` holding ``model_config``."""
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(Path(path).with_suffix(".json"), lambda temp: Path(temp).write_text(json.dumps(model_config, indent=1)))
    return atomic_write(path, lambda temp: save_file(tensors, temp))


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        tensors = load_file(str(path))
        config = json.loads(path.with_suffix(".json").read_text())
    except Exception as err:
        raise UserError(f"cannot read weights {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return tensors, config


def save_state(state: dict, path: Path) -> Path:
    return atomic_write(path, lambda temp: torch.save(state, temp))


def load_state(path: Path) -> dict:
    """Load a training-state file with ``weights_only=True`` (refuses pickled code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot load training state {path} (corrupt, truncated or unsafe): "
                        f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}") from None


def rng_state() -> dict:
    import random

    import numpy as np

    state = {"torch": torch.get_rng_state(), "python": _python_rng_to_plain(random.getstate()),
             "numpy": _numpy_rng_to_plain(np.random.get_state())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    np.random.set_state((state["numpy"][0], np.asarray(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_rng_to_plain(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _numpy_rng_to_plain(state):
    name, keys, pos, has_gauss, cached = state
    return [name, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]
