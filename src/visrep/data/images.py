"""Decode one image file into a uint8 array of the configured size and channel count.

Aspect ratio (``resize``):
- ``crop`` (default): scale so the short side equals ``size``, then centre-crop the long side.
  Nothing is distorted; a band at the long edges is lost.
- ``pad``: scale so the long side equals ``size``, then pad the short side with black.
- ``stretch``: scale each side to ``size`` independently (distorts non-square images).

Modes: grayscale (L, 1, I;16, I, F), palette (P), RGB, RGBA/LA (alpha composited onto white,
so transparent backgrounds look like paper rather than turning black) and CMYK are all
converted to the requested channel count (1 = luminance, 3 = RGB). 16- and 32-bit images are
scaled by their actual range of the format (65535 for 16-bit) down to 8 bits.

What a viewer does first, decoding does too:
- **EXIF orientation** (tag 0x0112, values 2-8: rotations and mirrorings) is applied with
  ``PIL.ImageOps.exif_transpose`` before resizing, so a phone's portrait photo is upright. An
  EXIF block that cannot be read (no TIFF structure, a damaged directory: anything that leaves the
  orientation unknown) does not stop the decode: the image is taken as stored, unrotated, and the
  problem is reported (``Decoded.exif_problem``) for the data layer to list, or to refuse under
  ``data.strict``. Warnings about other damaged tags do not count when the orientation was read.
- **Animations** (GIF, WebP, APNG with several frames) give their first frame; the frame count
  is reported (``Decoded.frames``).
- **Large JPEGs** are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (``Image.draft``)
  when the output is small, so a 12 MP photo bound for 64 px never exists at full size
  (benchmarks/bench_decode.py measures the speed). The reduction keeps both sides at least twice
  the output size (what Pillow's own ``thumbnail`` does), so the final bicubic resize, not the
  DCT's coarse scaling, shapes the result: asking for just the output size moved 500 px photos
  further from their full decode (the benchmark's ``draft_gap`` figures), and multi-megapixel
  photos are reduced 8× either way. The request is square, so it holds whichever way the stored
  image is turned; the output is cut and scaled from the full size's geometry, so it differs from
  a full decode only by the filtering. Other formats are always decoded at full size.

Each decode also returns ``pixel_hash``: a SHA-256 of the upright pixels in the file's own mode
(palette images as RGBA), tagged with that mode, the size and the draft reduction. Equal hashes
at reduction 1 mean identical full-size pixels, whatever the file format or bytes. A hash taken
after a draft reduction is provisional (two JPEGs that differ only in fine detail can decode
equal at 1/8), so the cache confirms any group of equal reduced hashes with ``full_size_pixel_hash``
before calling them copies; see ``visrep.data.cache``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
RESIZE_MODES = ("crop", "pad", "stretch")
ORIENTATION_TAG = 0x0112
TRANSFORMING_ORIENTATIONS = range(2, 9)  # 1 is "as stored"; 2-8 rotate and/or mirror
# where the stored top-left corner ends up, per EXIF orientation: on the right (2 mirrored, 3 upside down, 6 turned
# clockwise, 7 transverse) and at the bottom (3, 4 flipped, 7, 8 turned counter-clockwise); 5 transposes in place
ANCHORED_RIGHT, ANCHORED_BOTTOM = frozenset({2, 3, 6, 7}), frozenset({3, 4, 7, 8})
DRAFT_GAP = 2  # a draft keeps each side ≥ DRAFT_GAP × the output size (as PIL's thumbnail's reducing_gap)
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  Image.DecompressionBombWarning, Image.DecompressionBombError)


class ImageDecodeError(Exception):
    """A file that looks like an image but cannot be decoded (corrupt, truncated, unreadable)."""


@dataclass(frozen=True)
class Decoded:
    array: np.ndarray  # (channels, size, size) uint8
    size: tuple[int, int]  # width, height as viewed (EXIF orientation applied), before any reduction
    mode: str  # the file's pixel mode (palette images: RGBA)
    pixel_hash: str  # see the module docstring
    reduced: int  # JPEG draft reduction: 1 (full size), 2, 4 or 8
    orientation: int  # EXIF orientation 1-8 as read, 0 when absent or unreadable
    exif_problem: str | None  # why the EXIF block could not be read (the image is then not rotated)
    frames: int  # 1 for a still image


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: str | Path, size: int, channels: int, resize: str = "crop", draft: bool = True) -> Decoded:
    """Decode ``path`` upright (reduced by a JPEG draft when ``draft``) to (channels, size, size) uint8."""
    pixels, facts = _decode_upright(path, size if draft else None)
    box = _picture_box(pixels, facts["size"], facts["reduced"], facts["orientation"])
    array = np.asarray(resize_square(to_channels(pixels, channels), size, resize, facts["size"], box), dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return Decoded(np.ascontiguousarray(array), pixel_hash=pixel_hash(pixels, facts["reduced"]), **facts)


def decode_to_array(path: str | Path, size: int, channels: int, mode: str = "crop") -> tuple[np.ndarray, tuple[int, int], str]:
    """Decode ``path`` → (uint8 array (channels, size, size), original (width, height), original mode)."""
    decoded = decode_image(path, size, channels, mode)
    return decoded.array, decoded.size, decoded.mode


def full_size_pixel_hash(path: str | Path) -> str:
    """The pixel hash of ``path`` decoded at full size (no draft): the one that defines identical pixels."""
    pixels, _ = _decode_upright(path, None)
    return pixel_hash(pixels, 1)


def pixel_hash(img: Image.Image, reduced: int) -> str:
    # mode and size are hashed too: the same bytes read as L 12×8 and as RGB 4×8 are not the same image
    digest = hashlib.sha256(f"{img.mode} {img.size[0]}x{img.size[1]} 1/{reduced}\n".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()[:32]


def _decode_upright(path: str | Path, draft_size: int | None) -> tuple[Image.Image, dict]:
    """(the decoded first frame, upright; facts for ``Decoded``); any decode failure is ImageDecodeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # a damaged EXIF block is reported by exif_orientation, in the manifest: not also on stderr
            warnings.filterwarnings("ignore", message="(Possibly )?[Cc]orrupt EXIF", category=UserWarning)
            with Image.open(path) as img:
                frames = _frame_count(img)
                orientation, problem = exif_orientation(img)
                stored_size, mode = img.size, ("RGBA" if img.mode == "P" else img.mode)
                reduced = _draft(img, draft_size) if draft_size else 1
                img.load()  # forces the decode now, so truncated data is detected here
                pixels, problem = _upright(img, orientation, problem)
    except _DECODE_ERRORS as err:
        raise ImageDecodeError(_short_reason(err)) from None
    if pixels.mode == "P":
        pixels = pixels.convert("RGBA")
    turned = orientation in (5, 6, 7, 8) and problem is None  # these swap width and height
    size = stored_size[::-1] if turned else stored_size
    return pixels, {"size": tuple(size), "mode": mode, "reduced": reduced, "frames": frames,
                    "orientation": orientation if problem is None else 0, "exif_problem": problem}


