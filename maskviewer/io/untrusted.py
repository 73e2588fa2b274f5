"""Reading files that may run as code (models, custom objects) exactly once.

Consent is given for bytes, not for a path: a file renamed over the path, a symlink swapped in
or a file rewritten after the question would otherwise run in place of what was agreed to. So
such files are read here once — regular files only, symlinks not followed where the reader
picks the name, within a size budget — hashed, and the *same bytes* are what runs: executed
from memory, or loaded from a private copy (:func:`private_copy`) nobody else can write to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: a model file (or all of a SavedModel folder's files) larger than this is refused unread
MAX_MODEL_BYTES = 4 * 2**30
#: a SavedModel folder with more files than this is refused (a folder bomb)
MAX_TREE_FILES = 10_000
#: a custom-objects Python file larger than this is refused
MAX_SOURCE_BYTES = 8 * 2**20

_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class UntrustedFileError(OSError):
    """A file that cannot be taken as it is (not a regular file, too large, unreadable)."""


@dataclass(frozen=True)
class Snapshot:
    """The bytes of a file, or of a folder's files, read once.

    Attributes
    ----------
    path : Path
        Where they were read from (for messages only: never read again).
    files : tuple of (str, bytes)
        ``("", data)`` for a file; ``(relative path, data)`` for each file of a folder, sorted.
    sha256 : str
        :func:`digest` of ``files``: what consent is remembered by.
    """

    path: Path
    files: tuple[tuple[str, bytes], ...]
    sha256: str

    @property
    def is_tree(self) -> bool:
        return not (len(self.files) == 1 and self.files[0][0] == "")

    @property
    def data(self) -> bytes:
        """A single file's bytes."""
        assert not self.is_tree
        return self.files[0][1]

    def get(self, relative: str) -> bytes | None:
        """A folder's file by its relative path (``/``-separated), None when absent."""
        return next((data for name, data in self.files if name == relative), None)


