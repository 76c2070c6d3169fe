import numpy as np
import pytest

from visrep.data.splits import carve_split, stratified_split
from visrep.errors import UserError

CLASSES = ["a", "b", "c"]


def _labels():
    return np.repeat(np.arange(3), [50, 30, 20])


def test_split_is_stratified_and_covers_every_item():
    splits = stratified_split(_labels(), CLASSES, 0.1, 0.2, seed=0)
    labels = _labels()
    for label, n in enumerate([50, 30, 20]):
        members = splits[labels == label]
        assert (members == "test").sum() == round(n * 0.2)
        assert (members == "val").sum() == round(n * 0.1)
        assert (members == "train").sum() == n - round(n * 0.2) - round(n * 0.1)


def test_split_is_deterministic_per_seed_and_changes_with_seed():
    first = stratified_split(_labels(), CLASSES, 0.1, 0.2, seed=3)
    again = stratified_split(_labels(), CLASSES, 0.1, 0.2, seed=3)
    other = stratified_split(_labels(), CLASSES, 0.1, 0.2, seed=4)
    assert (first == again).all()
    assert (first != other).any()


def test_each_item_in_exactly_one_split():
    splits = stratified_split(_labels(), CLASSES, 0.15, 0.15, seed=1)
    assert set(splits) == {"train", "val", "test"}
    assert len(splits) == len(_labels())  # one assignment per item, so no item can sit in two splits


def test_class_too_small_names_the_class():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 10)
    with pytest.raises(UserError, match="class 'b' has only 2 image"):
        stratified_split(labels, CLASSES, 0.1, 0.2, seed=0)


def test_bad_fractions_rejected():
    with pytest.raises(UserError, match="fractions"):
        stratified_split(_labels(), CLASSES, 0.6, 0.5, seed=0)


def test_carve_val_from_train_keeps_test():
    labels = _labels()
    given = np.where(np.arange(len(labels)) % 5 == 0, "test", "train").astype(object)
    carved = carve_split(given, labels, CLASSES, "val", 0.2, seed=0)
    assert ((given == "test") == (carved == "test")).all()
    assert (carved == "val").sum() > 0
    for label in range(3):
        assert ((carved == "val") & (labels == label)).sum() > 0
