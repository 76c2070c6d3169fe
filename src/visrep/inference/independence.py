"""Keeping the evaluator independent of what it scores: weight hashes and the generator-run contract.

A generator that was conditioned, guided or discriminated by a network looks better than it is when
scored in that network's feature space (Kynkäänniemi et al., ICLR 2023). So every network is
identified by a SHA-256 of its weights, and scoring is refused when the evaluator's hash is among
the hashes a generator declares.

Two hashes identify one set of weights:

* ``tensors``: SHA-256 over the state dict's content — for each tensor, in sorted-name order, the
  name, dtype, shape and raw bytes. It does not depend on the file format, so a generator that keeps
  a frozen copy of the CNN in its own checkpoint can declare the same hash (:func:`state_dict_sha256`).
* ``file``: SHA-256 of the ``.safetensors`` file's bytes, for tools outside this project
  (``sha256sum best.safetensors``).

Generator run contract (what ``--fake <generator run>`` reads)::

    <generator run>/
      generator.json   {"conditioning_weights_sha256": ["<hex>", ...],   required; [] if none
                        "samples": "samples.npz",                        optional (default: samples.npz,
                                                                          else the folder samples/)
                        "conditioning_run": "runs/<classifier run>",     optional: for --in-loop
                        "description": "..."}                            optional
      samples.npz | samples/   see visrep.evaluation.fake_sources

``conditioning_weights_sha256`` lists every network whose weights shaped the samples: the
conditioning CNN, a classifier-guidance network, a frozen feature head in the discriminator. Either
hash form of a network may be listed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from visrep.errors import UserError
from visrep.storage import read_safetensors

EVALUATOR_RECORD = "evaluator.json"  # written by the evaluator stage: its hashes and test accuracy
GENERATOR_MANIFEST = "generator.json"
HASH_KEY = "conditioning_weights_sha256"


def state_dict_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of a state dict's content (names, dtypes, shapes, values), independent of storage."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_hashes(path: Path) -> dict[str, str]:
    """{"tensors": content hash, "file": file-bytes hash} of a ``.safetensors`` weights file."""
    tensors, _ = read_safetensors(Path(path))
    return {"tensors": state_dict_sha256(tensors), "file": file_sha256(path)}


def read_generator_manifest(run_dir: Path) -> dict:
    """Parse and validate ``<run_dir>/generator.json`` (see the module docstring for the contract)."""
    path = Path(run_dir) / GENERATOR_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} has no {GENERATOR_MANIFEST}: not a generator run") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} must hold a JSON object")
    hashes = manifest.get(HASH_KEY)
    if not isinstance(hashes, list) or not all(isinstance(item, str) for item in hashes):
        raise UserError(f"{path} must list '{HASH_KEY}': the weight hashes of every network that conditioned, "
                        "guided or discriminated the generator ([] if none)")
    return manifest


def check_independent(evaluator_hashes: Mapping[str, str], declared: Sequence[str] | None, what: str) -> None:
    """Refuse (UserError) when the evaluator's weights are among the generator's declared networks."""
    declared_set = {item.strip().lower() for item in declared or []}
    shared = declared_set & {value.lower() for value in evaluator_hashes.values()}
    if shared:
        raise UserError(f"refusing to score {what} with this evaluator: its weights (sha256 {sorted(shared)[0][:12]}…) "
                        "conditioned, guided or discriminated that generator; train an independent one with "
                        "`visrep train evaluator`")


def check_architecture_differs(evaluator_cfg, conditioning_cfg) -> None:
    """An evaluator must differ from the conditioning CNN in architecture and in seed (UserError otherwise)."""
    same_model = (evaluator_cfg.model.name == conditioning_cfg.model.name
                  and _plain(evaluator_cfg.model.options) == _plain(conditioning_cfg.model.options))
    if same_model:
        raise UserError(f"the evaluator must not share the conditioning CNN's architecture "
                        f"({evaluator_cfg.model.name} with the same options); choose another model.name or widths")
    if evaluator_cfg.run.seed == conditioning_cfg.run.seed:
        raise UserError(f"the evaluator must not share the conditioning CNN's seed ({evaluator_cfg.run.seed}); "
                        "set another run.seed")


def _plain(options) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(options, resolve=True) if OmegaConf.is_config(options) else dict(options or {})
