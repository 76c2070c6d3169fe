"""Checkpoints that are safe to load and never half-written.

- Weights: ``.safetensors`` (tensors only, no code) + a JSON sidecar with the model config.
- Training state (optimizer, schedule, EMA, RNG, step, history): ``torch.save`` of plain
  dicts of tensors and numbers, always loaded with ``weights_only=True`` so a crafted pickle
  cannot run code.
- Every write goes to a temporary file in the same folder, is fsynced, then renamed.
- Every ``.safetensors`` read in the project goes through :func:`read_safetensors`: a damaged,
  truncated or foreign file (a pickle renamed, random bytes) is one UserError line naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

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


def read_safetensors(path: Path, what: str = "weights") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, the header's string metadata) of a ``.safetensors`` file: the project's one
    safetensors reader. ``what`` names the file's role in the error line ("weights", "condition bank")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as stream:
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
            metadata = dict(stream.metadata() or {})
    except Exception as err:  # SafetensorError, OSError, a header that is not JSON: the file is damaged
        raise UserError(f"cannot read {what} {path} (damaged, truncated or not a safetensors file): "
                        f"{_first_line(err)}") from None
    return tensors, metadata


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200] if str(err).strip() else type(err).__name__


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, model config) of ``path`` and its JSON sidecar; each damaged file is named on its own."""
    path = Path(path)
    tensors, _ = read_safetensors(path)
    sidecar = path.with_suffix(".json")
    try:
        config = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the model config {sidecar} (beside {path.name}): {_first_line(err)}") from None
    if not isinstance(config, dict):
        raise UserError(f"the model config {sidecar} must be a JSON object (beside {path.name})")
    return tensors, config


def save_state(state: dict, path: Path) -> Path:
    return atomic_write(path, lambda temp: torch.save(state, temp))


def load_state(path: Path) -> dict:
    """Load a training-state file with ``weights_only=True`` (refuses pickled code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot load training state {path}: {pickle_error(err)}") from None


def read_torch_file(path: Path, what: str = "weight file"):
    """``torch.load(weights_only=True)`` onto the CPU, any failure one UserError line naming ``path``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # EOFError for an empty file, UnpicklingError, RuntimeError: all the file's fault
        raise UserError(f"could not read {what} {path}: {pickle_error(err)}") from None


def pickle_error(err: Exception) -> str:
    """Why a state file was refused, in our words. torch's own message for a pickle that holds code
    advises re-loading with weights_only=False, which would run that code: never repeat it."""
    text = str(err)
    if "weights_only" in text or "Unpickler" in text or type(err).__name__ == "UnpicklingError":
        return ("it holds pickled objects other than tensors and plain values; refused, since loading them "
                "could run code (a training state written by visrep never holds any)")
    return f"corrupt or truncated ({_first_line(err)})"


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