def digest(files: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> str:
    """SHA-256 of one file's bytes, or of a folder's sorted (relative path, bytes) pairs.

    A file's digest is the plain SHA-256 of its bytes (what ``sha256sum`` prints). A folder's
    names and contents are length-prefixed, so no two different folders hash alike.
    """
    h = hashlib.sha256()
    if len(files) == 1 and files[0][0] == "":
        h.update(files[0][1])
        return h.hexdigest()
    h.update(b"maskviewer-tree-v1\0")
    for name, data in sorted(files):
        raw = name.encode("utf-8", "surrogateescape")
        h.update(len(raw).to_bytes(8, "big") + raw + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    return "not a regular file"


def _read_fd(fd: int, name: str, budget: int) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedFileError(f"{name}: {_describe(st.st_mode)}, not a regular file.")
    if st.st_size > budget:
        raise UntrustedFileError(f"{name}: larger than {budget >> 20} MiB; refused unread.")
    chunks, total = [], 0
    while True:  # read to the end, whatever the size said: a growing file must not overrun
        chunk = os.read(fd, min(1 << 22, budget + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > budget:
            raise UntrustedFileError(f"{name}: larger than {budget >> 20} MiB; refused unread.")


def read_file(path: str | Path, budget: int = MAX_MODEL_BYTES, *, follow: bool = True) -> bytes:
    """Read a regular file once, within ``budget`` bytes.

    Parameters
    ----------
    path : str or Path
        The file. With ``follow`` a symlink the user named is resolved once, and the target is
        then opened without following links, so a link swapped in meanwhile is refused.
    budget : int
        The most bytes accepted.

    Raises
    ------
    UntrustedFileError
        Not a regular file, too large, a symlink where none is followed, or unreadable.
    """
    path = Path(path)
    target = os.path.realpath(path) if follow else str(path)
    try:
        fd = os.open(target, _READ | _NOFOLLOW)
    except OSError as exc:
        if os.path.islink(target):
            raise UntrustedFileError(f"{path.name}: a symbolic link; not followed.") from exc
        raise UntrustedFileError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from exc
    try:
        return _read_fd(fd, path.name, budget)
    finally:
        os.close(fd)


def snapshot_file(path: str | Path, budget: int = MAX_MODEL_BYTES) -> Snapshot:
    """A file read once (see :func:`read_file`) with its SHA-256."""
    files = (("", read_file(path, budget)),)
    return Snapshot(Path(path), files, digest(files))


def snapshot_tree(
    folder: str | Path, budget: int = MAX_MODEL_BYTES, max_files: int = MAX_TREE_FILES
) -> Snapshot:
    """Every file under ``folder`` read once, each opened relative to its already-open folder.

    Symlinks, pipes and other special files inside are refused, not followed, so nothing
    outside the folder is read and a swapped-in link cannot redirect a read.
    """
    folder = Path(folder)
    try:
        root = os.open(os.path.realpath(folder), _READ | _DIRECTORY)
    except OSError as exc:
        raise UntrustedFileError(f"{folder.name}: cannot be read ({exc.strerror or exc}).") from exc
    files: list[tuple[str, bytes]] = []
    try:
        _walk(root, "", files, [budget], max_files, folder.name)
    finally:
        os.close(root)
    files.sort()
    return Snapshot(folder, tuple(files), digest(files))


def _walk(dir_fd: int, prefix: str, out: list, left: list[int], max_files: int, top: str) -> None:
    for name in sorted(os.listdir(dir_fd)):
        rel = f"{prefix}{name}"
        try:
            fd = os.open(name, _READ | _NOFOLLOW, dir_fd=dir_fd)
        except OSError as exc:
            kind = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            detail = _describe(kind) if stat.S_ISLNK(kind) else exc.strerror or str(exc)
            raise UntrustedFileError(f"{top}/{rel}: {detail}; refused.") from exc
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                _walk(fd, f"{rel}/", out, left, max_files, top)
                continue
            data = _read_fd(fd, f"{top}/{rel}", left[0])
        finally:
            os.close(fd)
        left[0] -= len(data)
        out.append((rel, data))
        if len(out) > max_files:
            raise UntrustedFileError(f"{top}: more than {max_files} files; refused.")


@contextlib.contextmanager
def private_copy(snapshot: Snapshot) -> Iterator[Path]:
    """The snapshot's bytes written to a fresh private folder; yields the copy's path.

    The folder is made by ``mkdtemp`` (mode 0700) and every file is created with ``O_EXCL``,
    so no other user can put anything there; the copy is removed afterwards.
    """
    base = Path(tempfile.mkdtemp(prefix="maskviewer-model-"))
    try:
        yield write_private(snapshot, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def private_folder() -> Path:
    """A fresh folder only this user can enter (``mkdtemp``: mode 0700); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix="maskviewer-model-"))


def write_private(snapshot: Snapshot, base: Path) -> Path:
    """Write the snapshot under the private folder ``base``; returns the file's or folder's path."""
    name = snapshot.path.name or "model"
    target = base / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    if snapshot.is_tree:
        target.mkdir(mode=0o700)
    for rel, data in snapshot.files:
        dest = target / rel if rel else target
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(dest, flags, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return target


def create_secret(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data``, readable by this user only (0600, ``O_EXCL``).

    Returns False when the file exists already (someone else made it first: read that one).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def read_secret(path: Path, budget: int = 4096) -> bytes | None:
    """The contents of a file made by :func:`create_secret`, or None when it is absent, not a
    regular file, a symlink, or readable by other users (then it is no secret)."""
    try:
        fd = os.open(path, _READ | _NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077 or not mine:
            return None
        return _read_fd(fd, path.name, budget)
    except OSError:
        return None
    finally:
        os.close(fd)


def discard_private(base: Path) -> None:
    """Remove a folder made by :func:`private_folder` (quietly: it may be gone already)."""
    shutil.rmtree(base, ignore_errors=True)
