"""Reads the real MNIST and CIFAR-10 archives from ../shared/data (a subset, to stay fast)."""

import tarfile
from pathlib import Path

import numpy as np
import pytest

from visrep.data.prepare import prepare_data
from conftest import SHARED_DATA


def _extract_subset(archive: Path, dest: Path, per_class: int) -> Path:
    """Unpack the first ``per_class`` files of each split/class folder (streaming through the tar)."""
    taken: dict[str, int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder = str(Path(member.name).parent)
            if taken.get(folder, 0) < per_class:
                taken[folder] = taken.get(folder, 0) + 1
                tar.extract(member, dest, filter="data")
    return dest / Path(archive.name.split(".")[0])


@pytest.mark.parametrize("name, channels, classes", [("mnist", 1, [str(d) for d in range(10)]),
                                                     ("cifar10", 3, ["airplane", "automobile", "bird", "cat", "deer",
                                                                     "dog", "frog", "horse", "ship", "truck"])])
def test_real_archive_subset_loads(tmp_path, data_cfg, name, channels, classes):
    archive = SHARED_DATA / f"{name}.tar.gz"
    if not archive.is_file():
        pytest.skip(f"real archive {archive} not present (it ships in ../shared/data beside the repository)")
    root = _extract_subset(archive, tmp_path, per_class=20)
    data = prepare_data(data_cfg(root, image_size=32, val_fraction=0.25))
    assert data.class_names == classes
    assert data.image_shape == (channels, 32, 32)
    assert data.manifest["counts"]["test"] == {c: 20 for c in classes}
    assert data.manifest["counts"]["val"] == {c: 5 for c in classes}
    assert not data.manifest["skipped"]
    pixels = np.asarray(data.splits["train"].images).astype(float)
    assert 10 < pixels.mean() < 200 and pixels.std() > 20  # real pictures, not blanks
