"""The malformed-input suite: each case is (name, setup) where setup(tmp) returns CLI argv.

Every case must end with exit code 2 (user error), a single ``error:`` line, no traceback, and
no change to anything saved before. Used by tests/test_malformed_inputs.py and by
benchmarks/malformed_inputs.py (which prints the table in RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_folder, write_image
from malformed_builds import copy_run as _copy_run
from malformed_cases_pipeline import PIPELINE_CASES
from malformed_cases_hygiene import HYGIENE_CASES, HYGIENE_MUST_NAME
from malformed_cases_sample import SAMPLE_CASES, SAMPLE_MUST_NAME

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


def _runs(tmp: Path) -> str:
    return f"run.root={tmp}/runs"


def _folder(tmp: Path, **kwargs) -> Path:
    return make_folder(tmp / "images", **kwargs)


def _trained_run(tmp: Path, source: str = "digits", extra: tuple[str, ...] = ()) -> Path:
    from visrep.config import ClassifierConfig, load_config
    from visrep.training.classifier import train_classifier

    cfg = load_config(TINY, [_runs(tmp), "run.name=trained", "train.epochs=1", f"data.source={source}",
                             f"data.cache_dir={tmp}/cache", *extra], schema=ClassifierConfig)
    return train_classifier(cfg, progress=False)


def missing_path(tmp):
    return ["data", "inspect", str(tmp / "nope"), _runs(tmp)]


def empty_folder(tmp):
    (tmp / "empty").mkdir()
    return ["data", "inspect", str(tmp / "empty"), _runs(tmp)]


def class_without_images(tmp):
    root = _folder(tmp)
    (root / "emu").mkdir()
    return ["data", "inspect", str(root), _runs(tmp)]


def class_too_small_for_split(tmp):
    root = _folder(tmp)
    write_image(root / "rare" / "0.png", np.random.default_rng(0))
    return ["data", "inspect", str(root), _runs(tmp)]


def corrupt_file_in_strict_mode(tmp):
    root = _folder(tmp)
    (root / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return ["data", "inspect", str(root), _runs(tmp), "data.strict=true"]


def source_is_a_file(tmp):
    (tmp / "x.png").write_bytes(b"x")
    return ["data", "inspect", str(tmp / "x.png"), _runs(tmp)]


def torchvision_files_missing(tmp):
    return ["data", "inspect", "cifar10", f"data.root={tmp}/none", _runs(tmp)]


def unknown_config_key(tmp):
    return ["train", "classifier", "--config", TINY, "train.epoch=3", _runs(tmp)]


def wrong_config_type(tmp):
    return ["train", "classifier", "--config", TINY, "train.lr=fast", _runs(tmp)]


def missing_config_file(tmp):
    return ["train", "classifier", "--config", str(tmp / "none.yaml"), _runs(tmp)]


def malformed_yaml(tmp):
    (tmp / "bad.yaml").write_text("train: {epochs: [1,\n")
    return ["train", "classifier", "--config", str(tmp / "bad.yaml"), _runs(tmp)]


def unknown_model_name(tmp):
    return ["train", "classifier", "--config", TINY, "model.name=resnet9000", _runs(tmp)]


def bad_option_value(tmp):
    return ["train", "classifier", "--config", TINY, "train.optimizer=adam-ish", _runs(tmp)]


def existing_run_name(tmp):
    _trained_run(tmp)
    return ["train", "classifier", "--config", TINY, "--name", "trained", _runs(tmp)]


def evaluate_missing_run(tmp):
    return ["evaluate", "classifier", str(tmp / "runs" / "absent")]


def evaluate_empty_directory(tmp):
    (tmp / "runs" / "empty").mkdir(parents=True)
    return ["evaluate", "classifier", str(tmp / "runs" / "empty")]


def evaluate_run_of_another_stage(tmp):
    from visrep.cli import main

    assert main(["data", "inspect", "digits", _runs(tmp), "--name", "inspected"]) == 0
    return ["evaluate", "classifier", str(tmp / "runs" / "inspected")]


def evaluate_bad_split(tmp):
    return ["evaluate", "classifier", str(_trained_run(tmp)), "--split", "holdout"]


def evaluate_truncated_weights(tmp):
    run = _trained_run(tmp)
    best = run / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    return ["evaluate", "classifier", str(run)]


def _interrupted_run(tmp: Path, source: str = "digits") -> Path:
    """A trained run as a crash after its last checkpoint leaves it: no metrics.json."""
    run = _trained_run(tmp, source)
    (run / "metrics.json").unlink()
    return run


def resume_after_data_changed(tmp):
    root = _folder(tmp, per_class=12, size=(8, 8))
    run = _interrupted_run(tmp, source=str(root))
    write_image(root / "cat" / "added.png", np.random.default_rng(3), size=(8, 8))
    return ["train", "classifier", "--resume", str(run)]


def resume_with_overrides(tmp):
    return ["train", "classifier", "--resume", str(_interrupted_run(tmp)), "train.epochs=9"]


def resume_without_checkpoints(tmp):
    run = _interrupted_run(tmp)
    for state in (run / "checkpoints").glob("*.pt"):
        state.unlink()
    return ["train", "classifier", "--resume", str(run)]


def resume_finished_classifier(tmp):
    return ["train", "classifier", "--resume", str(_trained_run(tmp))]


def _truncate(path: Path) -> Path:
    """Keep the PNG header and half the data: the format is recognised, the pixels are not there."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def embed_image_corrupted_after_training(tmp):
    root = _folder(tmp, per_class=12, size=(32, 32))
    run = _trained_run(tmp, source=str(root))
    _truncate(root / "cat" / "003.png")
    return ["embed", str(run), "--no-analysis"]


