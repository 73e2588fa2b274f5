"""The journal of a command-line export: what is done, so that a killed run can be resumed.

A hidden file in the output folder (:func:`naming.run_file_name`), append-only: a header
line (the run's fingerprint: command, images, model; and the random token of its stacked
arrays' temporary files), then one line per image whose artifacts are complete, with its
manifest entries, the size of each of its files and the stacked arrays its rows are in. Lines
are written and fsync'd once per batch, after the batch's files (and the stacked rows, with
``durable``) are on disk, so a line never vouches for a file that is not there.

The journal is also where the manifest's entries come from (:meth:`Journal.entry_lines`, in
image order): a resumed run writes the same manifest as an uninterrupted one. It is removed
once the manifest is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from maskviewer.io.export import naming
from maskviewer.io.export.items import ExportError
from maskviewer.io.export.manifest import _json_line, iter_files
from maskviewer.io.export.stack import NpyStack

JOURNAL_VERSION = 1
_CREATE = (os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_CLOEXEC", 0))
_OPEN = os.O_RDWR | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

#: relative path of a stacked array -> ``(stem, row shape, dtype, rows to keep)``
Stacks = dict[str, tuple[str, tuple[int, ...], str, int]]


class Journal:
    """An export's journal, open for appending (make one with :meth:`create` or :meth:`resume`).

    Attributes
    ----------
    token : str
        The random part of the stacked arrays' temporary file names.
    done : dict
        Image path -> ``(offset, length)`` of its line: the images not to export again.
    count : int
        Manifest entries of those images.
    stack_keys : dict
        Set by the export to its writer's :attr:`ArtifactWriter.stack_keys`.
    before_commit : callable or None
        Called before lines are written (puts the stacked rows on the disk).
    """

    def __init__(self, path: Path, fd: int, token: str) -> None:
        self.path, self._fd, self.token = path, fd, token
        self.out_dir = path.parent
        self.done: dict[str, tuple[int, int]] = {}
        self.count = 0
        self._end = os.fstat(fd).st_size
        self._pending: list[tuple[str, bytes, int]] = []
        self.stack_keys: dict[str, tuple] = {}
        self.before_commit: Callable[[], None] | None = None

    @classmethod
    def create(cls, out_dir: str | os.PathLike, manifest_name: str, run: dict) -> Journal:
        """A new journal for ``run`` (any earlier one is replaced)."""
        path = Path(out_dir) / naming.run_file_name("journal", manifest_name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fd = os.open(path, _CREATE, 0o644)
        token = secrets.token_hex(8)
        head = {"journal": JOURNAL_VERSION, "run": run, "token": token}
        _write_all(fd, (json.dumps(head, allow_nan=False) + "\n").encode())
        os.fsync(fd)
        return cls(path, fd, token)

    @classmethod
    def resume(cls, out_dir: str | os.PathLike, manifest_name: str, run: dict) -> tuple[Journal, Stacks]:
        """The journal of a killed run of ``run``, cut back to the lines whose files are all
        there; and the stacked arrays to go on with.

        Raises
        ------
        ExportError
            The journal is missing or unreadable, or was written by another command.
        """
        path = Path(out_dir) / naming.run_file_name("journal", manifest_name)
        try:
            fd = os.open(path, _OPEN)
        except OSError as exc:
            raise ExportError(f"Cannot read the journal {path}: {exc.strerror or exc}.") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ExportError(f"{path} is not a journal of this export.")
            with os.fdopen(os.dup(fd), "rb") as fh:
                lines = fh.read().split(b"\n")
            head = _parse(lines[0]) if len(lines) > 1 else None
            if not isinstance(head, dict) or head.get("journal") != JOURNAL_VERSION:
                raise ExportError(f"{path} is not a journal this version can resume; add --overwrite to start again.")
            _check_same_run(head.get("run", {}), run, Path(out_dir))
            journal = cls(path, fd, str(head["token"]))
            stacks = journal._accept(lines[1:-1], len(lines[0]) + 1)  # the last piece is torn or empty
        except BaseException:
            os.close(fd)
            raise
        return journal, stacks

    def _accept(self, lines: list[bytes], offset: int) -> Stacks:
        """Take the lines whose files are complete (stopping at the first that is not); cut
        the file after them; the stacked arrays they use, with the rows to keep."""
        parsed = [_parse(line) for line in lines]
        metas: dict[str, tuple] = {}
        for line in parsed:
            if isinstance(line, dict):
                metas.update({rel: tuple(v) for rel, v in line.get("stacks", {}).items()})
        on_disk = {rel: NpyStack.rows_on_disk(self.out_dir / rel, self.token, tuple(shape), dtype)
                   for rel, (_stem, shape, dtype) in metas.items()}
        rows: dict[str, int] = {}
        for raw, line in zip(lines, parsed, strict=True):
            if not isinstance(line, dict) or not self._complete(line, on_disk):
                break
            for entry in line["entries"]:
                rec = entry.get("files", {}).get("npy", {})
                if "row" in rec:
                    rows[rec["path"]] = max(rows.get(rec["path"], 0), rec["row"] + 1)
            self.done[line["image"]] = (offset, len(raw))
            self.count += len(line["entries"])
            offset += len(raw) + 1
        os.ftruncate(self._fd, offset)  # lines after are written again by this run
        self._end = offset
        return {rel: (metas[rel][0], tuple(metas[rel][1]), metas[rel][2], n) for rel, n in rows.items()}

    def _complete(self, line: dict, on_disk: dict[str, int]) -> bool:
        """Every file of the line is there with its size, and every row in its stack."""
        for rel, size in line.get("files", {}).items():
            try:
                st = os.lstat(naming.native_path(os.path.join(os.fspath(self.out_dir), ""), rel))
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return False
        for entry in line.get("entries", []):
            rec = entry.get("files", {}).get("npy", {})
            if "row" in rec and rec["row"] >= on_disk.get(rec["path"], 0):
                return False
        return True

    def record(self, image: str, entries: list[dict]) -> None:
        """An image whose files are all written: its entries (written at :meth:`commit`)."""
        root = os.path.join(os.fspath(self.out_dir), "")
        files: dict[str, int] = {}
        stacks: dict[str, Any] = {}
        for entry in entries:
            for _role, rec in iter_files(entry):
                if "row" in rec:
                    stacks[rec["path"]] = list(self.stack_keys[rec["path"]])
                else:
                    files[rec["path"]] = os.stat(naming.native_path(root, rec["path"])).st_size
        text = ('{"image": ' + json.dumps(image) + ', "files": ' + json.dumps(files) + ', "stacks": '
                + json.dumps(stacks) + ', "entries": [' + ", ".join(_json_line(e) for e in entries) + "]}")
        self._pending.append((image, text.encode(), len(entries)))

    def commit(self) -> None:
        """Write the recorded lines and put them on the disk (once per batch)."""
        if not self._pending:
            return
        if self.before_commit is not None:
            self.before_commit()
        pending, self._pending = self._pending, []
        _write_all(self._fd, b"".join(data + b"\n" for _image, data, _n in pending))
        os.fsync(self._fd)
        for image, data, n in pending:
            self.done[image] = (self._end, len(data))
            self._end += len(data) + 1
            self.count += n

    def entry_lines(self, order: list[str]) -> Iterator[str]:
        """The manifest entries (one JSON text each) of the images of ``order`` that are done,
        in that order."""
        with os.fdopen(os.dup(self._fd), "rb") as fh:
            for image in order:
                where = self.done.get(image)
                if where is None:
                    continue
                fh.seek(where[0])
                line = json.loads(fh.read(where[1]))
                for entry in line["entries"]:
                    yield json.dumps(entry, allow_nan=False)

    def remove(self) -> None:
        """Close and delete the journal (the manifest is written)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        """Close the journal, leaving it for a resumed run."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _check_same_run(was: dict, now: dict, out_dir: Path) -> None:
    """Refuse to resume a journal of another command, other images or another model."""
    differ = [key for key in sorted(set(was) | set(now)) if was.get(key) != now.get(key)]
    if differ:
        raise ExportError(
            f"The unfinished export in {out_dir} was made with another {' and '.join(differ)}; "
            "--resume needs the same command. Run it as it was, or add --overwrite to start again."
        )
