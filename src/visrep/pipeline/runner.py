"""`visrep pipeline`: run the stages in order, skip the ones already done with the same config.

Everything that can be wrong with the request (the config, a stage name, a missing data folder, a
stage asked for before the ones it reads, an evaluator that would share the classifier's architecture
or seed, a pipeline folder or stage folder the pipeline did not make) is checked before the first
stage runs. The pipeline writes only into a new folder or one it made (``pipeline.json`` in it, or the
stage markers of an older version): an existing run of another command, or anyone's folder, is refused.
While a stage runs, ``.<stage>.running.json`` beside its folder holds its key: a folder left by a kill
is then resumed from its checkpoint when the stage trains in steps and the key is the same (config and
everything upstream), else started again, saying so. A finished stage whose outputs changed since
(damaged), or whose upstream stage was rebuilt since, runs again, saying why. A stage made with another
key, or damaged, is moved aside (``<stage>.replaced-<time>``), never deleted.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from visrep.data.sources import check_source
from visrep.errors import UserError
from visrep.pipeline.config import RESUMABLE, Pipeline, load_pipeline, select
from visrep.pipeline.stages import RUNNERS, PipelineState, can_resume
from visrep.pipeline.state import (ROOT_MARKER, claim_root, invalidated, made_by_pipeline, mark_running, read_marker,
                                   running_key, set_aside, stage_key, write_marker)
from visrep.pipeline.wiring import resolved_configs, upstream


def run_pipeline(config: str | Path | None, overrides: list[str] | None = None, only: str | None = None,
                 start: str | None = None, progress: bool = True) -> Path:
    """Run (or continue) the pipeline of ``config``; returns its folder."""
    pipeline = load_pipeline(config, overrides)
    configs = resolved_configs(pipeline)
    keys = _keys(pipeline, configs)
    chosen = select(pipeline, only, start)
    _check_root(pipeline.root)
    _check_stage_folders(pipeline, chosen)
    _check_sources(configs, chosen)
    _check_upstream_done(pipeline, chosen, keys)
    state = PipelineState(pipeline, configs, progress)
    claim_root(pipeline.root)
    for stage in chosen:
        _run_stage(state, stage, keys[stage])
    print(f"pipeline folder: {pipeline.root}")
    return pipeline.root


def _keys(pipeline: Pipeline, configs: dict) -> dict[str, str]:
    keys: dict[str, str] = {}
    for stage in pipeline.stages:  # in order: a stage's upstream keys exist before its own
        keys[stage] = stage_key(stage, configs[stage], {name: keys[name] for name in upstream(pipeline, stage)})
    return keys


def _check_root(root: Path) -> None:
    """The pipeline writes only into a new folder or its own: never into another command's run or anyone's folder.

    An empty folder counts as new (nothing in it can be lost, and it is what `mkdir` before a run leaves)."""
    if not root.exists() or (root.is_dir() and (made_by_pipeline(root) or not any(root.iterdir()))):
        return
    raise UserError(f"{root} exists but was not made by this pipeline (no {ROOT_MARKER} or stage markers in it), "
                    f"and the pipeline writes only into its own folder: choose another run.name / run.root, "
                    f"or move it away")


def _check_stage_folders(pipeline: Pipeline, chosen: list[str]) -> None:
    """A folder the pipeline did not make where a chosen stage writes is refused now, not after the stages
    before it have run (_clear_folder refuses it again, should one appear meanwhile)."""
    for stage in chosen:
        folder = pipeline.stage_dir(stage)
        if folder.exists() and not _made_here(folder, stage):
            raise UserError(_foreign(folder))


def _made_here(folder: Path, stage: str) -> bool:
    """A stage folder the pipeline finished (its marker) or was making (the running note beside it)."""
    return read_marker(folder) is not None or running_key(folder.parent, stage) is not None


def _foreign(folder: Path) -> str:
    return f"{folder} exists but was not made by this pipeline: move it away or choose another run.name / run.root"


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
    """Every stage a chosen one reads but that is not run now must be finished with this config and intact."""
    checked = set()  # each folder hashed once, however many chosen stages read it
    for stage in chosen:
        for name in upstream(pipeline, stage):
            if name in chosen or name in checked:
                continue
            checked.add(name)
            why = _why_not_done(pipeline, name, keys[name])
            if why is not None:
                raise UserError(f"stage '{stage}' reads the '{name}' stage{why}: "
                                f"run it too (--from {name}, or add it to --only)")


def _why_not_done(pipeline: Pipeline, stage: str, key: str) -> str | None:
    """None when the stage is finished with this key and still valid, else the end of a sentence saying why."""
    folder = pipeline.stage_dir(stage)
    marker = read_marker(folder)
    if marker is None or marker["key"] != key:
        return f", which has not finished in {pipeline.root} with this config"
    why = invalidated(folder, marker, _upstream_markers(pipeline, stage))
    return None if why is None else f" in {pipeline.root}, where {why}"


def _upstream_markers(pipeline: Pipeline, stage: str) -> dict[str, dict | None]:
    """Each stage ``stage`` reads → its marker now (what a marker records and is checked against)."""
    return {name: read_marker(pipeline.stage_dir(name)) for name in upstream(pipeline, stage)}


def _run_stage(state: PipelineState, stage: str, key: str) -> None:
    folder = state.folder(stage)
    marker = read_marker(folder)
    why = None
    if marker is not None and marker["key"] == key:
        # Upstream stages ran (or were checked) before this one, so their markers are current and intact. One
        # rebuilt after damage keeps its key (same config): what decides is whether its outputs are still those
        # this stage was built from (state.rebuilt_upstream), so nothing built on damaged weights is kept.
        why = invalidated(folder, marker, _upstream_markers(state.pipeline, stage))
        if why is None:
            print(f"[{stage}] done earlier with this config ({float(marker['seconds']):.0f} s): skipped")
            return
    resume = _clear_folder(folder, stage, key, marker, why)
    print(f"[{stage}] {'resuming' if resume else 'running'} → {folder}")
    mark_running(state.pipeline.root, stage, key)
    started = time.perf_counter()
    RUNNERS[stage](state, state.configs[stage], resume)
    write_marker(folder, stage, key, time.perf_counter() - started, _upstream_markers(state.pipeline, stage))


def _clear_folder(folder: Path, stage: str, key: str, marker: dict | None, why: str | None = None) -> bool:
    """Make way for the stage; True when an interrupted run of this very key is resumed instead.

    Only folders this pipeline made are touched: a finished stage (its marker) or one it was making
    (the running note beside it). A finished one with another key or no longer valid (``why``: damaged,
    or built on an upstream stage rebuilt since), or an interrupted one of another key (its checkpoints may
    still matter), is set aside; an interrupted one of this key is resumed when the stage trains in steps
    from a checkpoint, else removed (it is a partial copy of what runs next)."""
    if not folder.exists():
        return False
    if not _made_here(folder, stage):
        raise UserError(_foreign(folder))
    making = running_key(folder.parent, stage)
    if marker is not None or making != key:
        moved = set_aside(folder)
        print(f"[{stage}] {why or 'made with another config'}: running it again; the old one is kept as {moved}")
        return False
    if stage in RESUMABLE and can_resume(folder):
        return True
    print(f"[{stage}] an interrupted run that cannot be continued was left in {folder}: removed, starting again")
    shutil.rmtree(folder)
    return False
