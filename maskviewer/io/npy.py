"""Reading an ``.npy`` header without loading the array; writing one row by row."""

from __future__ import annotations

import contextlib
import os
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


class NpyStack:
    """An ``.npy`` file built one row at a time: ``(rows, *row_shape)`` of one dtype.

    A folder export keeps one per layer map (and per output), so 100k images make a handful
    of files that ``numpy.load(path, mmap_mode="r")`` opens at once, instead of 100k small ones.
    Rows go to a hidden temporary file beside ``path`` as they come (memory stays bounded);
    :meth:`close` writes the header with the final row count and renames the file into place,
    so a killed run leaves no partial ``.npy``.

    Parameters
    ----------
    path : path
        The final file.
    row_shape : tuple of int
    dtype : numpy dtype
    """

    #: room in the header for any row count
    _MAX_ROWS = 10**15
    #: rows are written once this many bytes are waiting (or on :meth:`flush`)
    FLUSH_BYTES = 1 << 22

    def __init__(self, path: str | Path, row_shape: tuple[int, ...], dtype: np.dtype | str) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(d) for d in row_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise ValueError("object arrays are not written")
        self.rows = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._size = len(self._header(self._MAX_ROWS))
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._fd: int | None = os.open(
            self._tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666
        )
        os.write(self._fd, b" " * self._size)  # the header's place, written on close

    def _header(self, rows: int, size: int | None = None) -> bytes:
        """The version 1.0 header (magic, length, dict), padded to ``size`` bytes (else 64k)."""
        text = (
            f"{{'descr': {np.lib.format.dtype_to_descr(self.dtype)!r}, 'fortran_order': False, "
            f"'shape': {(rows, *self.row_shape)!r}, }}"
        )
        if size is None:
            size = -(-(10 + len(text) + 1) // 64) * 64
        text = text.ljust(size - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def append(self, row: np.ndarray) -> int:
        """Add a row (of ``row_shape`` and the stack's dtype); returns its index."""
        a = np.asarray(row)
        if not a.flags.c_contiguous:
            a = a.copy()
        if a.shape != self.row_shape or a.dtype != self.dtype:
            raise ValueError(
                f"a row of shape {a.shape} and dtype {a.dtype} does not fit a stack of "
                f"{self.row_shape} {self.dtype}"
            )
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        self._pending.append(a.tobytes())
        self._pending_bytes += a.nbytes
        if self._pending_bytes >= self.FLUSH_BYTES:
            self.flush()
        self.rows += 1
        return self.rows - 1

    def flush(self) -> None:
        """Write the rows appended since the last flush (rows are kept until then, up to
        :attr:`FLUSH_BYTES`, and written in one system call)."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if pending and self._fd is not None:
            data = memoryview(b"".join(pending))
            while data:
                data = data[os.write(self._fd, data):]

    def close(self, fsync: bool = False) -> Path:
        """Write the header, rename the file into place and return its path."""
        if self._fd is None:
            return self.path
        try:
            self.flush()
        except BaseException:
            self.abandon()
            raise
        fd, self._fd = self._fd, None
        try:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, self._header(self.rows, self._size))
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise
        return self.path

    def abandon(self) -> None:
        """Drop what was written (no file is left)."""
        self._pending, self._pending_bytes = [], 0
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
