"""Near-duplicates in a real photo folder: flowers17 from ../shared/data (slow: trains a classifier, ~30 s).

The archive's README names three same-class pairs that are the same photo (Snowdrop 0090/0100, TigerLily
0484/0498, LilyValley 0188/0196); the embedding also finds Fritillary 0646/0679, a crop the README does not
list. `visrep train classifier FOLDER data.image_size=32 train.epochs=5`, then `visrep embed`, as in README.
"""

import json
import tarfile

import pytest

from conftest import SHARED_DATA
from visrep.cli import main

KNOWN = {frozenset({"Snowdrop/image_0090.jpg", "Snowdrop/image_0100.jpg"}),
         frozenset({"TigerLily/image_0484.jpg", "TigerLily/image_0498.jpg"}),
         frozenset({"LilyValley/image_0188.jpg", "LilyValley/image_0196.jpg"}),
         frozenset({"Fritillary/image_0646.jpg", "Fritillary/image_0679.jpg"})}  # the unlisted crop


@pytest.mark.slow(reason="trains a classifier on flowers17's photos, ~30 s (skipped without ../shared/data)")
def test_flowers17_copies_are_found_in_or_across_splits(tmp_path, monkeypatch, capsys):
    archive = SHARED_DATA / "flowers17.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not present (it ships in ../shared/data beside the repository)")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    assert main(["train", "classifier", str(tmp_path / "flowers17"), "--name", "f17", f"run.root={tmp_path}/runs",
                 "data.image_size=32", "train.epochs=5"]) == 0
    assert main(["embed", str(tmp_path / "runs" / "f17")]) == 0
    assert "Near-duplicates at penultimate" in capsys.readouterr().out
    found = json.loads((tmp_path / "runs" / "f17" / "embeddings" / "penultimate" / "near_duplicates.json").read_text())
    pairs = found["cross_split"]["pairs"] + found["within_train"]["pairs"]
    assert {frozenset({pair["id"], pair["train_id"]}) for pair in pairs} == KNOWN
    # the seeded split (data.seed 0) puts LilyValley 0188 in val and Fritillary 0646 in test: those two leak
    assert {pair["id"] for pair in found["cross_split"]["pairs"]} == {"LilyValley/image_0188.jpg",
                                                                      "Fritillary/image_0646.jpg"}
