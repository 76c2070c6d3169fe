"""The CIFAR benchmark's work accounting: steps per phase (input size × which parameters train)."""

import sys
from pathlib import Path

from visrep.config import ClassifierConfig, load_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_classifier import ANCHOR_EPOCHS, ANCHOR_TRAIN_IMAGES, recipe_phases  # noqa: E402


def _config(path: str, *overrides: str):
    return load_config(REPO / path, list(overrides), schema=ClassifierConfig)


def test_anchor_takes_airbench94s_476_steps_three_of_its_epochs_with_the_stem_bias_training():
    anchor = _config("configs/cifar10_airbench94.yaml")
    phases = recipe_phases(anchor, ANCHOR_EPOCHS, ANCHOR_TRAIN_IMAGES // anchor.data.batch_size)
    assert phases == {(32, 0): 3 * 48, (32, 3): 476 - 3 * 48}  # 48 full batches of 1024 per epoch, ceil(9.9·48)


def test_phases_split_by_input_size_and_by_the_epochs_the_stem_bias_trains():
    ours = _config("configs/cifar10.yaml", "train.epochs=10", "data.augment.low_res_epochs=5")
    assert recipe_phases(ours, 10, 95) == {(24, 0): 3 * 95, (24, 3): 2 * 95, (32, 5): 5 * 95}
    frozen_from_start = _config("configs/cifar10.yaml", "model.options={whiten_bias_epochs: 0}")
    assert recipe_phases(frozen_from_start, 9, 95) == {(24, 0): 3 * 95, (32, 3): 6 * 95}


def test_a_model_without_early_only_parameters_has_one_phase_per_size():
    plain = _config("configs/cifar10.yaml", "model.name=fastcnn")
    assert recipe_phases(plain, 4, 10) == {(24, 0): 30, (32, 3): 10}
