import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from visrep.cli import main
from visrep.data.prepare import prepare_data
from conftest import make_folder


def test_inspect_writes_a_complete_run_directory(tmp_path, tiny_folder, capsys):
    runs = tmp_path / "runs"
    argv = ["data", "inspect", str(tiny_folder), f"run.root={runs}", f"data.cache_dir={tmp_path}/c", "--name", "one"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "skipped files: 0" in out
    run = runs / "one"
    for name in ("config.yaml", "environment.json", "seed.txt", "log.txt", "manifest.json", "normalization.json"):
        assert (run / name).is_file(), name
    env = json.loads((run / "environment.json").read_text())
    assert env["torch"] == torch.__version__
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["classes"] == ["cat", "dog", "owl"] and len(manifest["items"]) == 30


def test_existing_run_is_not_overwritten_unless_asked(tmp_path, tiny_folder, capsys):
    argv = ["data", "inspect", str(tiny_folder), f"run.root={tmp_path}/runs", "--name", "r"]
    assert main(argv) == 0
    marker = tmp_path / "runs" / "r" / "mine.txt"
    marker.write_text("precious")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert marker.read_text() == "precious"
    assert main(argv + ["--overwrite"]) == 0
    assert not marker.exists()


def test_same_folder_and_seed_give_byte_identical_manifest(tmp_path, tiny_folder):
    paths = []
    for name in ("a", "b"):
        assert main(["data", "inspect", str(tiny_folder), f"run.root={tmp_path}/runs", "--name", name]) == 0
        paths.append(tmp_path / "runs" / name / "manifest.json")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert main(["data", "inspect", str(tiny_folder), f"run.root={tmp_path}/runs", "--name", "c", "data.seed=1"]) == 0
    other = json.loads((tmp_path / "runs" / "c" / "manifest.json").read_text())
    assert other["hash"] != json.loads(paths[0].read_text())["hash"]


def test_split_layout_is_respected_and_val_carved_from_train(tmp_path, data_cfg):
    root = tmp_path / "split"
    make_folder(root / "train", per_class=10)
    make_folder(root / "test", per_class=4, seed=1)
    data = prepare_data(data_cfg(root, val_fraction=0.2))
    items = data.manifest["items"]
    assert all(item["split"] == "test" for item in items if item["id"].startswith("test/"))
    assert {item["split"] for item in items if item["id"].startswith("train/")} == {"train", "val"}
    assert data.manifest["counts"]["val"] == {"cat": 2, "dog": 2, "owl": 2}


def test_digits_end_to_end_with_standard_dataloader(data_cfg):
    data = prepare_data(data_cfg("digits", image_size=16))
    assert sum(len(s) for s in data.splits.values()) == 1797
    train = data.splits["train"]
    images, labels = next(iter(DataLoader(train, batch_size=32, shuffle=False)))
    assert images.shape == (32, 1, 16, 16) and images.dtype == torch.float32
    fast_images, fast_labels = next(iter(data.loader("train", 32)))
    assert torch.allclose(images, fast_images) and torch.equal(labels, fast_labels)
    assert abs(float(torch.cat([b for b, _ in data.loader("train", 256)]).mean())) < 1e-3  # normalised on train


def test_streaming_from_disk_equals_in_memory(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f", per_class=12)
    in_memory = prepare_data(data_cfg(root, in_memory=True))
    streamed = prepare_data(data_cfg(root, in_memory=False))
    assert in_memory.splits["train"].in_memory and not streamed.splits["train"].in_memory
    for split in ("train", "val", "test"):
        mem = torch.cat([x for x, _ in in_memory.loader(split, 5)])
        disk = torch.cat([x for x, _ in DataLoader(streamed.splits[split], batch_size=5, num_workers=2)])
        assert torch.equal(mem, disk)


def test_training_loader_is_seeded_shuffled_and_sharded(data_cfg):
    from visrep.config import AugmentConfig

    data = prepare_data(data_cfg("digits"))
    augment = AugmentConfig(flip=True, translate=1)
    first = [y for _, y in data.loader("train", 64, train=True, augment=augment, seed=1)]
    again = [y for _, y in data.loader("train", 64, train=True, augment=augment, seed=1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat(first), data.splits["train"].labels)  # shuffled
    shards = [torch.cat([y for _, y in data.loader("train", 64, train=True, seed=1, rank=r, world_size=2)])
              for r in range(2)]
    assert abs(len(shards[0]) - len(shards[1])) == 0
    assert len(shards[0]) + len(shards[1]) >= len(data.splits["train"])
