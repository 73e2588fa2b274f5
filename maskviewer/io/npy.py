"""Reading an ``.npy`` header without loading the array.

(Writing one row by row is the export's job: :class:`maskviewer.io.export.writing.NpyStack`.)"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np


def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an ``.npy`` file, read before anything is allocated.

    Raises
    ------
    ValueError
        When the file is not a valid ``.npy`` (bad magic, unknown version, broken header).
    """
    with open(path, "rb") as fh:
        shape, _fortran, dtype = read_npy_header_from(fh)
    return shape, dtype


def read_npy_header_from(fh: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from an open stream at the start of an ``.npy``.

    The stream is left at the first data byte, so the caller can read exactly the bytes the
    header declares (a zip entry, say) after checking them against a budget.

    Raises
    ------
    ValueError
        When the stream does not start with a valid ``.npy`` header.
    """
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unknown .npy version {version}")
    return tuple(shape), bool(fortran), dtype