def _frame_count(img: Image.Image) -> int:
    """Frames of an animation or a multi-page file (its first is decoded). Walking them is how a truncated
    later frame is caught. A JPEG's MPO extra images (depth maps, previews of the same shot) are not frames."""
    return 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))


def _draft(img: Image.Image, size: int) -> int:
    """Ask a JPEG to decode at 1/2, 1/4 or 1/8 scale, each side staying ≥ DRAFT_GAP × ``size`` (a no-op for
    other formats); returns the reduction. The file's own mode is kept, so the pixels hashed and converted
    are the file's colours, only smaller."""
    width = img.size[0]
    img.draft(img.mode, (DRAFT_GAP * size, DRAFT_GAP * size))
    return max(1, round(width / img.size[0]))


def _picture_box(img: Image.Image, full_size: tuple[int, int], reduced: int,
                 orientation: int) -> tuple[float, float, float, float] | None:
    """The part of a drafted image that holds the picture (None when not reduced). libjpeg decodes whole
    blocks, so the last stored row and column stand for partial ones (a 3071 px side at 1/8 gives 384 px
    holding 383.875); resized as whole pixels they shift the picture by a fraction of an output pixel,
    visible on textured photos. Those partial edges are the stored right and bottom, which the orientation
    may have turned to any side: the picture stays anchored where the stored top-left corner went."""
    if reduced == 1:
        return None
    width, height = full_size[0] / reduced, full_size[1] / reduced  # full_size is upright already
    left = img.width - width if orientation in ANCHORED_RIGHT else 0.0
    top = img.height - height if orientation in ANCHORED_BOTTOM else 0.0
    return left, top, left + width, top + height


