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
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
RESIZE_MODES = ("crop", "pad", "stretch")


class ImageDecodeError(Exception):
    """A file that looks like an image but cannot be decoded (corrupt, truncated, unreadable)."""


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode ``path``; any failure becomes ImageDecodeError with a short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # forces the decode now, so truncated data is detected here
                return img.copy() if img.mode != "P" else img.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as err:
        raise ImageDecodeError(_short_reason(err)) from None


def _short_reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "corrupt or not an image (cannot identify format)"
    if isinstance(err, PermissionError):
        return "unreadable (permission denied)"
    if isinstance(err, FileNotFoundError):
        return "unreadable (missing or broken link)"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text.lower():
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


def resize_square(img: Image.Image, size: int, mode: str) -> Image.Image:
    """Resize to ``size``×``size`` following the aspect policy documented in this module."""
    width, height = img.size
    if (width, height) == (size, size):
        return img
    if mode == "stretch":
        return img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    scale = size / min(width, height) if mode == "crop" else size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    scaled = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if mode == "crop":
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return scaled.crop((left, top, left + size, top + size))
    canvas = Image.new(scaled.mode, (size, size), 0)
    canvas.paste(scaled, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def decode_to_array(path: str | Path, size: int, channels: int, mode: str = "crop") -> tuple[np.ndarray, tuple[int, int], str]:
    """Decode ``path`` → (uint8 array (channels, size, size), original (width, height), original mode)."""
    img = read_image(path)
    original_size, original_mode = img.size, img.mode
    img = resize_square(to_channels(img, channels), size, mode)
    array = np.asarray(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array), original_size, original_mode


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
