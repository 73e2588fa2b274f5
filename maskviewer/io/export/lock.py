"""One export at a time in a folder: a lock on the output folder, and the leftovers of runs
that were killed.

:class:`ExportLock` holds an ``fcntl`` lock on a hidden file in the output folder for as long as
an export writes there; a second export into the same folder is refused at once, with the
other run's process id. Shards of one export share the folder (each holds the folder's lock
shared and its own shard's lock exclusively); a whole export holds the folder's lock alone.
The kernel drops the locks of a killed process, so a stale lock file never blocks anyone.
:func:`remove_temp_files` removes what killed runs left behind: only files named like the
export's temporary files, never through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from maskviewer.io.export import naming
from maskviewer.io.export.items import ExportError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; exports are not guarded there
    fcntl = None  # type: ignore[assignment]

_OPEN = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class ExportLock:
    """The output folder's lock (and a shard's own), held until :meth:`release`.

    Parameters
    ----------
    out_dir : path
        The output folder (it exists).
    manifest_name : str
        The manifest this run writes: ``manifest.json`` for a whole export, a shard's own name
        for a shard (see :func:`naming.run_file_name`).

    Raises
    ------
    ExportError
        Another export writes into the folder (the message names its process id), or the lock
        file is not a plain file (a link planted there is never followed).
    """

    def __init__(self, out_dir: str | os.PathLike, manifest_name: str = naming.MANIFEST_NAME) -> None:
        self.out_dir = Path(out_dir)
        self._held: list[tuple[Path, int, bool]] = []  # (path, fd, exclusive)
        whole = manifest_name == naming.MANIFEST_NAME
        try:
            self._take(self.out_dir / naming.run_file_name("lock"), exclusive=whole)
            if not whole:
                self._take(self.out_dir / naming.run_file_name("lock", manifest_name), exclusive=True)
        except BaseException:
            self.release()
            raise

    def _take(self, path: Path, exclusive: bool) -> None:
        """Lock ``path`` (created exclusively when missing) without waiting."""
        while True:
            fd = _open_lock_file(path)
            if fcntl is None:
                self._held.append((path, fd, exclusive))
                return
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise ExportError(f"Cannot lock {path}: {exc.strerror or exc}.") from exc
                raise ExportError(
                    f"Another maskviewer export ({_holders(self.out_dir, path)}) is writing into "
                    f"{self.out_dir}; wait until it has finished, or choose another --out folder."
                ) from None
            # the holder before us may have removed the file between our open and our lock
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(path))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        if exclusive:  # who holds it, for the message another run shows
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._held.append((path, fd, exclusive))

    def release(self) -> None:
        """Give the locks back and remove their files (a shared one only by its last holder)."""
        while self._held:
            path, fd, exclusive = self._held.pop()
            try:
                if fcntl is not None and not exclusive:
                    try:  # the last shard to finish removes the folder's lock file
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        exclusive = True
                    except OSError:
                        pass
                if exclusive:
                    with contextlib.suppress(OSError):
                        if os.path.samestat(os.fstat(fd), os.lstat(path)):
                            os.unlink(path)
            finally:
                os.close(fd)

    def __enter__(self) -> ExportLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock_file(path: Path) -> int:
    """Open (or create, exclusively) a lock file; never through a link, only a plain file."""
    try:
        return os.open(path, _OPEN | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, _OPEN)
    except OSError as exc:
        raise ExportError(
            f"{path} is not a lock file this export can use ({exc.strerror or exc}); remove it "
            "if no export is running."
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExportError(f"{path} is not a plain file; remove it if no export is running.")
    return fd


def _holders(out_dir: Path, path: Path) -> str:
    """``pid N`` (or ``pids N, M``) of the exports holding ``path`` or a shard lock beside it."""
    pids = []
    shards = sorted(out_dir.glob(f"{naming.RUN_FILE_PREFIX}.shard-*.lock"))
    names = [path] + (shards if path.name == naming.run_file_name("lock") else [])
    for p in names:
        with contextlib.suppress(OSError, ValueError):
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                text = os.read(fd, 32).decode().strip()
                if text and fcntl is not None and p != path:
                    try:  # a shard lock nobody holds any more is stale
                        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                        text = ""
                    except OSError:
                        pass
            finally:
                os.close(fd)
            if text:
                pids.append(str(int(text)))
    if not pids:
        return "another process"
    return ("pid " if len(pids) == 1 else "pids ") + ", ".join(dict.fromkeys(pids))


def remove_temp_files(out_dir: str | os.PathLike, keep: set[str] | frozenset[str] = frozenset()) -> int:
    """Remove the temporary files killed runs left in ``out_dir`` (and its sub-folders).

    Only files named like the export's own (:func:`naming.is_temp_name`) are removed, links
    are never followed into other folders, and ``keep`` (file names) stay. Call it only while
    holding the folder's :class:`ExportLock`. Returns how many were removed.
    """
    removed = 0
    for folder, dirs, files in os.walk(out_dir, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            if naming.is_temp_name(name) and name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))  # a link itself, never its target
                    removed += 1
    return removed
