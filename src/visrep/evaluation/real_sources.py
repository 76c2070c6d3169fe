"""The real images a generator is compared with: ``--real`` → a prepared dataset and a held-out split.

Spec forms (the images always come at the evaluator's size, channels and resize policy):

* ``test`` / ``val`` — that split of the evaluator's own training data (the usual case);
* ``<source>:<split>`` — another data source (``mnist``, ``digits``, an image-folder path);
* ``<run dir>:<split>`` — the data of another run (e.g. the generator's), read from its config.yaml.

The train split is never a reference: it is what memorisation is measured against and what the
real-vs-real floor draws from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from visrep.config import DataConfig, read_yaml_mapping
from visrep.data.prepare import PreparedData, prepare_data
from visrep.errors import UserError
from visrep.runs import check_manifest

REFERENCE_SPLITS = ("val", "test")


@dataclass
class RealReference:
    data: PreparedData  # all splits; "train" is the memorisation bank and the floor's pool
    split: str  # the held-out split compared with the generated images
    description: dict


def parse_real_spec(spec: str) -> tuple[str | None, str]:
    """"test" → (None, "test"); "mnist:val" → ("mnist", "val"); a bare source → (source, "test")."""
    if spec in REFERENCE_SPLITS:
        return None, spec
    if spec == "train" or spec.endswith(":train"):
        raise UserError("--real must be a held-out split (val or test): the train split is what memorisation "
                        "and the real-vs-real floor are measured against")
    source, _, split = spec.rpartition(":")
    if source and split in REFERENCE_SPLITS:
        return source, split
    return spec, "test"


def load_real_reference(evaluator, spec: str, progress: bool = True,
                        prepared: PreparedData | None = None) -> RealReference:
    """The held-out real images of ``spec``; ``prepared``: the evaluator's own data already prepared (used only
    for a spec on the evaluator's data, and checked against its manifest like a fresh preparation)."""
    source, split = parse_real_spec(spec)
    data_cfg = _data_config(evaluator.cfg.data, source, evaluator.network.image_shape[0])
    data = prepared if prepared is not None and source is None else prepare_data(data_cfg, progress=progress)
    if source is None:
        check_manifest(evaluator.run_path, data.manifest)
    if list(data.class_names) != list(evaluator.class_names):
        raise UserError(f"the real data's classes {data.class_names[:5]}… differ from the evaluator's "
                        f"{evaluator.class_names[:5]}…; evaluate against the data the evaluator was trained on")
    if len(data.splits[split]) == 0:
        raise UserError(f"the real data has no {split} split to compare with")
    return RealReference(data, split, {"source": str(data_cfg.source), "split": split,
                                       "manifest_hash": data.manifest["hash"], "n_available": len(data.splits[split])})


def _data_config(evaluator_data, source: str | None, channels: int):
    if source is None:
        return copy.deepcopy(evaluator_data)
    run_config = Path(source).expanduser() / "config.yaml"
    if run_config.is_file():
        data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), read_yaml_mapping(run_config).get("data", {}))
    else:
        data_cfg = copy.deepcopy(evaluator_data)
        data_cfg.source = source
        data_cfg.root = None  # the evaluator's root belongs to its own source
    # the evaluator's input format wins over the other source's own
    data_cfg.image_size, data_cfg.resize = evaluator_data.image_size, evaluator_data.resize
    data_cfg.channels = channels
    return data_cfg
