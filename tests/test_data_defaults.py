"""Defaults that fit the folder (issue 33): the batch size from the training split's size, epochs enough
for the optimizer steps a from-scratch run needs, and no image left out of every epoch."""

from __future__ import annotations

import pytest
import yaml

from conftest import make_folder
from visrep.cli import main
from visrep.data.batching import default_batch_size, keeps_last_batch
from visrep.training.defaults import MIN_STEPS, default_epochs


def test_the_batch_is_about_a_twentieth_of_the_split_as_a_power_of_two_within_bounds():
    sizes = {n: default_batch_size(n)[0] for n in (10, 400, 476, 717, 1_006, 45_000, 54_000)}
    assert sizes == {10: 16, 400: 16, 476: 32, 717: 32, 1_006: 64, 45_000: 256, 54_000: 256}


def test_a_short_last_batch_is_kept_unless_it_is_a_sliver():
    assert keeps_last_batch(717, 256)  # 205 left: trained on (the old rule dropped 29 % of the folder)
    assert keeps_last_batch(640, 32)  # nothing left over
    assert not keeps_last_batch(100, 32)  # 4 left, under a quarter of a batch: dropped, rotating with the shuffle
    assert keeps_last_batch(100, 16)  # 4 left of a batch of 16: kept


def test_epochs_give_enough_steps_within_bounds():
    assert default_epochs(22)[0] == 37 and 37 * 22 >= MIN_STEPS > 36 * 22  # a 700-photo folder at batch 32
    assert default_epochs(211)[0] == 10  # MNIST at 256: the old ten epochs
    assert default_epochs(1)[0] == 60  # a handful of images: capped


def test_every_image_is_seen_over_a_few_epochs_when_a_sliver_is_dropped(data_cfg, tiny_folder):
    from visrep.data.prepare import prepare_data

    data = prepare_data(data_cfg(tiny_folder, val_fraction=0.0, test_fraction=0.0), progress=False)
    split, n = data.splits["train"], len(data.splits["train"])  # 30 images: batches of 14 leave a sliver of 2
    assert not keeps_last_batch(n, 14)
    rows_read, read = [], split.uint8_batch

    def recording(rows):
        rows_read.extend(int(row) for row in rows)
        return read(rows)

    split.uint8_batch = recording
    loader = data.loader("train", 14, train=True, drop_last=True)
    for epoch in range(4):
        loader.set_epoch(epoch)
        before = len(rows_read)
        for _ in loader:
            pass
        assert len(rows_read) - before == 28  # each epoch leaves 2 out ...
    assert set(rows_read) == set(range(n))  # ... never the same 4: the shuffle rotates them


def test_the_first_command_on_a_folder_derives_batch_and_epochs_says_so_and_saves_them(tmp_path, capsys, monkeypatch):
    from visrep.training import defaults

    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults, "MIN_EPOCHS", 1)  # the rule as it is, capped low: seconds, not 40 epochs
    monkeypatch.setattr(defaults, "MAX_EPOCHS", 3)
    folder = make_folder(tmp_path / "photos", per_class=12)
    assert main(["train", "classifier", str(folder), "--name", "first", f"run.root={tmp_path}/runs",
                 "train.threads=1"]) == 0
    out = capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "runs" / "first" / "config.yaml").read_text())
    assert f"data.batch_size not given: {saved['data']['batch_size']}" in out
    assert f"train.epochs not given: {saved['train']['epochs']}" in out
    assert saved["data"]["batch_size"] == 16 and saved["train"]["epochs"] == 3  # 25 images: 2 steps per epoch


def test_lr_find_sweeps_rates_geometrically_suggests_the_steepest_fall_and_trains_nothing(tmp_path, capsys):
    """`--lr-find`: a range test on the run's own model and batches; one suggestion line; a curve, no weights."""
    import json

    folder = make_folder(tmp_path / "photos", per_class=12)
    assert main(["train", "classifier", str(folder), "--lr-find", "--name", "probe", f"run.root={tmp_path}/runs",
                 "train.threads=1", "model.options.widths=[8,16,16]", "data.image_size=12"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    run = tmp_path / "runs" / "probe"
    test = json.loads((run / "lr_find.json").read_text())
    lrs = test["lrs"]
    assert all(later > earlier for earlier, later in zip(lrs, lrs[1:])) and lrs[0] == pytest.approx(1e-4)
    assert test["suggestion"] in lrs and len(test["losses"]) == len(lrs) == len(test["smoothed"])
    assert f"suggested train.lr={test['suggestion']:.3g}" in out
    assert (run / "lr_find.png").stat().st_size > 5_000
    assert not list(run.glob("*.safetensors")) and not (run / "metrics.json").exists()  # nothing trained for keeps
    assert main(["train", "classifier", "--resume", str(run), "--lr-find"]) == 2  # one line, not a traceback
    assert "does not go with --resume" in capsys.readouterr().err
    assert main(["train", "classifier", str(folder), "--lr-find", "train.optimizer=muon"]) == 2
    assert "train.muon_lr" in capsys.readouterr().err


def test_the_steepest_fall_is_found_on_a_known_curve():
    import numpy as np

    from visrep.training.lr_find import steepest

    lrs = list(np.geomspace(1e-4, 10, 60))
    smoothed = [2.0 - np.tanh(3 * (np.log10(lr) + 1.0)) for lr in lrs]  # falls fastest at lr 0.1
    smoothed[-5:] = [5.0] * 5  # and diverges at the end
    assert steepest(lrs, smoothed) == pytest.approx(0.1, rel=0.25)