def corrupt_image_among_images_to_score(tmp):
    """`evaluate generated --fake FOLDER` extracts evaluator embeddings from every image of FOLDER."""
    run = _trained_run(tmp)
    rng = np.random.default_rng(0)
    for i in range(4):
        write_image(tmp / "fake" / f"{i}.png", rng, size=(32, 32), mode="L")
    _truncate(tmp / "fake" / "2.png")
    return ["evaluate", "generated", "--evaluator", str(run), "--fake", str(tmp / "fake"), "--no-cas", _runs(tmp)]


def resume_finished_evaluator(tmp):
    from visrep.config import ClassifierConfig, load_config
    from visrep.training.evaluator import train_evaluator

    cfg = load_config(TINY, [_runs(tmp), "run.name=evaluator", "train.epochs=1", f"data.cache_dir={tmp}/cache"],
                      schema=ClassifierConfig)
    return ["train", "evaluator", "--resume", str(train_evaluator(cfg, progress=False))]


def resume_evaluator_from_run_of_another_stage(tmp):
    from visrep.cli import main

    assert main(["data", "inspect", "digits", _runs(tmp), "--name", "inspected"]) == 0
    return ["train", "evaluator", "--resume", str(tmp / "runs" / "inspected")]



# ---- your own folder, as a newcomer meets it (issue 18) ------------------------------------------

def batch_size_zero(tmp):
    return ["train", "classifier", "digits", _runs(tmp), "data.batch_size=0"]


def batch_size_negative(tmp):
    return ["train", "classifier", "digits", _runs(tmp), "data.batch_size=-4"]


def negative_learning_rate(tmp):
    return ["train", "classifier", "digits", _runs(tmp), "train.lr=-1"]


def momentum_out_of_range(tmp):
    return ["train", "classifier", "digits", _runs(tmp), "train.momentum=1.5"]


def val_fraction_too_large_on_a_split_folder(tmp):
    root = make_folder(tmp / "split" / "train", classes=("cat", "dog"), per_class=6).parent
    make_folder(root / "val", classes=("cat", "dog"), per_class=2)
    return ["data", "inspect", str(root), _runs(tmp), "data.val_fraction=1.5"]


