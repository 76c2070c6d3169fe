"""Your own image folder, as a newcomer meets it (issue 18): the README section runs as written, sizes
and splits are chosen and said, bad values are one error line before any run directory exists."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrep.cli import main

REPO = Path(__file__).resolve().parents[1]


def _photo_folder(root: Path) -> Path:
    """train/ and val/ of two classes, JPEGs of varied sizes, an RGBA PNG and a GIF among them."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 24), ("val", 6)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                width, height = int(rng.integers(90, 240)), int(rng.integers(80, 200))
                pixels = np.clip(rng.normal(70 + 90 * label, 40, (height, width, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=75)
    Image.new("RGBA", (120, 100), (200, 30, 30, 128)).save(root / "train" / "cat" / "alpha.png")
    Image.new("P", (100, 100)).save(root / "train" / "dog" / "placeholder.gif")
    return root


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.startswith("visrep ")]


def test_the_readme_section_runs_as_written_on_a_fresh_photo_folder(tmp_path):
    _photo_folder(tmp_path / "photos")
    env = {**os.environ, "VISREP_CACHE": str(tmp_path / "cache")}
    commands = _readme_commands()
    assert len(commands) == 4 and commands[1].startswith("visrep train classifier photos")
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[:2] == ["train", "classifier"]:
            argv += ["train.epochs=2"]  # the README's run, shortened: the commands are what is tested
        result = subprocess.run([sys.executable, "-m", "visrep", *argv], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr
    config = (tmp_path / "runs" / "pets" / "config.yaml").read_text()
    assert "image_size: 64" in config  # photos: the median short side, clamped to 64
    assert "batch_size: 16" in config  # not given: derived from the folder's training split (16 images)
    log = (tmp_path / "runs" / "pets" / "log.txt").read_text()
    assert "test split carved from train" in log


def test_unset_image_size_follows_the_folder_and_is_saved(tmp_path, data_cfg, capsys):
    from visrep.config import load_config
    from visrep.data.prepare import prepare_data

    _photo_folder(tmp_path / "photos")
    cfg = load_config(overrides=[f"data.source={tmp_path / 'photos'}", f"data.cache_dir={tmp_path / 'cache'}"])
    assert cfg.data.image_size is None
    data = prepare_data(cfg.data, progress=False)
    assert cfg.data.image_size == 64 and data.image_shape == (3, 64, 64)
    assert "data.image_size not given: 64 px (median short side" in capsys.readouterr().out
    digits = load_config(overrides=["data.source=digits"])
    prepare_data(digits.data, progress=False)
    assert digits.data.image_size == 8  # a built-in set keeps its own size


def test_warnings_for_a_batch_larger_than_the_data_and_one_class(tmp_path, capsys):
    _photo_folder(tmp_path / "photos")
    for cls in ("dog",):
        for split in ("train", "val"):
            for f in (tmp_path / "photos" / split / cls).iterdir():
                f.unlink()
            (tmp_path / "photos" / split / cls).rmdir()
    code = main(["train", "classifier", str(tmp_path / "photos"), f"run.root={tmp_path / 'runs'}", "--name", "one",
                 "train.epochs=1", "data.image_size=16", "data.batch_size=256", f"data.cache_dir={tmp_path / 'cache'}"])
    assert code == 0
    log = (tmp_path / "runs" / "one" / "log.txt").read_text()
    assert "only one class (cat)" in log and "data.batch_size=256 is larger than the" in log


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size must be ≥ 1 (or unset) (got 0)"),
    ("data.batch_size=-4", "data.batch_size must be ≥ 1 (or unset) (got -4)"),
    ("train.lr=-1", "train.lr must be > 0 (got -1.0)"),
    ("train.momentum=1.5", "train.momentum must be in [0, 1)"),
    ("data.val_fraction=1.5", "split fractions must each be in [0, 1)"),
])
def test_bad_values_are_one_line_before_any_run_directory(tmp_path, capsys, override, message):
    code = main(["train", "classifier", "digits", f"run.root={tmp_path / 'runs'}", "--name", "bad", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: {err[7:]}" and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_an_unusable_cache_location_is_one_clear_error(tmp_path, monkeypatch):
    from visrep.errors import UserError

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VISREP_CACHE", str(blocker / "cache"))
    with pytest.raises(UserError, match="cannot create the decode cache"):
        from visrep.config import load_config
        from visrep.data.prepare import prepare_data

        _photo_folder(tmp_path / "photos")
        prepare_data(load_config(overrides=[f"data.source={tmp_path / 'photos'}"]).data, progress=False)
    assert main(["data", "inspect", "digits", f"data.cache_dir={blocker}"]) == 2


def test_evaluating_an_empty_test_split_says_so(tmp_path):
    from visrep.errors import UserError
    from visrep.evaluation.classifier_eval import evaluate_classifier

    _photo_folder(tmp_path / "photos")
    code = main(["train", "classifier", str(tmp_path / "photos"), f"run.root={tmp_path / 'runs'}", "--name", "nt",
                 "train.epochs=1", "data.image_size=16", "data.test_fraction=0", f"data.cache_dir={tmp_path / 'c'}"])
    assert code == 0
    with pytest.raises(UserError, match="empty test split"):
        evaluate_classifier(tmp_path / "runs" / "nt", "test")


def test_a_run_trained_on_a_relative_folder_evaluates_from_anywhere(tmp_path, monkeypatch):
    _photo_folder(tmp_path / "photos")
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "classifier", "photos", "--name", "rel", "train.epochs=1", "data.image_size=16"]) == 0
    monkeypatch.chdir(tmp_path.parent)
    assert main(["evaluate", "classifier", str(tmp_path / "runs" / "rel")]) == 0


