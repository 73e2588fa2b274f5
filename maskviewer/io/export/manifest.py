"""The manifest: one JSON entry per artifact, streamed to a side file and written as
``manifest.json`` (tool version, model file and SHA-256, settings, artifacts) at the end; and
reading it back (:func:`read_manifest`, :func:`iter_files`, :func:`load_npy`).

:func:`export_items` is a whole export of what the window shows: files and manifest.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.image import ImageData
from maskviewer.io.export import naming
from maskviewer.io.export.items import ExportError, ExportItem, ExportStyle
from maskviewer.io.export.lock import ExportLock
from maskviewer.io.export.naming import MANIFEST_NAME
from maskviewer.io.export.writing import ArtifactWriter, check_writable, open_text

MANIFEST_VERSION = 1


def tool_version() -> str:
    """The installed maskviewer version (the manifest's ``version``)."""
    from maskviewer import __version__

    return __version__


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays as JSON values; non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _json_line(entry: dict) -> str:
    """``entry`` as one JSON line; numpy values converted, non-finite floats as null."""
    try:  # most entries hold plain values: let json do them, and convert only when it must
        return json.dumps(entry, allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(_jsonable(entry), allow_nan=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic | Path):
        return _jsonable(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")



#: output kinds whose entries hold no class (see :mod:`maskviewer.core.output_kinds`)
_CLASSLESS_KINDS = ("multilabel", "multilabel_logits", "regression", "map")


def _kind_entry(entry: dict) -> dict:
    """An entry of an output read as values or labels carries no empty ``class`` field."""
    if entry.get("output_kind") in _CLASSLESS_KINDS and entry.get("class", 0) is None:
        entry = {k: v for k, v in entry.items() if k != "class"}
    return entry


def outputs_record(items: Iterable[ExportItem]) -> dict:
    """The manifest header's ``outputs``: each exported output's kind, in words."""
    out: dict[str, dict] = {}
    for item in items:
        kind = item.info.get("output_kind") if item.kind in ("prediction", "patch") else None
        if kind and item.name not in out:
            out[item.name] = {"kind": kind, "shown_as": item.info.get("output_kind_text", "")}
            if item.info.get("output_kind_reason"):
                out[item.name]["why"] = item.info["output_kind_reason"]
    return out


class Manifest:
    """Collects manifest entries on disk (one JSON line each) and writes ``manifest.json``.

    Entries are spooled to a hidden file in the output folder as they come, so memory stays
    bounded however many artifacts a run writes; :meth:`finish` streams them into the final
    file (atomically) and removes the spool.

    Parameters
    ----------
    out_dir : path
    name : str
        The manifest's file name (``manifest.json``; shards use their own).
    journal : Journal, optional
        A command-line export's journal (:mod:`~maskviewer.io.export.journal`): entries go
        there, one line per image (:meth:`add_image`), and the manifest lists them in image
        order (``finish(order=...)``), whether the run was resumed or not.
    """

    def __init__(self, out_dir: str | os.PathLike, name: str = MANIFEST_NAME, journal: Any = None) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / name
        self.journal = journal
        self._spool_path: Path | None = None
        if journal is None:
            suffix, prefix = naming.spool_affixes(name)
            fd, spool = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=self.out_dir)
            self._spool_path = Path(spool)
            self._spool = os.fdopen(fd, "w", encoding="utf-8")
        self._count = 0
        self.failures: list[dict] = []

    @property
    def count(self) -> int:
        """Entries so far (with a journal: of every image it holds, this run's and earlier)."""
        return self.journal.count if self.journal is not None else self._count

    def add(self, entry: dict) -> None:
        if self.journal is not None:
            raise ValueError("a journalled manifest takes entries image by image (add_image)")
        self._spool.write(_json_line(_kind_entry(entry)) + "\n")
        self._count += 1

    def add_image(self, image: str, entries: list[dict]) -> None:
        """All entries of one image whose files are written (journalled at :meth:`commit`)."""
        if self.journal is None:
            for entry in entries:
                self.add(entry)
        else:
            self.journal.record(image, [_kind_entry(e) for e in entries])

    def commit(self) -> None:
        """End of a batch: the journal's lines are written and put on the disk."""
        if self.journal is not None:
            self.journal.commit()

    def add_failure(self, image: str, message: str) -> None:
        """An image that could not be exported (kept in memory: failures are few)."""
        self.failures.append({"image": image, "error": message})

    def finish(self, header: dict, order: list[str] | None = None) -> Path:
        """Write ``manifest.json``: ``header`` fields, then ``failures`` and ``artifacts``
        (with a journal: the entries of the images of ``order``, in that order; failures are
        listed in that order too)."""
        if self.journal is not None:
            rank = {image: i for i, image in enumerate(order or [])}
            self.failures.sort(key=lambda f: rank.get(f["image"], len(rank)))
            lines: Iterable[str] = self.journal.entry_lines(order or [])
            self._write(header, lines)
            return self.path
        self._spool.close()
        assert self._spool_path is not None
        try:
            with open(self._spool_path, encoding="utf-8") as spool:
                self._write(header, (line.rstrip("\n") for line in spool))
        finally:
            with contextlib.suppress(OSError):
                self._spool_path.unlink()
        return self.path

    def _write(self, header: dict, lines: Iterable[str]) -> None:
        """``manifest.json`` from the header and the entries' JSON lines, atomically."""
        head = dict(_jsonable(header))
        head.setdefault("tool", "maskviewer")
        head.setdefault("version", tool_version())
        head.setdefault("manifest_version", MANIFEST_VERSION)
        head.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        head["artifact_count"] = self.count
        head["failures"] = _jsonable(self.failures)
        with open_text(self.path) as out:
            text = json.dumps(head, indent=2, allow_nan=False)
            out.write(text[:-2] + ',\n  "artifacts": [')  # reopen the object for the list
            for i, line in enumerate(lines):
                out.write(("\n    " if i == 0 else ",\n    ") + line)
            out.write("\n  ]\n}\n")

    def abandon(self) -> None:
        """Drop the spool without writing a manifest (a journal stays, for a resumed run)."""
        if self._spool_path is None:
            if self.journal is not None:
                self.journal.close()
            return
        with contextlib.suppress(OSError):
            self._spool.close()
        with contextlib.suppress(OSError):
            self._spool_path.unlink()


def read_manifest(path: str | os.PathLike) -> dict:
    """Load a ``manifest.json`` (a folder: its ``manifest.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_files(entry: dict) -> Iterable[tuple[str, dict]]:
    """``(role, record)`` for every file of a manifest entry (records with a ``path``)."""
    for role, rec in entry.get("files", {}).items():
        if isinstance(rec, dict) and "path" in rec:
            yield role, rec


def load_npy(out_dir: str | os.PathLike, entry: dict, mmap: bool = False) -> np.ndarray:
    """The raw values a manifest entry (or its ``files["npy"]`` record) points to.

    A stacked array's row for stacked layouts, the whole file otherwise. ``mmap`` maps the file
    instead of reading it (a stacked array of a big folder).
    """
    record = entry["files"]["npy"] if "files" in entry else entry
    data = np.load(Path(out_dir) / record["path"], mmap_mode="r" if mmap else None, allow_pickle=False)
    row = record.get("row")
    return data if row is None else data[row]


def export_items(
    out_dir: str | os.PathLike,
    items: list[ExportItem],
    images: dict[str | None, ImageData | None],
    *,
    style: ExportStyle | None = None,
    settings: dict | None = None,
    model_path: str | None = None,
    model_sha256: str | None = None,
    overwrite: bool = False,
    prefix: str = "",
) -> Path:
    """Write ``items`` into ``out_dir`` with a manifest (what the window's export does).

    Parameters
    ----------
    images : dict
        Image path -> the image (under the overlays, sets the PNG size).
    prefix : str
        Sub-folder (relative) for the files, e.g. the image's name.

    Returns
    -------
    Path
        The manifest.

    Raises
    ------
    ExportError
        The folder is not writable or a file exists and ``overwrite`` is off.
    """
    out = check_writable(out_dir)
    style = style or ExportStyle()
    reason = naming.reserved_reason(prefix) if prefix else None
    if reason:
        raise ExportError(f"The files would go to {out / prefix}, {reason}; rename the image first.")
    writer = ArtifactWriter(out, style, overwrite=overwrite)
    if not overwrite:
        taken = naming.existing(writer, items, images, prefix)
        if taken:
            raise ExportError(
                f"{len(taken)} file(s) exist already, e.g. {taken[0]}; nothing was overwritten."
            )
    tokens = naming.name_tokens(item.name for item in items)  # two names, one file: told apart
    with ExportLock(out):
        manifest = Manifest(out)
        try:
            jobs = [(item, images.get(item.image), naming.prefixed(prefix, naming.unique_stem(item, tokens)))
                    for item in items]
            for result in writer.write_batch(jobs):
                if isinstance(result, BaseException):
                    raise result
                manifest.add(result)
        except BaseException:
            manifest.abandon()
            raise
        model = _model_record(model_path, model_sha256)
        header = {"source": "window", "model": model, "settings": {**(settings or {}), "style": style.to_dict()}}
        outputs = outputs_record(items)
        if outputs:
            header["outputs"] = outputs
        return manifest.finish(header)


def _model_record(model_path: str | None, model_sha256: str | None) -> dict | None:
    """The manifest's ``model``: the file and its SHA-256 (computed when not given)."""
    if not model_path:
        return None
    if model_sha256 is None:
        from maskviewer.inference.loading import file_sha256

        model_sha256 = file_sha256(model_path)
    return {"path": str(model_path), "sha256": model_sha256}