def val_fraction_too_large_on_a_flat_folder(tmp):
    return ["data", "inspect", str(_folder(tmp)), _runs(tmp), "data.val_fraction=1.5"]


def cache_dir_is_a_file(tmp):
    (tmp / "cachefile").write_text("not a folder")
    return ["data", "inspect", str(_folder(tmp)), _runs(tmp), f"data.cache_dir={tmp}/cachefile"]


def cache_under_a_file(tmp):
    (tmp / "blocker").write_text("not a folder")
    return ["data", "inspect", str(_folder(tmp)), _runs(tmp), f"data.cache_dir={tmp}/blocker/cache"]


def file_linked_into_two_classes(tmp):
    root = _folder(tmp)
    (root / "dog" / "linked.png").symlink_to(root / "cat" / "000.png")
    return ["data", "inspect", str(root), _runs(tmp)]


def folder_linked_into_train_and_test(tmp):
    root = make_folder(tmp / "split" / "train", classes=("cat", "dog"), per_class=6).parent
    (root / "test").mkdir()
    (root / "test" / "cat").symlink_to(root / "train" / "cat", target_is_directory=True)
    return ["data", "inspect", str(root), _runs(tmp)]


def evaluate_empty_test_split(tmp):
    _trained_run(tmp, source="digits", extra=["data.test_fraction=0"])
    return ["evaluate", "classifier", str(tmp / "runs" / "trained"), "--split", "test"]


def resume_with_a_source(tmp):
    _interrupted_run(tmp)
    return ["train", "classifier", "digits", "--resume", str(tmp / "runs" / "trained")]


def image_size_too_small(tmp):
    return ["train", "classifier", str(_folder(tmp)), _runs(tmp), "data.image_size=2"]


def threads_zero(tmp):
    return ["train", "classifier", "digits", _runs(tmp), "train.threads=0"]


def evaluate_unfinished_run(tmp):
    _interrupted_run(tmp)
    return ["evaluate", "classifier", str(tmp / "runs" / "trained")]


def embed_unfinished_run(tmp):
    _interrupted_run(tmp)
    return ["embed", str(tmp / "runs" / "trained")]


def positional_source_missing(tmp):
    return ["train", "classifier", str(tmp / "no_such_folder"), _runs(tmp)]


# ---- generator verbs and the pipeline under careless and hostile input (issue 37) -------------------

def _score(tmp: Path, fake: Path, *extra: str) -> list[str]:
    return ["evaluate", "generated", "--evaluator", str(_copy_run("evaluator", tmp)), "--fake", str(fake),
            "--no-cas", _runs(tmp), *extra]


def overwrite_the_gan_run_being_scored(tmp):
    """`evaluate generated --name X --overwrite` where X is the GAN run it scores: X must survive byte for byte."""
    gan = _copy_run("gan", tmp)
    return _score(tmp, gan, "--name", "gan", "--overwrite")


def overwrite_a_trained_gan_run_by_scoring(tmp):
    """The same, with the GAN run merely sharing the name (it is not read): still not a scoring folder."""
    gan = _copy_run("gan", tmp, "victim")
    return _score(tmp, gan / "samples.npz", "--name", "victim", "--overwrite")


def overwrite_the_evaluator_being_used(tmp):
    return _score(tmp, _copy_run("gan", tmp) / "samples.npz", "--name", "evaluator", "--overwrite")


def overwrite_the_folder_holding_the_fakes(tmp):
    """An earlier scoring folder (same verb) that holds the images now scored: read, so never replaced."""
    old = tmp / "runs" / "old"
    old.mkdir(parents=True)
    (old / "config.yaml").write_text("run: {name: old}\n")
    (old / "environment.json").write_text('{"verb": "generated"}\n')
    rng = np.random.default_rng(0)
    np.savez(old / "fakes.npz", images=rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8))
    return _score(tmp, old / "fakes.npz", "--name", "old", "--overwrite")


