"""Reading an ``.npy`` header without loading the array.

(Writing one row by row is the export's job: :class:`maskviewer.io.export.writing.NpyStack`.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an ``.npy`` file, read before anything is allocated.

    Raises
    ------
    ValueError
        When the file is not a valid ``.npy`` (bad magic, unknown version, broken header).
    """
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unknown .npy version {version}")
    return tuple(shape), dtype