def _upright(img: Image.Image, orientation: int, problem: str | None) -> tuple[Image.Image, str | None]:
    """The loaded image as a viewer shows it (an independent copy, valid after the file is closed)."""
    if problem is None and orientation in TRANSFORMING_ORIENTATIONS:
        try:
            return ImageOps.exif_transpose(img), None
        except Exception as err:  # rewriting a damaged block after the turn: take the image as stored
            return img.copy(), f"unreadable EXIF block ({_first_line(err)}): not rotated"
    return img.copy(), problem


def exif_orientation(img: Image.Image) -> tuple[int, str | None]:
    """(orientation 1-8, or 0 when there is none; a reason when the EXIF block leaves it unknown)."""
    raw = img.info.get("exif")
    raw = raw.removeprefix(b"Exif\x00\x00") if isinstance(raw, bytes) else b""
    if raw and raw[:4] not in (b"II*\x00", b"MM\x00*"):
        return 0, "unreadable EXIF block (no TIFF header): not rotated"
    try:
        value = img.getexif().get(ORIENTATION_TAG, 0)
    except Exception as err:  # Pillow raises assorted errors on damaged directories
        return 0, f"unreadable EXIF block ({_first_line(err)}): not rotated"
    if isinstance(value, int) and 1 <= value <= 8:
        return value, None  # read: damage elsewhere in the block does not matter here
    return 0, _damage(raw) if raw else None  # none, or a value outside 1-8 that no viewer acts on either


def _damage(raw: bytes) -> str | None:
    """Why an EXIF block without a readable orientation is damaged, or None when it is sound. Read afresh:
    Pillow may have parsed it while opening the file (for the JPEG's dpi), where it only warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Image.Exif().load(raw)
        except Exception as err:
            return f"unreadable EXIF block ({_first_line(err)}): not rotated"
    return f"unreadable EXIF block ({_first_line(caught[0].message)}): not rotated" if caught else None


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0].strip() if text else type(err).__name__


def _short_reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "corrupt or not an image (cannot identify format)"
    if isinstance(err, PermissionError):
        return "unreadable (permission denied)"
    if isinstance(err, FileNotFoundError):
        return "unreadable (missing or broken link)"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text.lower() or isinstance(err, EOFError):
        return "truncated image data"
    return f"cannot decode: {text}"


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to 'L' (channels=1) or 'RGB' (channels=3)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def _to_8bit(img: Image.Image) -> Image.Image:
    array = np.asarray(img, dtype=np.float64)
    full_scale = 65535.0 if img.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    if img.mode == "F":
        full_scale = max(float(array.max(initial=0)), 1e-12) if array.max(initial=0) > 1 else 1.0
    return Image.fromarray(np.clip(array / full_scale * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def resize_square(img: Image.Image, size: int, mode: str, full_size: tuple[int, int] | None = None,
                  box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Resize to ``size``×``size`` following the aspect policy documented in this module.

    A JPEG decoded at reduced size gives ``full_size`` (its size before the reduction) and ``box`` (the part
    of it holding the picture, PIL's resize box). The scaled size and the crop or pad offsets are computed
    from the full size, so the reduced image is cut where its full decode would be: from the reduced size a
    rounding could move the crop by a whole output pixel."""
    width, height = full_size or img.size
    if img.size == (size, size) and box is None:
        return img
    if mode == "stretch":
        return img.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=None)
    scale = size / min(width, height) if mode == "crop" else size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    scaled = img.resize((new_w, new_h), Image.Resampling.BICUBIC, box=box)
    if mode == "crop":
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return scaled.crop((left, top, left + size, top + size))
    canvas = Image.new(scaled.mode, (size, size), 0)
    canvas.paste(scaled, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def peek_short_side(path: str | Path) -> int | None:
    """The shorter side in pixels from the image header alone, or None when it cannot be read."""
    try:
        with Image.open(path) as img:
            return min(img.size)
    except Exception:
        return None


def peek_is_colour(path: str | Path) -> bool:
    """Cheap check (header + palette) whether an image carries colour."""
    try:
        with Image.open(path) as img:
            return img.mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except Exception:
        return False
