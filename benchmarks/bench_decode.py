"""Decode speed on multi-megapixel JPEG photos (issue 33): the decode as it was, against JPEG draft decoding.

    python benchmarks/bench_decode.py --out benchmarks/results/decode_speed.json [--photos 40] [--rounds 3] [--size 64]

Photos: the first ``--photos`` JPEGs of flowers17 (read straight from ../shared/data/flowers17.tar.gz),
upscaled (bicubic) to about 12 megapixels and saved as quality-90 JPEGs in a temporary folder, like
a phone's photos. Both paths decode each photo to ``--size`` px, 3 channels, centre crop:

- old: the decoder before issue 33, rebuilt from the project's own parts: open, full decode, then
  ``to_channels`` and ``resize_square`` (what ``decode_to_array`` did);
- new: ``visrep.data.images.decode_image`` as the cache calls it: draft reduction, EXIF orientation,
  frame count and the pixel hash included.

Each round decodes every photo with both paths, alternating which goes first (photo by photo, and
from round to round), so a busy machine slows both alike; images/s per path and round is the photo
count over that path's summed time, and the median over rounds is reported. The speed-up, and the
mean absolute difference between the two outputs (levels of 255: draft decoding changes pixels
slightly), are computed here. The 1-minute load average is recorded: another job on the machine
slows every figure, the ratio less. Upscaled photos are smoother than a camera's, so their files are
several times smaller (``photo_file_mb_median``): entropy decoding, which a draft does not shorten,
weighs less in them, and the speed-up on camera photos is likely lower.

``draft_gap``: on the archive's own photos (about 500 px, as they are in the archive), the mean
absolute difference from a full decode when the draft keeps each side at least 1× or 2× the output
size (``visrep.data.images.DRAFT_GAP``; 2 is used): why the reduction stops at twice the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, report_json  # noqa: E402

from visrep.data import images  # noqa: E402
from visrep.data.images import decode_image, resize_square, to_channels  # noqa: E402
from visrep.runs import cpu_name  # noqa: E402

TARGET_PIXELS = 12_000_000  # about a 12 MP phone photo


def old_decode(path: Path, size: int, channels: int) -> np.ndarray:
    """The decode before issue 33: everything at full size, as stored."""
    with Image.open(path) as img:
        img.load()
        img = img.copy() if img.mode != "P" else img.convert("RGBA")
    array = np.asarray(resize_square(to_channels(img, channels), size, "crop"), dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def new_decode(path: Path, size: int, channels: int) -> np.ndarray:
    return decode_image(path, size, channels, "crop").array


def make_photos(folder: Path, count: int) -> tuple[list[Path], list[Path]]:
    """(the first ``count`` flowers17 JPEGs upscaled to about 12 MP and saved at quality 90, the same
    JPEGs as they are in the archive)."""
    photos, originals = [], []
    with tarfile.open(SHARED_DATA / "flowers17.tar.gz", "r:gz") as tar:
        for member in tar:
            if len(photos) == count:
                break
            if member.isfile() and member.name.lower().endswith(".jpg"):
                originals.append(folder / f"original{len(originals):03d}.jpg")
                originals[-1].write_bytes(tar.extractfile(member).read())
                with Image.open(originals[-1]) as small:
                    scale = (TARGET_PIXELS / (small.width * small.height)) ** 0.5
                    big = small.convert("RGB").resize((round(small.width * scale), round(small.height * scale)),
                                                      Image.Resampling.BICUBIC)
                photos.append(folder / f"photo{len(photos):03d}.jpg")
                big.save(photos[-1], quality=90)
    return photos, originals


def difference(path: Path, size: int, reference) -> float:
    """Mean absolute difference (levels) of the project's decode from ``reference(path, size, 3)``."""
    return float(np.abs(new_decode(path, size, 3).astype(np.float32) - reference(path, size, 3)).mean())


def draft_gap_differences(paths: list[Path], size: int) -> dict:
    """How far the draft decode is from a full decode when it keeps 1× or 2× the output size."""
    chosen, figures = images.DRAFT_GAP, {}
    try:
        for gap in (1, 2):
            images.DRAFT_GAP = gap
            values = [difference(path, size, full_decode) for path in paths]
            figures[f"gap_{gap}"] = {"mean": round(statistics.mean(values), 3),
                                     "max_over_photos": round(max(values), 3)}
    finally:
        images.DRAFT_GAP = chosen
    return figures