def overwrite_a_gan_run_by_training_a_classifier(tmp):
    _copy_run("gan", tmp, "shared")
    return ["train", "classifier", "--config", TINY, "--name", "shared", "--overwrite", _runs(tmp)]


def embed_overwrite_of_a_foreign_layer_folder(tmp):
    """`embed --out X --overwrite` where X/penultimate is the user's own folder, not embeddings."""
    (tmp / "mine" / "penultimate").mkdir(parents=True)
    (tmp / "mine" / "penultimate" / "notes.txt").write_text("my notes")
    return ["embed", str(_copy_run("classifier", tmp)), "--out", str(tmp / "mine"), "--overwrite", "--no-analysis"]


def pretrained_file_of_another_architecture(tmp):
    """A torchvision ResNet-18 state dict given to a MobileNet (issue 33): one line, before any run directory."""
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp / "resnet18.pth")
    return ["train", "classifier", str(_folder(tmp)), _runs(tmp), "model.name=tv:mobilenet_v3_small",
            f"model.pretrained_path={tmp / 'resnet18.pth'}", "data.image_size=32"]


def config_value_nan(tmp):
    return ["train", "classifier", "--config", TINY, "train.lr=nan", _runs(tmp)]


def config_file_value_inf(tmp):
    (tmp / "inf.yaml").write_text("gan: {guidance_weight: .inf}\n")
    return ["train", "gan", "--config", str(tmp / "inf.yaml"), _runs(tmp)]


def yaml_billion_laughs(tmp):
    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    (tmp / "laughs.yaml").write_text("\n".join(rows) + "\n")
    return ["train", "classifier", "--config", str(tmp / "laughs.yaml"), _runs(tmp)]


def config_is_dev_zero(tmp):
    return ["train", "classifier", "--config", "/dev/zero", _runs(tmp)]


def run_name_with_a_newline(tmp):
    return ["data", "inspect", "digits", "--name", "two\nlines", _runs(tmp)]


def evaluator_is_a_gan_run(tmp):
    gan = _copy_run("gan", tmp)
    return ["evaluate", "generated", "--evaluator", str(gan), "--fake", str(gan), "--no-cas", _runs(tmp)]


def broken_generator_model_config(tmp):
    gan = _copy_run("gan", tmp)
    (gan / "generator_ema.json").write_text("{not json")
    return ["sample", str(gan), "--out", str(tmp / "out")]


def pickle_in_the_condition_bank(tmp):
    import pickle

    gan = _copy_run("gan-embedding", tmp)
    (gan / "conditions.safetensors").write_bytes(pickle.dumps({"class_means": [1.0, 2.0]}))
    return ["sample", str(gan), "--out", str(tmp / "out")]


