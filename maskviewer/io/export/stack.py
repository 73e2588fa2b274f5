"""A stacked ``.npy``: one file built row by row in a hidden temporary file beside it.

The temporary file is created exclusively and never through a link (``O_EXCL | O_NOFOLLOW``,
an unpredictable name from :func:`~maskviewer.io.export.naming.temp_name`), so a link planted
in the output folder cannot make the export write anywhere else. A resumed export reopens the
temporary file of the run it continues (:meth:`NpyStack.reopen`), keeping the rows its journal
vouches for.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np

from maskviewer.io.export import naming
from maskviewer.io.export.encoding import npy_padded_header

#: create a new file, never an existing one, never through a link
_CREATE = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
           | getattr(os, "O_BINARY", 0))
#: open an existing file of our own, never through a link
_REOPEN = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _ours(st: os.stat_result) -> bool:
    """A plain file of this user with one name (not a link, not a hard link to another file)."""
    uid = getattr(os, "geteuid", None)
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (uid is None or st.st_uid == uid())


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
    token : str, optional
        The random part of the temporary file's name (:func:`naming.temp_name`); a resumable
        export passes its run's token so that the file can be found again. Default: random.
    """

    #: room in the header for any row count
    _MAX_ROWS = 10**15
    #: rows are written once this many bytes are waiting (or on :meth:`flush`)
    FLUSH_BYTES = 1 << 22

    def __init__(
        self, path: str | Path, row_shape: tuple[int, ...], dtype: np.dtype | str, token: str | None = None,
        *, _fd: int | None = None, _rows: int = 0,
    ) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(d) for d in row_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise ValueError("object arrays are not written")
        self.rows = _rows
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._size = self.header_size(self.row_shape, self.dtype)
        self._tmp = self.path.with_name(naming.temp_name(self.path.name, token))
        if _fd is None:
            _fd = os.open(self._tmp, _CREATE, 0o666)
            os.write(_fd, b" " * self._size)  # the header's place, written on close
        self._fd: int | None = _fd

    @classmethod
    def header_size(cls, row_shape: tuple[int, ...], dtype: np.dtype | str) -> int:
        """Bytes before the first row (a header with room for any row count)."""
        return len(npy_padded_header((cls._MAX_ROWS, *row_shape), np.dtype(dtype)))

    @classmethod
    def temp_path(cls, path: str | Path, token: str) -> Path:
        """Where a stack of ``path`` made with ``token`` keeps its rows until :meth:`close`."""
        path = Path(path)
        return path.with_name(naming.temp_name(path.name, token))

    @classmethod
    def rows_on_disk(cls, path: str | Path, token: str, row_shape: tuple[int, ...], dtype: np.dtype | str) -> int:
        """How many whole rows the temporary file of a killed run holds (0 if it is missing or
        not a plain file of ours)."""
        try:
            st = os.lstat(cls.temp_path(path, token))
        except OSError:
            return 0
        if not _ours(st):
            return 0
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        body = st.st_size - cls.header_size(tuple(row_shape), dtype)
        return max(body, 0) // row_bytes if row_bytes else 0

    @classmethod
    def reopen(
        cls, path: str | Path, token: str, row_shape: tuple[int, ...], dtype: np.dtype | str, rows: int
    ) -> NpyStack:
        """The stack a killed run was building, cut back to its first ``rows`` rows.

        The temporary file is opened without following links and must be a plain file of this
        user with one name (else ``OSError``): a file planted in its place is never written.
        """
        tmp = cls.temp_path(path, token)
        fd = os.open(tmp, _REOPEN)
        try:
            st = os.fstat(fd)
            if not _ours(st):
                raise OSError(f"{tmp} is not a temporary file of this export; it was left alone")
            row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            end = cls.header_size(tuple(row_shape), dtype) + rows * row_bytes
            if st.st_size < end:
                raise OSError(f"{tmp} holds fewer than {rows} rows")
            os.ftruncate(fd, end)  # rows of images the journal does not vouch for are dropped
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, row_shape, dtype, token, _fd=fd, _rows=rows)

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

    def flush(self, fsync: bool = False) -> None:
        """Write the rows appended since the last flush (rows are kept until then, up to
        :attr:`FLUSH_BYTES`, and written in one system call); ``fsync`` puts them on the disk."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if pending and self._fd is not None:
            data = memoryview(b"".join(pending))
            while data:
                data = data[os.write(self._fd, data):]
        if fsync and self._fd is not None:
            os.fsync(self._fd)

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
                os.write(fd, npy_padded_header((self.rows, *self.row_shape), self.dtype, self._size))
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

    def suspend(self) -> None:
        """Write what is pending and close, leaving the temporary file (see :meth:`reopen`)."""
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None

    def abandon(self) -> None:
        """Drop what was written (no file is left)."""
        self._pending, self._pending_bytes = [], 0
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


class StackSet:
    """The stacked arrays of one export: one :class:`NpyStack` per stem, row shape and dtype.

    Parameters
    ----------
    stack_dir : str
        Their folder, relative to the export folder.
    token : str or None
        The random part of their temporary files' names (a resumable export's run token).
    target : callable
        Relative path -> the absolute path to write (its folder made, checked for links).
    """

    def __init__(self, stack_dir: str, token: str | None, target: Callable[[str], str]) -> None:
        self.stack_dir, self.token, self._target = stack_dir, token, target
        self._stacks: dict[tuple, tuple[str, NpyStack]] = {}  # (stem, shape, dtype) -> (rel, stack)
        self._names: set[str] = set()
        #: relative path -> ``(stem, row shape, dtype)``, what a journal keeps
        self.keys: dict[str, tuple[str, tuple[int, ...], str]] = {}

    def append(self, stem: str, raw: np.ndarray) -> tuple[str, int]:
        """Add ``raw`` as a row of the array of ``stem`` (made on first use); ``(path, row)``."""
        key = (stem, raw.shape, raw.dtype.str)
        found = self._stacks.get(key)
        if found is None:
            name = naming.stack_name(stem, raw.shape, self._names)
            self._names.add(name)
            rel = naming.stack_path(self.stack_dir, name)
            found = (rel, NpyStack(self._target(rel), raw.shape, raw.dtype, self.token))
            self._stacks[key] = found
            self.keys[rel] = (stem, tuple(raw.shape), raw.dtype.str)
        return found[0], found[1].append(raw)

    def resume(self, stacks: dict[str, tuple[str, tuple[int, ...], str, int]]) -> None:
        """Go on with the arrays of a killed run made with the same :attr:`token`: relative
        path -> ``(stem, row shape, dtype, rows to keep)``; later rows are dropped."""
        assert self.token is not None or not stacks
        for rel, (stem, shape, dtype, rows) in stacks.items():
            key = (stem, tuple(shape), np.dtype(dtype).str)
            stack = NpyStack.reopen(self._target(rel), str(self.token), tuple(shape), dtype, rows)
            self._stacks[key] = (rel, stack)
            self._names.add(naming.stack_name_of(rel, self.stack_dir))
            self.keys[rel] = key

    def flush(self, fsync: bool = False) -> None:
        """Write every array's pending rows (and put them on the disk with ``fsync``)."""
        for _rel, stack in self._stacks.values():
            stack.flush(fsync=fsync)

    def close(self, fsync: bool = False) -> list[str]:
        """Finish the arrays (headers written, files renamed into place); their paths."""
        done = []
        stacks, self._stacks = self._stacks, {}
        try:
            while stacks:
                _key, (rel, stack) = stacks.popitem()
                stack.close(fsync=fsync)
                done.append(rel)
        finally:
            for _rel, stack in stacks.values():
                stack.abandon()
        return done

    def suspend(self) -> None:
        """Close the arrays, leaving their temporary files for a resumed run."""
        stacks, self._stacks = self._stacks, {}
        for _rel, stack in stacks.values():
            stack.suspend()

    def abandon(self) -> None:
        """Drop the unfinished arrays (no file is left)."""
        stacks, self._stacks = self._stacks, {}
        for _rel, stack in stacks.values():
            stack.abandon()