def full_decode(path: Path, size: int, channels: int) -> np.ndarray:
    return decode_image(path, size, channels, "crop", draft=False).array


def time_round(paths: list[Path], size: int, flip: bool) -> dict[str, float]:
    """Seconds per path for one pass over the photos, the two paths alternating which goes first."""
    seconds = {"old": 0.0, "new": 0.0}
    for index, path in enumerate(paths):
        order = ("old", "new") if (index % 2 == 0) != flip else ("new", "old")
        for name in order:
            start = time.perf_counter()
            (old_decode if name == "old" else new_decode)(path, size, 3)
            seconds[name] += time.perf_counter() - start
    return seconds


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _megapixels(path: Path) -> float:
    width, height = _size(path)
    return width * height / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="output side in pixels")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="visrep-bench-decode-") as folder:
        paths, originals = make_photos(Path(folder), args.photos)
        megapixels = [_megapixels(path) for path in paths]
        file_mb = [path.stat().st_size / 1e6 for path in paths]
        rounds = [time_round(paths, args.size, flip=bool(r % 2)) for r in range(args.rounds)]
        differences = [difference(path, args.size, old_decode) for path in paths]
        reductions = Counter(decode_image(path, args.size, 3).reduced for path in paths)
        gaps = draft_gap_differences(originals, args.size)
        original_sides = [min(_size(path)) for path in originals]
    rates = {name: [len(paths) / r[name] for r in rounds] for name in ("old", "new")}
    old_rate, new_rate = statistics.median(rates["old"]), statistics.median(rates["new"])
    speedup = new_rate / old_rate
    report_json({
        "goal": "Decode speed on multi-megapixel JPEGs", "issue": 33, "order": 16,
        "target": "before/after images/s decoding 12 MP JPEGs to a small training size (no numeric target)",
        "met": None, "headline": f"{new_rate:.1f} vs {old_rate:.1f} images/s at {args.size} px: {speedup:.1f}x with "
                                 f"JPEG draft reduction; outputs differ by {statistics.mean(differences):.2f} grey "
                                 f"levels on average",
        "host": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), load average "
                f"{load_before:.1f} before",
        "date": time.strftime("%Y-%m-%d"), "commit": None, "seeds": None,
        "tables": [{"columns": [{"key": "path", "label": "decode path"}, {"key": "rate", "label": "images/s (median)"},
                                {"key": "rounds", "label": "per round"}],
                    "rows": [{"path": name, "rate": round(statistics.median(values), 2),
                              "rounds": " / ".join(f"{rate:.2f}" for rate in values)}
                             for name, values in (("full decode (before)", rates["old"]),
                                                  ("draft reduction (after)", rates["new"]))]}],
        "benchmark": "decode speed on multi-megapixel JPEGs (issue 33): full decode vs JPEG draft reduction",
        "command": "python benchmarks/bench_decode.py " + " ".join(sys.argv[1:]),
        "photos": len(paths), "rounds": args.rounds, "output_px": args.size, "channels": 3, "resize": "crop",
        "photo_megapixels_median": round(statistics.median(megapixels), 2),
        "photo_file_mb_median": round(statistics.median(file_mb), 2),
        "old_images_per_s": round(old_rate, 2), "new_images_per_s": round(new_rate, 2),
        "speedup": round(new_rate / old_rate, 2),
        "images_per_s_by_round": {name: [round(rate, 2) for rate in values] for name, values in rates.items()},
        "mean_abs_difference_levels": {"mean": round(statistics.mean(differences), 3),
                                       "max_over_photos": round(max(differences), 3)},
        "draft_reduction_counts": {f"1/{scale}": n for scale, n in sorted(reductions.items())},
        "draft_gap": {"photos": "the archive's own JPEGs, short side median "
                                f"{statistics.median(original_sides):g} px, against a full decode at the same output",
                      **gaps, "used": images.DRAFT_GAP},
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(), "pillow": PIL.__version__,
    }, args.out)


if __name__ == "__main__":
    main()
