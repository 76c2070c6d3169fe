"""The folder scan cannot leak, and says what it leaves out and what it carves (issue 18).

Each test here failed before the scan resolved symlinks and listed what it ignored: a link back to
the data folder was followed ~40 levels deep, a file linked into two classes got two labels, hidden
and stray files and nested folders went unmentioned, a test split carved from train/ was silent, and
``data.val_fraction=1.5`` passed on a train/val folder.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import make_folder, write_image
from visrep.data.folders import scan_folder
from visrep.data.inspect import format_summary, summarize
from visrep.data.prepare import prepare_data
from visrep.errors import UserError


def _reasons(manifest: dict) -> dict:
    return {entry["id"]: entry["reason"] for entry in manifest["skipped"]}


def _split_folder(tmp_path, splits=("train", "val")):
    root = tmp_path / "split"
    for seed, split in enumerate(splits):
        make_folder(root / split, classes=("cat", "dog"), per_class=10 if split == "train" else 4, seed=seed)
    return root


def test_symlink_loop_to_the_data_folder_is_not_followed_and_is_reported(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f", per_class=3)
    os.symlink("..", root / "cat" / "loop")  # the case: 121 images became 9,921
    assert len(scan_folder(root).files) == 9
    data = prepare_data(data_cfg(root), progress=False)
    assert sum(data.manifest["counts"]["train"].values()) + sum(data.manifest["counts"]["val"].values()) \
        + sum(data.manifest["counts"]["test"].values()) == 9
    assert _reasons(data.manifest)["cat/loop"] == "symlink loop to the data folder itself"


def test_deeper_loops_back_to_an_ancestor_are_reported(tmp_path):
    root = make_folder(tmp_path / "f", per_class=3)
    (root / "cat" / "a" / "b").mkdir(parents=True)
    os.symlink("../..", root / "cat" / "a" / "b" / "up")  # → cat
    os.symlink(".", root / "dog" / "self")
    scan = scan_folder(root)
    assert len(scan.files) == 9
    assert {entry["id"]: entry["reason"] for entry in scan.ignored} == {
        "cat/a/b/up": "symlink loop to cat", "dog/self": "symlink loop to dog"}


def test_file_linked_into_two_classes_is_an_error_naming_both(tmp_path):
    root = make_folder(tmp_path / "f", per_class=3)
    os.symlink("../cat/001.png", root / "dog" / "y.png")
    with pytest.raises(UserError, match=r"two classes: 'cat/001\.png' \(class 'cat'\) and 'dog/y\.png' "
                                        r"\(class 'dog'\)"):
        scan_folder(root)


def test_folder_linked_into_another_class_is_an_error_naming_both(tmp_path):
    root = make_folder(tmp_path / "f", per_class=3)
    os.symlink("../cat", root / "owl" / "more")
    with pytest.raises(UserError, match=r"two classes: 'cat' \(class 'cat'\) and 'owl/more' \(class 'owl'\)"):
        scan_folder(root)


def test_file_linked_into_two_splits_is_an_error(tmp_path):
    root = _split_folder(tmp_path, ("train", "test"))
    os.symlink("../../train/cat/002.png", root / "test" / "cat" / "peek.png")  # train image scored as test
    with pytest.raises(UserError, match=r"two splits: 'train/cat/002\.png' \(class 'cat' in train\) and "
                                        r"'test/cat/peek\.png' \(class 'cat' in test\)"):
        scan_folder(root)


def test_the_same_file_twice_in_one_class_counts_once(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f", per_class=4)
    os.symlink("000.png", root / "cat" / "a_link.png")  # sorts before its target: the real path is still kept
    (root / "dog" / "sub").mkdir()
    os.symlink("../002.png", root / "dog" / "sub" / "again.png")
    os.symlink("sub", root / "dog" / "sub_again")  # the same folder twice
    scan = scan_folder(root)
    assert len(scan.files) == 12 and len(set(scan.files)) == 12
    assert "cat/000.png" in scan.files and "cat/a_link.png" not in scan.files
    reasons = _reasons(prepare_data(data_cfg(root), progress=False).manifest)
    assert reasons["cat/a_link.png"] == "duplicate of cat/000.png"
    assert reasons["dog/sub/again.png"] == "duplicate of dog/002.png"
    assert reasons["dog/sub_again"] == "duplicate of dog/sub"


def test_nested_folders_are_taken_listed_and_shown_and_keep_the_hash(tmp_path, data_cfg):
    root = make_folder(tmp_path / "images", per_class=6)
    rng = np.random.default_rng(5)
    for i in range(2):
        write_image(root / "cat" / "extra" / f"n{i}.png", rng)
    data = prepare_data(data_cfg(root, val_fraction=0.1, test_fraction=0.2, seed=0), progress=False)
    assert data.manifest["source"]["nested_folders"] == ["cat/extra"]
    assert data.manifest["counts"]["train"]["cat"] + data.manifest["counts"]["val"]["cat"] \
        + data.manifest["counts"]["test"]["cat"] == 8  # still taken into the class, as documented
    assert "nested folders taken into their class: cat/extra" in format_summary(summarize(data))
    # The hash covers only classes and items, so listing the folder leaves it as the old scan made it.
    assert data.manifest["hash"] == "6f1a74635f3027e8d40e2479baa4d28d98b25cd4b2b12587e94a79be857d19a4"


def test_hidden_and_stray_entries_are_listed_but_not_strict_errors(tmp_path, data_cfg):
    root = _split_folder(tmp_path, ("train", "val", "test"))
    (root / "cat.png").write_bytes(b"x")  # at the root, in no class
    (root / "train" / "notes.txt").write_text("x")  # in a split folder, in no class
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0")
    (root / "val" / "dog" / ".thumbs").mkdir()
    (root / ".git").mkdir()
    data = prepare_data(data_cfg(root, strict=True), progress=False)  # nothing here is an image that failed
    assert _reasons(data.manifest) == {
        "cat.png": "not inside a class folder", "train/notes.txt": "not inside a class folder",
        "train/cat/.DS_Store": "hidden file", "val/dog/.thumbs": "hidden folder", ".git": "hidden folder"}
    assert "skipped files: 5" in format_summary(summarize(data))


def test_test_split_carved_from_train_is_recorded_and_announced(tmp_path, data_cfg):
    data = prepare_data(data_cfg(_split_folder(tmp_path), test_fraction=0.2), progress=False)
    assert data.manifest["carved"] == {"test": {"from": "train", "fraction": 0.2}}
    assert data.manifest["source"]["splits_given"] == ["train", "val"]
    assert data.manifest["counts"]["test"] == {"cat": 2, "dog": 2}
    assert "test split carved from train (data.test_fraction=0.2 of each class)" in format_summary(summarize(data))
    complete = prepare_data(data_cfg(_split_folder(tmp_path / "all", ("train", "val", "test"))), progress=False)
    assert "carved" not in complete.manifest
    assert "split carved from" not in format_summary(summarize(complete))


@pytest.mark.parametrize("fractions", [{"val_fraction": 1.5}, {"test_fraction": -0.1},
                                       {"val_fraction": 0.5, "test_fraction": 0.5}])
def test_fraction_bounds_are_the_same_for_every_layout(tmp_path, data_cfg, fractions):
    messages = []
    for root in (make_folder(tmp_path / "flat"), _split_folder(tmp_path, ("train", "val"))):
        with pytest.raises(UserError, match="split fractions must") as caught:
            prepare_data(data_cfg(root, **fractions), progress=False)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