def test_prepared_data_must_match_the_config(tmp_path):
    from visrep.config import ClassifierConfig, load_config
    from visrep.data.prepare import prepare_data
    from visrep.errors import UserError
    from visrep.training.classifier import train_classifier

    data = prepare_data(load_config(overrides=["data.source=digits", "data.image_size=8"]).data, progress=False)
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={tmp_path}", "data.image_size=16"],
                      ClassifierConfig)
    with pytest.raises(UserError, match="prepared data is 1x8x8"):
        train_classifier(cfg, progress=False, data=data)
    assert not any(tmp_path.iterdir())


def test_an_unfinished_run_is_refused_unless_partial_is_allowed(tmp_path):
    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.errors import UserError
    from visrep.evaluation.classifier_eval import evaluate_classifier

    assert main(["train", "classifier", "digits", "--config", str(REPO / "configs" / "tiny.yaml"),
                 f"run.root={tmp_path}", "--name", "cut", "train.epochs=1"]) == 0
    run = tmp_path / "cut"
    (run / "metrics.json").unlink()  # as a kill after the last checkpoint leaves it
    with pytest.raises(UserError, match="has not finished training"):
        evaluate_classifier(run, "test")
    assert not list(run.glob("eval-*"))  # nothing stale left inside the run
    assert evaluate_classifier(run, "test", allow_partial=True)["weights"] == "best"
    cfg = load_config(overrides=["analysis.enabled=false", "embed.allow_partial=true"], schema=EmbedConfig)
    assert (embed_classifier_run(run, cfg, progress=False) / "embed.json").is_file()


def test_library_warnings_go_to_the_run_log_not_the_console(tmp_path):
    """In a fresh process, as a user's command runs (pytest records warnings itself in-process)."""
    code = ("import warnings; from visrep.config import load_config; from visrep.runs import create_run; "
            f"run = create_run(load_config(overrides=['run.root={tmp_path}', 'run.name=w']), 'inspect'); "
            "warnings.warn('Glyph 8322 missing from current font', UserWarning)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Glyph 8322" not in result.stderr
    assert "Glyph 8322 missing" in (tmp_path / "w" / "log.txt").read_text()


def test_models_says_which_sizes_each_suits(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fastcnn          8-64 px" in out and "tv:<arch>" in out and "tv:resnet18" not in out
    assert "pretrained files (model.pretrained_path" in out and "a visrep run's best/last.safetensors" in out
    assert main(["models", "--all"]) == 0
    assert "  tv:resnet18" in capsys.readouterr().out


def test_ece_after_temperature_on_val_says_it_was_fitted_there(tiny_trained_run):
    from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics

    val = evaluate_classifier(tiny_trained_run, "val")
    assert val["calibration"]["temperature_fitted_on_this_split"] is True
    assert "fitted on this same val split: optimistic" in format_metrics(val)
    test = evaluate_classifier(tiny_trained_run, "test")
    assert "(fitted on val)" in format_metrics(test)
