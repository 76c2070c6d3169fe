"""Finished runs the malformed-input cases start from, each trained once per process and copied into a
case's folder (a case may damage its copy): a tiny classifier, an evaluator of another seed and width,
and tiny GAN and diffusion runs conditioned on the classifier. Seconds once, instead of per case."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
_BUILT: dict[str, Path] = {}


def _root() -> Path:
    if "root" not in _BUILT:
        _BUILT["root"] = Path(tempfile.mkdtemp(prefix="visrep-malformed-"))
        atexit.register(shutil.rmtree, _BUILT["root"], True)
    return _BUILT["root"]


def build(kind: str) -> Path:
    """A finished run of ``kind``: classifier | evaluator | gan | gan-embedding | diffusion."""
    from visrep.config import ClassifierConfig, DiffusionConfig, GanConfig, load_config
    from visrep.training.classifier import train_classifier
    from visrep.training.diffusion import train_diffusion
    from visrep.training.gan import train_gan

    if kind in _BUILT:
        return _BUILT[kind]
    root = _root()
    common = [f"run.root={root}", f"run.name={kind}", f"data.cache_dir={root}/cache"]
    if kind in ("classifier", "evaluator"):
        extra = ["train.epochs=1"] + (["run.seed=1", "model.options.widths=[32,48,64]"] if kind == "evaluator" else [])
        _BUILT[kind] = train_classifier(load_config(TINY, common + extra, ClassifierConfig), progress=False)
    elif kind == "diffusion":  # with an unconditional branch, so that any guidance scale is allowed
        cfg = load_config(REPO / "configs" / "diffusion_tiny.yaml", common + [
            f"diffusion.conditioning_run={build('classifier')}", "train.steps=2", "diffusion.final_samples=0"],
            DiffusionConfig)
        _BUILT[kind] = train_diffusion(cfg, progress=False)
    else:
        mode = "embedding" if kind == "gan-embedding" else "class"
        cfg = load_config(REPO / "configs" / "gan_tiny.yaml", common + [
            f"gan.conditioning_run={build('classifier')}", f"gan.conditioning={mode}", "train.steps=4"], GanConfig)
        _BUILT[kind] = train_gan(cfg, progress=False)
    return _BUILT[kind]


def copy_run(kind: str, tmp: Path, name: str | None = None) -> Path:
    """A private copy of the ``kind`` run at ``tmp/runs/<name or kind>``."""
    target = Path(tmp) / "runs" / (name or kind)
    shutil.copytree(build(kind), target)
    return target
