"""Loading images to score: folders, .npz layouts, generator runs, and the hash contract."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.errors import UserError
from visrep.evaluation.fake_sources import TargetFormat, load_image_set
from visrep.inference.independence import check_independent, state_dict_sha256
from visrep.evaluation.real_sources import parse_real_spec

TARGET = TargetFormat(image_size=8, channels=1, resize="crop", class_names=tuple(str(i) for i in range(10)))


def _images(n=6, size=8, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size)).astype(np.uint8)


def test_npz_nchw_with_labels_and_ids(tmp_path):
    images = _images()
    ids = np.array([f"id{i}" for i in range(6)])
    np.savez(tmp_path / "s.npz", images=images, labels=np.arange(6), condition_ids=ids)
    loaded = load_image_set(tmp_path / "s.npz", TARGET, progress=False)
    assert torch.equal(loaded.images, torch.from_numpy(images))
    assert loaded.labels.tolist() == list(range(6)) and loaded.condition_ids[2] == "id2"
    assert loaded.declared_hashes is None


def test_npz_guided_diffusion_layout_is_converted(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)  # NHWC, twice the size
    np.savez(tmp_path / "adm.npz", rgb, np.array([1, 2, 3, 4]))  # arr_0, arr_1
    loaded = load_image_set(tmp_path / "adm.npz", TARGET, progress=False)
    assert loaded.images.shape == (4, 1, 8, 8) and loaded.images.dtype == torch.uint8
    assert loaded.labels.tolist() == [1, 2, 3, 4]


def test_npz_class_name_labels_and_grayscale_hw(tmp_path):
    np.savez(tmp_path / "g.npz", images=_images()[:, 0], labels=np.array(["3"] * 6))
    loaded = load_image_set(tmp_path / "g.npz", TARGET, progress=False)
    assert loaded.images.shape == (6, 1, 8, 8) and set(loaded.labels) == {3}


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, 1, 8, 8), np.float32)}, "uint8"),
    ({"pictures": np.zeros((2, 1, 8, 8), np.uint8)}, "no 'images'"),
    ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.array([0, 12])}, "class indices"),
    ({"images": np.zeros((2, 1, 8, 8), np.uint8), "labels": np.array(["cat", "3"])}, "unknown class"),
])
def test_bad_npz_is_a_user_error(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        load_image_set(tmp_path / "bad.npz", TARGET, progress=False)


def _write_png(path, rng, size=8, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode=mode).save(path)


def test_folder_with_class_subfolders_and_conditions(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("3", "7"):
        for i in range(2):
            _write_png(tmp_path / "gen" / name / f"{i}.png", rng, size=12, mode="RGB")
    (tmp_path / "gen" / "conditions.json").write_text(json.dumps(
        {f"{c}/{i}.png": f"digits/{c}{i}" for c in ("3", "7") for i in range(2)}))
    loaded = load_image_set(tmp_path / "gen", TARGET, progress=False)
    assert loaded.images.shape == (4, 1, 8, 8)
    assert loaded.labels.tolist() == [3, 3, 7, 7]
    assert loaded.condition_ids == ["digits/30", "digits/31", "digits/70", "digits/71"]


def test_flat_folder_has_no_labels_and_corrupt_file_is_named(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        _write_png(tmp_path / "flat" / f"{i}.png", rng)
    assert load_image_set(tmp_path / "flat", TARGET, progress=False).labels is None
    (tmp_path / "flat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_image_set(tmp_path / "flat", TARGET, progress=False)


def test_generator_run_must_declare_its_networks(tmp_path):
    run = tmp_path / "gan"
    run.mkdir()
    np.savez(run / "samples.npz", images=_images())
    (run / "generator.json").write_text(json.dumps({"description": "no hashes"}))
    with pytest.raises(UserError, match="conditioning_weights_sha256"):
        load_image_set(run, TARGET, progress=False)
    (run / "generator.json").write_text(json.dumps({"conditioning_weights_sha256": ["ab" * 32],
                                                    "conditioning_run": "runs/clf"}))
    loaded = load_image_set(run, TARGET, progress=False)
    assert loaded.declared_hashes == ["ab" * 32] and loaded.conditioning_run == "runs/clf"
    assert loaded.source["kind"] == "generator"


def test_weights_hash_ignores_storage_but_not_values(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    state = model.state_dict()
    torch.save(state, tmp_path / "w.pt")
    reloaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert state_dict_sha256(state) == state_dict_sha256(dict(reversed(list(reloaded.items()))))
    reloaded["0.weight"] = reloaded["0.weight"] + 1e-6
    assert state_dict_sha256(state) != state_dict_sha256(reloaded)


def test_check_independent_refuses_a_declared_evaluator_hash():
    hashes = {"tensors": "aa" * 32, "file": "bb" * 32}
    check_independent(hashes, ["cc" * 32], "gen")
    check_independent(hashes, None, "gen")
    with pytest.raises(UserError, match="refusing"):
        check_independent(hashes, ["BB" * 32], "gen")


def test_real_spec_parsing():
    assert parse_real_spec("test") == (None, "test")
    assert parse_real_spec("mnist:val") == ("mnist", "val")
    assert parse_real_spec("/data/folder") == ("/data/folder", "test")
    with pytest.raises(UserError, match="held-out"):
        parse_real_spec("mnist:train")


def test_images_converted_to_the_evaluators_format_are_marked(tmp_path):
    rgb32 = TargetFormat(image_size=32, channels=3, resize="crop", class_names=TARGET.class_names)
    np.savez(tmp_path / "grey28.npz", images=np.zeros((4, 1, 28, 28), np.uint8))
    converted = load_image_set(tmp_path / "grey28.npz", rgb32, progress=False)
    assert converted.images.shape == (4, 3, 32, 32) and converted.source["converted_from"] == [1, 28, 28]
    np.savez(tmp_path / "as_is.npz", images=np.zeros((4, 3, 32, 32), np.uint8))
    assert "converted_from" not in load_image_set(tmp_path / "as_is.npz", rgb32, progress=False).source
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(folder / f"{i}.png")
    assert load_image_set(folder, rgb32, progress=False).source["converted_from"] == [1, 28, 28]
