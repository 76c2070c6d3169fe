"""`visrep pipeline`: run the stages in order, skip the ones already done with the same config.

Everything that can be wrong with the request (the config, a stage name, a missing data folder, a
stage asked for before the ones it reads, an evaluator that would share the classifier's architecture
or seed) is checked before the first stage runs. While a stage runs, ``.<stage>.running.json`` beside
its folder holds its key: a folder left by a kill is then resumed from its checkpoint when the stage
trains in steps and the key is the same (config and everything upstream), else started again, saying
so. A stage made with another key is moved aside (``<stage>.replaced-<time>``), never deleted, and a
folder the pipeline did not make is refused.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from visrep.data.sources import check_source
from visrep.errors import UserError
from visrep.pipeline.config import Pipeline, load_pipeline, select
from visrep.pipeline.stages import RESUMABLE, RUNNERS, PipelineState, can_resume
from visrep.pipeline.state import (is_done, mark_running, read_marker, running_key, set_aside, stage_key,
                                   write_marker)
from visrep.pipeline.wiring import resolved_configs, upstream


def run_pipeline(config: str | Path | None, overrides: list[str] | None = None, only: str | None = None,
                 start: str | None = None, progress: bool = True) -> Path:
    """Run (or continue) the pipeline of ``config``; returns its folder."""
    pipeline = load_pipeline(config, overrides)
    configs = resolved_configs(pipeline)
    keys = _keys(pipeline, configs)
    chosen = select(pipeline, only, start)
    _check_sources(configs, chosen)
    _check_upstream_done(pipeline, chosen, keys)
    state = PipelineState(pipeline, configs, progress)
    pipeline.root.mkdir(parents=True, exist_ok=True)
    for stage in chosen:
        _run_stage(state, stage, keys[stage])
    print(f"pipeline folder: {pipeline.root}")
    return pipeline.root


def _keys(pipeline: Pipeline, configs: dict) -> dict[str, str]:
    keys: dict[str, str] = {}
    for stage in pipeline.stages:  # in order: a stage's upstream keys exist before its own
        keys[stage] = stage_key(stage, configs[stage], {name: keys[name] for name in upstream(pipeline, stage)})
    return keys


def _check_sources(configs: dict, chosen: list[str]) -> None:
    """A missing data folder (or unknown source) is one error line before any stage starts."""
    checked = set()
    for stage in chosen:
        cfg = configs[stage]
        if stage == "report" or "data" not in cfg:
            continue
        where = (cfg.data.source, cfg.data.root, cfg.data.download)
        if where not in checked:  # most stages share the data: scan a large folder once
            check_source(cfg.data)
            checked.add(where)


def _check_upstream_done(pipeline: Pipeline, chosen: list[str], keys: dict[str, str]) -> None:
    for stage in chosen:
        for name in upstream(pipeline, stage):
            if name not in chosen and not is_done(pipeline.stage_dir(name), keys[name]):
                raise UserError(f"stage '{stage}' reads the '{name}' stage, which has not finished in {pipeline.root} "
                                f"with this config: run it too (--from {name}, or add it to --only)")


def _run_stage(state: PipelineState, stage: str, key: str) -> None:
    folder = state.folder(stage)
    marker = read_marker(folder)
    if marker is not None and marker["key"] == key:
        print(f"[{stage}] done earlier with this config ({float(marker['seconds']):.0f} s): skipped")
        return
    resume = _clear_folder(folder, stage, key, marker)
    print(f"[{stage}] {'resuming' if resume else 'running'} → {folder}")
    mark_running(state.pipeline.root, stage, key)
    started = time.perf_counter()
    RUNNERS[stage](state, state.configs[stage], resume)
    write_marker(folder, stage, key, time.perf_counter() - started)


def _clear_folder(folder: Path, stage: str, key: str, marker: dict | None) -> bool:
    """Make way for the stage; True when an interrupted run of this very key is resumed instead.

    Only folders this pipeline made are touched: a finished stage (its marker) or one it was making
    (the running note beside it). A finished one with another key, or an interrupted one of another key
    (its checkpoints may still matter), is set aside; an interrupted one of this key is resumed when the
    stage trains in steps from a checkpoint, else removed (it is a partial copy of what runs next)."""
    if not folder.exists():
        return False
    making = running_key(folder.parent, stage)
    if marker is None and making is None:
        raise UserError(f"{folder} exists but was not made by this pipeline: move it away or choose another "
                        f"run.name / run.root")
    if marker is not None or making != key:
        moved = set_aside(folder)
        print(f"[{stage}] made with another config: the old one is kept as {moved}")
        return False
    if stage in RESUMABLE and can_resume(folder):
        return True
    print(f"[{stage}] an interrupted run that cannot be continued was left in {folder}: removed, starting again")
    shutil.rmtree(folder)
    return False
