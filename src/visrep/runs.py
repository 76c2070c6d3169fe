"""Run directories: every command leaves ``runs/<name>/`` describing exactly what it did.

Contents written here: ``config.yaml`` (resolved), ``environment.json`` (versions, git commit,
CPU/GPU, command line), ``seed.txt`` and ``log.txt``; stages add the manifest, metrics and
artefacts. An existing run is never replaced unless ``run.overwrite=true``, and even then only
when the same verb wrote it (``environment.json`` records the verb) and the command does not read
from it: ``evaluate generated --name GAN_RUN --overwrite`` must not delete the GAN it was asked to
score, nor ``--fake``/``--evaluator`` folders, nor anyone's folder that merely has the same name.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from visrep import __version__
from visrep.config import leaves, to_yaml
from visrep.errors import UserError
from visrep.hardware.distributed import broadcast_from_main, current_info
from visrep.storage import atomic_write


@dataclass
class Run:
    path: Path
    logger: logging.Logger

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data) -> Path:
        return atomic_write_text(self.path / name, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write via a temporary file + fsync + rename, so a crash never leaves half a file."""
    return atomic_write(Path(path), lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def create_run(cfg, verb: str, is_main_process: bool = True, reads: tuple = (), restartable: bool = False) -> Run:
    """Make the run directory (rank 0 only writes) and record config, environment and seed.

    ``reads``: paths the command reads besides those its config names (both are protected from
    ``run.overwrite``). ``restartable``: the verb keeps no state worth resuming (scoring), so a run
    of the same verb left unfinished by a kill (no metrics.json, written last) is started again,
    saying so, instead of refused. Under torchrun every rank takes rank 0's path (a time-stamped
    name could differ by a second)."""
    path = broadcast_from_main(_run_path(cfg.run, verb), current_info())
    if is_main_process:
        reads = [*paths_named(cfg), *map(Path, reads)]
        if restartable and _is_unfinished(path, verb):
            check_replaceable(path, verb, reads)
            print(f"{path} holds an unfinished '{verb}' run (interrupted: no metrics.json): starting it again",
                  file=sys.stderr)
            shutil.rmtree(path)
        _claim_directory(path, cfg.run.overwrite, verb, reads)
    run = Run(path, _make_logger(path, is_main_process))
    if is_main_process:
        run.write_text("config.yaml", to_yaml(cfg))
        run.write_text("seed.txt", f"{cfg.run.seed}\n")
        run.logger.info("run directory: %s", path)
    return run


def _run_path(run_cfg, verb: str) -> Path:
    root = Path(run_cfg.root).expanduser()
    if run_cfg.name:
        check_run_name(run_cfg.name)
        return root / run_cfg.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, suffix = root / f"{stamp}-{verb}", 1
    while path.exists():  # two commands in the same second: never share a directory
        suffix += 1
        path = root / f"{stamp}-{verb}-{suffix}"
    return path


def check_run_name(name: str) -> None:
    """A plain, printable folder name: a newline or other control character would be kept in the
    folder's name yet shown changed (or not at all) by every listing and log line."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"run.name must be a plain folder name (got {name!r})")
    if any(not char.isprintable() for char in name):
        raise UserError(f"run.name must not contain control characters such as a newline (got {name!r})")


def _claim_directory(path: Path, overwrite: bool, verb: str, reads: list[Path]) -> None:
    if path.exists():
        if not overwrite:
            raise UserError(f"run directory {path} already exists; choose another run.name or set run.overwrite=true")
        check_replaceable(path, verb, reads)
        shutil.rmtree(path)
    _make_with_verb(path, verb)


def _make_with_verb(path: Path, verb: str) -> None:
    """Create ``path`` holding environment.json (which records the verb) in one rename: a kill at any
    moment leaves no run folder, or one whose verb is known (so its own verb may restart or replace it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        atomic_write_text(temp / "environment.json",
                          json.dumps({**environment_info(), "verb": verb}, indent=1, sort_keys=True) + "\n")
        os.rename(temp, path)  # fails if another command made ``path`` meanwhile: never merged into it
    except OSError as err:
        shutil.rmtree(temp, ignore_errors=True)
        raise UserError(f"cannot create run directory {path}: {err.strerror or err}") from None


def check_replaceable(path: Path, verb: str, reads: list[Path]) -> None:
    """``run.overwrite`` replaces only a run that this same verb wrote, and never a folder the command
    reads (or one holding it): UserError otherwise, before anything is deleted."""
    read = next((item for item in reads if holds(path, item)), None)
    if read is not None:
        raise UserError(f"run.overwrite would delete {path}, which this command reads ({read}): "
                        f"choose another run.name")
    written_by = run_verb(path)
    if written_by != verb:
        what = f"a '{written_by}' run" if written_by else "not a run that visrep recorded a verb for"
        raise UserError(f"run.overwrite replaces only a '{verb}' run, and {path} is {what}: "
                        f"choose another run.name (or move that folder away yourself)")


def _is_unfinished(path: Path, verb: str) -> bool:
    return path.is_dir() and run_verb(path) == verb and not (path / "metrics.json").exists()


def run_verb(path: Path) -> str | None:
    """The verb that made a run directory (recorded in its environment.json), or None."""
    try:
        record = json.loads((Path(path) / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    verb = record.get("verb") if isinstance(record, dict) else None
    return verb if isinstance(verb, str) else None


def holds(folder: Path, item: Path) -> bool:
    """True when deleting ``folder`` would delete ``item`` (the same path, or one inside it)."""
    try:
        folder, item = folder.resolve(), Path(item).expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    return item == folder or folder in item.parents


def paths_named(cfg) -> list[Path]:
    """Every existing path a config's values name (data folders, conditioning runs, evaluators, fakes,
    a ``<run>:<split>`` reference), except where runs are written (run.root): what a command reads."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    plain.pop("run", None)
    found = []
    for value in (item for _, item in leaves(plain) if isinstance(item, str)):
        for text in {value, value.rsplit(":", 1)[0]}:  # "runs/x:test" names runs/x
            if text and len(text) < 4096 and _exists(text):
                found.append(Path(text).expanduser())
    return found


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        return False


def _make_logger(path: Path, is_main_process: bool) -> logging.Logger:
    logger = logging.getLogger(f"visrep.run.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers.clear()
    if is_main_process:
        file_handler = logging.FileHandler(path / "log.txt", mode="a")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(file_handler)
        logger.addHandler(console)
        _route_library_warnings(file_handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def _route_library_warnings(file_handler: logging.Handler) -> None:
    """Python warnings (matplotlib's missing glyphs, scikit-learn's ConvergenceWarning, ...) go to the
    current run's log.txt, not the console, where they read like errors of ours."""
    logging.captureWarnings(True)
    library = logging.getLogger("py.warnings")
    library.handlers = [file_handler]
    library.propagate = False


def environment_info() -> dict:
    from importlib.metadata import version

    import numpy
    import torch

    return {
        "visrep": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),  # read, not imported: the import alone costs seconds
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [],
        "git_commit": _git_commit(),
        "command": sys.argv,
    }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    source_dir = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source_dir,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def open_run(path: Path, manifest_hash: str | None = None) -> Run:
    """Reopen an existing run directory (to resume or evaluate it), checking it is what it claims."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory not found: {path}")
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path} is not a visrep run directory (no config.yaml)")
    if manifest_hash is not None:
        check_manifest(path, manifest_hash)
    run = Run(path, _make_logger(path, current_info().is_main))  # under torchrun one log.txt writer
    return run


def check_manifest(path: Path, current: dict | str) -> None:
    """Refuse a run whose data changed; ``current`` is the data's manifest (or just its hash).

    With the whole manifest the message names files that became unreadable since the run was
    made: a corrupt image is then skipped, which changes the data, and the user needs its name.
    """
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise UserError(f"{path} has no manifest.json: it is not a training run")
    recorded = json.loads(manifest.read_text())
    current_hash = current if isinstance(current, str) else current["hash"]
    if recorded["hash"] == current_hash:
        return
    lost = "" if isinstance(current, str) else _newly_unreadable(recorded, current)
    if lost:  # the file names first: they are what the user has to fix
        raise UserError(f"data mismatch: {lost} became unreadable since {path} was made; restore it or train "
                        f"a new run (manifest {recorded['hash'][:12]} → {current_hash[:12]})")
    raise UserError(f"data mismatch: {path} was trained on data with manifest {recorded['hash'][:12]}, "
                    f"but the configured data has manifest {current_hash[:12]}")


def _newly_unreadable(recorded: dict, current: dict, shown: int = 3) -> str:
    """'<file> (<reason>), ...' for items of the run that the data now skips as unreadable, or ''."""
    items = {item["id"] for item in recorded.get("items", [])}
    lost = [entry for entry in current.get("skipped", []) if entry["id"] in items]
    root = current.get("source", {}).get("root")
    names = [f"{Path(root) / entry['id'] if root else entry['id']} ({entry['reason']})" for entry in lost[:shown]]
    return ", ".join(names) + (f" and {len(lost) - shown} more" if len(lost) > shown else "")


def load_run_config(path: Path, schema: type):
    from visrep.config import load_config

    if not (Path(path) / "config.yaml").is_file():
        raise UserError(f"{path} is not a visrep run directory (no config.yaml)")
    _check_run_kind(Path(path), schema)
    cfg = load_config(Path(path) / "config.yaml", schema=schema, check=False, migrate=True)
    _resolve_data_root(cfg, Path(path))
    return cfg


# what a config schema reads, in the user's words (a run made by another verb is named as such)
_SCHEMA_KINDS = {"ClassifierConfig": "classifier or evaluator", "GanConfig": "gan", "DiffusionConfig": "diffusion",
                 "GuideConfig": "guide", "GenerativeEvalConfig": "evaluate generated"}


def _check_run_kind(path: Path, schema: type) -> None:
    """A run whose config has sections the schema lacks was made by another verb: say which, instead
    of reporting its first section as an 'unknown config key'."""
    import dataclasses

    from visrep.config import read_yaml_mapping

    known = {field.name for field in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    foreign = [section for section in read_yaml_mapping(path / "config.yaml") if known and section not in known]
    if foreign:
        kind = run_verb(path) or foreign[0]
        wanted = _SCHEMA_KINDS.get(schema.__name__, schema.__name__)
        raise UserError(f"{path} is a '{kind}' run, not a {wanted} run: give a run of that kind")


def _resolve_data_root(cfg, run_path: Path) -> None:
    """A folder source saved as a relative path (``data.source=photos``) is found from any working
    directory: when it does not exist from here, the absolute root the manifest recorded is used."""
    if "data" not in cfg or Path(cfg.data.source).expanduser().exists():
        return
    manifest = run_path / "manifest.json"
    if not manifest.is_file():
        return
    try:
        source = json.loads(manifest.read_text()).get("source", {})
    except (OSError, ValueError):
        return  # an unreadable manifest is reported by whatever reads it next, in its own words
    if source.get("kind") == "folder" and source.get("root") and Path(source["root"]).is_dir():
        cfg.data.source = source["root"]