def pickle_in_the_generator_weights(tmp):
    import pickle

    gan = _copy_run("gan", tmp)
    (gan / "generator_ema.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    return ["sample", str(gan), "--out", str(tmp / "out")]


# Cases that succeed but must say something: exit 0, the fragment on stderr or stdout, no traceback,
# nothing saved before changed. (case → (fragment that must appear, fragment that must not))


def symlink_to_etc_in_a_class_folder(tmp):
    root = _folder(tmp)
    (root / "cat" / "etc").symlink_to("/etc", target_is_directory=True)
    return ["data", "inspect", str(root), "--name", "inspected", _runs(tmp)]


def symlinked_file_among_the_fakes(tmp):
    rng = np.random.default_rng(0)
    for i in range(40):
        write_image(tmp / "fake" / f"{i}.png", rng, size=(8, 8), mode="L", base=100)
    (tmp / "fake" / "linked.png").symlink_to(tmp / "fake" / "0.png")
    return _score(tmp, tmp / "fake")


def blank_images_to_score(tmp):
    np.savez(tmp / "black.npz", images=np.zeros((40, 1, 8, 8), np.uint8))
    return _score(tmp, tmp / "black.npz")


def resume_past_a_pickled_checkpoint(tmp):
    """The newest state file holds pickled code: skipped with a warning that never says weights_only=False."""
    import pickle

    run = _interrupted_run(tmp)
    (run / "checkpoints" / "state-99999.pt").write_bytes(pickle.dumps({"model": {"weight": 1}}))
    return ["train", "classifier", "--resume", str(run)]


# case → (what must be said, what must not be said, the one saved folder the command may change: a resume
# continues its run, and nothing else may change)
WARNING_CASES = {symlink_to_etc_in_a_class_folder: ("cat/etc: symlink to a folder outside the data folder", "/etc/",
                                                    None),
                 symlinked_file_among_the_fakes: ("warning: 1 symlink(s)", "Traceback", None),
                 blank_images_to_score: ("warning: 40 of 40 generated images are constant", "Traceback", None),
                 resume_past_a_pickled_checkpoint: ("could run code", "weights_only=False", "runs/trained/")}


CASES = [missing_path, empty_folder, class_without_images, class_too_small_for_split, corrupt_file_in_strict_mode,
         source_is_a_file, torchvision_files_missing, unknown_config_key, wrong_config_type, missing_config_file,
         malformed_yaml, unknown_model_name, bad_option_value, existing_run_name, evaluate_missing_run,
         evaluate_empty_directory, evaluate_run_of_another_stage, evaluate_bad_split, evaluate_truncated_weights,
         resume_after_data_changed, resume_with_overrides, resume_without_checkpoints, resume_finished_classifier,
         embed_image_corrupted_after_training, corrupt_image_among_images_to_score, resume_finished_evaluator,
         resume_evaluator_from_run_of_another_stage, batch_size_zero, batch_size_negative, negative_learning_rate,
         momentum_out_of_range, val_fraction_too_large_on_a_split_folder, val_fraction_too_large_on_a_flat_folder,
         cache_dir_is_a_file, cache_under_a_file, file_linked_into_two_classes, folder_linked_into_train_and_test,
         evaluate_empty_test_split, resume_with_a_source, image_size_too_small, threads_zero,
         positional_source_missing, evaluate_unfinished_run, embed_unfinished_run,
         overwrite_the_gan_run_being_scored, overwrite_a_trained_gan_run_by_scoring, overwrite_the_evaluator_being_used,
         overwrite_the_folder_holding_the_fakes, overwrite_a_gan_run_by_training_a_classifier,
         embed_overwrite_of_a_foreign_layer_folder, pretrained_file_of_another_architecture, config_value_nan,
         config_file_value_inf, yaml_billion_laughs, config_is_dev_zero, run_name_with_a_newline,
         evaluator_is_a_gan_run, broken_generator_model_config, pickle_in_the_condition_bank,
         pickle_in_the_generator_weights]

CASES += PIPELINE_CASES + SAMPLE_CASES  # issue 37: the pipeline's folders, and `visrep sample`
CASES += HYGIENE_CASES  # issue 33: copies across splits, unreadable EXIF, a policy typo

# Cases whose one line must name the file at fault (a corrupt image is useless to report without it).
MUST_NAME = {embed_image_corrupted_after_training: "images/cat/003.png", corrupt_image_among_images_to_score: "fake/2.png",
             broken_generator_model_config: "generator_ema.json", pickle_in_the_condition_bank: "conditions.safetensors",
             evaluator_is_a_gan_run: "is a 'gan' run", config_is_dev_zero: "not a regular file",
             overwrite_the_gan_run_being_scored: "reads", overwrite_the_evaluator_being_used: "reads",
             overwrite_the_folder_holding_the_fakes: "reads", run_name_with_a_newline: "control character",
             pretrained_file_of_another_architecture: "do not fit tv:mobilenet_v3_small",
             **SAMPLE_MUST_NAME, **HYGIENE_MUST_NAME}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the state a failing command must not change)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
