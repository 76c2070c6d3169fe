"""Each malformed-input case ends in one clear error line (exit code 2) or a documented skip."""

import os

import numpy as np
import pytest
from PIL import Image

from visrep.cli import main
from visrep.data.prepare import prepare_data
from visrep.errors import UserError
from conftest import make_folder, write_image


def _cli_error(capsys, argv) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_missing_path(capsys, tmp_path):
    line = _cli_error(capsys, ["data", "inspect", str(tmp_path / "nope"), f"run.root={tmp_path}/runs"])
    assert "not found" in line
    assert not (tmp_path / "runs").exists()  # nothing written for a failed command


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no class folders" in _cli_error(capsys, ["data", "inspect", str(tmp_path / "empty")])


def test_class_folder_without_images(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f")
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("no pictures here")
    with pytest.raises(UserError, match="class folder 'emu'.*has no images"):
        prepare_data(data_cfg(root))


def _add_junk(root):
    (root / "cat" / "readme.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    jpeg = root / "owl" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated JPEG
    os.symlink(root / "missing-target.png", root / "cat" / "dangling.png")  # unreadable file


def test_junk_files_are_skipped_counted_and_listed(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f")
    _add_junk(root)
    data = prepare_data(data_cfg(root, val_fraction=0.2, test_fraction=0.2))
    reasons = {entry["id"]: entry["reason"] for entry in data.manifest["skipped"]}
    assert set(reasons) == {"cat/readme.txt", "dog/broken.png", "owl/cut.jpg", "cat/dangling.png"}
    assert "truncated" in reasons["owl/cut.jpg"]
    assert "unreadable" in reasons["cat/dangling.png"]
    assert sum(len(split) for split in data.splits.values()) == 30


def test_strict_mode_turns_junk_into_an_error(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f")
    _add_junk(root)
    with pytest.raises(UserError, match=r"4 unusable file\(s\)"):
        prepare_data(data_cfg(root, strict=True))


def test_mixed_sizes_and_modes_all_become_configured_shape(tmp_path, data_cfg):
    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    modes = ["RGB", "RGBA", "L", "P", "I;16"]
    for label, name in enumerate(["a", "b"]):
        for i, mode in enumerate(modes * 2):
            size = (20 + 7 * i, 13 + 3 * i)
            write_image(root / name / f"{i}.png", rng, size=size, mode=mode, base=80 + 80 * label)
    (root / "a" / "cmyk.jpg").parent.mkdir(exist_ok=True)
    Image.new("CMYK", (9, 17), (0, 50, 100, 0)).save(root / "a" / "cmyk.jpg")
    for channels in (1, 3):
        data = prepare_data(data_cfg(root, image_size=16, channels=channels, val_fraction=0.2, test_fraction=0.2))
        assert data.image_shape == (channels, 16, 16)
        assert not data.manifest["skipped"]
        assert len(np.unique(data.source.original_sizes, axis=0)) > 5


def test_sixteen_bit_and_alpha_are_scaled_sensibly(tmp_path, data_cfg):
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(root / "a" / "white16.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(root / "b" / "transparent.png")
    for name in ("a", "b"):
        for i in range(3):
            Image.new("L", (8, 8), 0).save(root / name / f"black{i}.png")
    data = prepare_data(data_cfg(root, image_size=8, channels=1, val_fraction=0, test_fraction=0))
    pixels = {i: data.splits["train"].uint8_batch([k])[0] for k, i in enumerate(data.splits["train"].ids)}
    assert int(pixels["a/white16.png"].min()) == 255  # 16-bit full scale → 255, not clipped garbage
    assert int(pixels["b/transparent.png"].min()) == 255  # transparent → white background


def test_class_with_too_few_images_names_the_class(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f")
    write_image(root / "rare" / "only.png", np.random.default_rng(0))
    with pytest.raises(UserError, match="class 'rare' has only 1 image"):
        prepare_data(data_cfg(root))


def test_class_whose_every_image_is_corrupt(tmp_path, data_cfg):
    root = make_folder(tmp_path / "f")
    (root / "ghost").mkdir()
    (root / "ghost" / "x.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="class folder 'ghost'.*no readable images"):
        prepare_data(data_cfg(root))


def test_source_is_a_file_not_a_folder(capsys, tmp_path):
    target = tmp_path / "file.png"
    target.write_bytes(b"x")
    assert "not a folder" in _cli_error(capsys, ["data", "inspect", str(target)])


def test_bad_config_value_via_cli(capsys, tmp_path):
    line = _cli_error(capsys, ["data", "inspect", "digits", "data.image_size=huge"])
    assert "data.image_size" in line
    line = _cli_error(capsys, ["data", "inspect", "digits", "data.resize=squash"])
    assert "data.resize" in line


def test_torchvision_set_missing_files_is_a_clear_error(capsys, tmp_path):
    line = _cli_error(capsys, ["data", "inspect", "mnist", f"data.root={tmp_path}/none"])
    assert "MNIST files not found" in line and "data.download=true" in line


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "visrep", "data", "inspect", str(tmp_path / "absent")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
