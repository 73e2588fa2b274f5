"""Atomic writes: a crash never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_writev = getattr(os, "writev", None)
#: how a temporary file is opened: created here (never an existing file), never through a link
TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
              | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", fsync: bool = True) -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was. ``fsync``
    off skips flushing to the disk (bulk exports of many small files): the rename is still
    atomic, so a killed process leaves no partial file, but a power cut may lose recent files.
    """
    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    # ``.NAME.~RANDOM.tmp``: the export's temporary-file pattern (naming.temp_name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.~", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, *buffers: object, fsync: bool = False) -> None:
    """Write ``buffers`` (bytes-like: bytes, memoryviews, contiguous arrays; one after another) to ``path`` atomically, cheaply.

    The same guarantee as :func:`atomic_write` (a temporary file beside ``path``, renamed over
    it on success, removed on failure) in four system calls for a small file: for exports
    that write thousands of files, where :func:`tempfile.mkstemp` and a Python file object
    cost more than the data. The file gets the usual permissions (0666 less the umask).
    """
    path = os.fspath(path)
    head, name = os.path.split(path)
    # an unpredictable name, created exclusively: a link planted beside ``path`` is never followed
    tmp = os.path.join(head, f".{name}.~{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, TEMP_FLAGS, 0o666)
    try:
        try:
            views = [memoryview(b).cast("B") for b in buffers]
            if _writev is not None and len(views) > 1:  # one call for header and data
                sent = _writev(fd, views)
                while views and sent >= len(views[0]):
                    sent -= len(views.pop(0))
                if views:
                    views[0] = views[0][sent:]
            for view in views:
                while view:
                    view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
