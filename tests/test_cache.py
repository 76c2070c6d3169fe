import os

import numpy as np

from visrep.data.cache import decode_folder
from visrep.data.folders import scan_folder
from conftest import make_folder, write_image


def _decode(root, cache_dir, size=8):
    scan = scan_folder(root)
    return decode_folder(scan.root, scan.files, size, 3, "crop", cache_dir, progress=False)


def test_second_decode_is_a_cache_hit_with_identical_pixels(tiny_folder, cache_dir):
    first = _decode(tiny_folder, cache_dir)
    second = _decode(tiny_folder, cache_dir)
    assert not first.hit and second.hit
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    assert first.images.shape == (30, 3, 8, 8) and first.images.dtype == np.uint8


def test_other_size_is_a_miss(tiny_folder, cache_dir):
    _decode(tiny_folder, cache_dir, size=8)
    assert not _decode(tiny_folder, cache_dir, size=10).hit


def test_edited_added_or_removed_file_invalidates(tiny_folder, cache_dir):
    before = _decode(tiny_folder, cache_dir)
    target = tiny_folder / "cat" / "000.png"
    write_image(target, np.random.default_rng(99), base=250)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a clearly newer mtime
    edited = _decode(tiny_folder, cache_dir)
    assert not edited.hit
    assert not np.array_equal(np.asarray(before.images[0]), np.asarray(edited.images[0]))
    write_image(tiny_folder / "cat" / "new.png", np.random.default_rng(1))
    assert not _decode(tiny_folder, cache_dir).hit
    (tiny_folder / "cat" / "new.png").unlink()
    assert _decode(tiny_folder, cache_dir).hit  # back to the edited state, which is cached


def test_decoded_pixels_match_pil(tmp_path, cache_dir):
    from PIL import Image

    root = make_folder(tmp_path / "f", per_class=2, size=(8, 8))
    decoded = _decode(root, cache_dir)
    expected = np.asarray(Image.open(root / "cat" / "000.png").convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(np.asarray(decoded.images[0]), expected)
