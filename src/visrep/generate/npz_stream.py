"""An ``.npz`` written part by part: ``np.load`` reads it as ``np.savez_compressed`` would have written it
(a deflated zip of ``.npy`` files), while memory holds one part at a time. Atomic, like every write."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visrep.storage import atomic_write


@dataclass
class NpyMember:
    """One array of an .npz, given as its shape, dtype and its rows in order, part by part."""
    shape: tuple[int, ...]
    dtype: np.dtype
    parts: Callable[[], Iterable[np.ndarray]]  # called once, when the member is written

    @classmethod
    def of(cls, array: np.ndarray) -> NpyMember:
        return cls(array.shape, array.dtype, lambda: [array])


def write_npz_streamed(path: Path, members: dict[str, NpyMember]) -> Path:
    """An .npz that ``np.load`` reads as ``np.savez_compressed`` would have written it (a deflated zip of
    ``.npy`` files), written part by part: memory holds one part at a time. Atomic, like every write."""

    def write(temp) -> None:
        with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, member in members.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as stream:  # size unknown up front
                    _write_npy(stream, member)

    return atomic_write(Path(path), write)


def _write_npy(stream, member: NpyMember) -> None:
    """The .npy header, then the parts' bytes in C order; their rows must add up to the declared shape."""
    dtype = np.dtype(member.dtype)
    if dtype.hasobject:
        raise ValueError("object arrays would need pickling; .npz members here are plain arrays")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(member.shape)}
    try:
        np.lib.format.write_array_header_1_0(stream, header)
    except ValueError:  # a header over 64 KiB (a very long structured dtype) needs format 2.0
        np.lib.format.write_array_header_2_0(stream, header)
    rows = 0
    for part in member.parts():
        part = np.ascontiguousarray(part, dtype=dtype)
        stream.write(memoryview(part.reshape(-1)).cast("B"))
        rows += len(part)
    if rows != member.shape[0]:
        raise ValueError(f".npz member: {rows} rows written for a declared shape {member.shape}")
