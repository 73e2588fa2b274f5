"""Sessions: the whole state (images, model, masks, input mappings, view settings) in a folder
or in one ``.mvsession`` file.

A session folder holds ``session.json`` and one ``masks/*.npy`` per mask (float32, exact);
a ``.mvsession`` file is a zip archive of the same. Paths are stored absolute and relative to
the session, so a session moved together with its images still opens. Every file is written
atomically and ``session.json`` last, so a crash while saving leaves the previous session
readable. No Qt here: the window's session tool and the tests share this module.

A session file is untrusted: ``session.json`` is checked against
:data:`maskviewer.io.session_schema.SESSION` (one message naming the file and the field), and
every mask's declared sizes (zip entry, NPY header) against the session's own image size and
:data:`MAX_MASK_BYTES` before a byte of it is inflated.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.schema import SchemaError, parse_json
from maskviewer.io.atomic import atomic_write
from maskviewer.io.npy import read_npy_header_from
from maskviewer.io.session_schema import SESSION

SESSION_SUFFIX = ".mvsession"
SESSION_JSON = "session.json"
FORMAT = "maskviewer-session"
VERSION = 1
#: the most bytes a session's JSON may have (a crafted file cannot exhaust memory)
MAX_JSON_BYTES = 32 * 2**20
#: the largest mask a session holds (as io.masks.MAX_PIXELS) and all its masks together, as float32
MAX_MASK_PIXELS = 200_000_000
MAX_MASK_BYTES = 4 * 2**30
#: room for an .npy header (numpy itself refuses headers over 10 000 bytes)
NPY_HEADER_BYTES = 64 * 1024


class SessionError(MaskviewerError):
    """A session could not be saved or read; the message says what and what to do."""


@dataclass
class SessionMask:
    """One mask: its name, pixels (``(H, W)`` float32 in 0..1), colour and visibility."""

    name: str
    data: np.ndarray
    color: tuple[int, int, int] = (255, 60, 60)
    visible: bool = True


@dataclass
class SessionImage:
    """An image with its masks; ``active`` names the mask being painted."""

    path: str
    height: int
    width: int
    masks: list[SessionMask] = field(default_factory=list)
    active: str | None = None


@dataclass
class Session:
    """Everything needed to put the window back as it was.

    Attributes
    ----------
    image : str or None
        The image shown.
    images : list of SessionImage
        Images with masks (the shown one among them when it has masks).
    model : str or None
        The model file or SavedModel folder.
    model_sha256 : str or None
        Its hash when saved (a changed model is reported on opening).
    custom_objects : list of str
        Python files defining the model's custom layers.
    mappings : dict
        Input name -> :meth:`InputMapping.to_dict` (includes how masks feed the model).
    labels : list of str or None
        Class names.
    view : dict
        Tool settings (layer, method, colours, opacity, patch settings, threshold...).
    autosave : dict or None
        For recovery files: the process that wrote it and whether it exited cleanly.
    """

    image: str | None = None
    images: list[SessionImage] = field(default_factory=list)
    model: str | None = None
    model_sha256: str | None = None
    custom_objects: list[str] = field(default_factory=list)
    mappings: dict[str, dict] = field(default_factory=dict)
    labels: list[str] | None = None
    view: dict[str, Any] = field(default_factory=dict)
    autosave: dict | None = None
    saved: str = ""

    def find_image(self, path: str) -> SessionImage | None:
        return next((im for im in self.images if im.path == path), None)


def is_folder_target(path: str | os.PathLike) -> bool:
    """A ``.mvsession`` path is one file; anything else (or an existing folder) is a folder."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() != SESSION_SUFFIX


def _ref(path: str | None, base: Path) -> dict | None:
    if not path:
        return None
    absolute = Path(path).resolve()
    try:
        relative = os.path.relpath(absolute, base.resolve())
    except ValueError:  # another drive (Windows)
        relative = None
    return {"path": str(absolute), "relative": relative}


def _resolve(ref: Any, base: Path) -> str | None:
    """The stored absolute path if it exists, else the relative one if that does."""
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref
    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str):
        raise SessionError("The session file is damaged: a file reference is not a path.")
    absolute = ref["path"]
    relative = ref.get("relative")
    if not Path(absolute).exists() and isinstance(relative, str):
        candidate = (base / relative).resolve()
        if candidate.exists():
            return str(candidate)
    return absolute


def _mask_file(i: int, j: int) -> str:
    return f"masks/image{i:03d}_mask{j:03d}.npy"


def to_json(session: Session, base: Path) -> dict:
    """The JSON document of ``session`` (paths relative to ``base`` as well)."""
    from maskviewer import __version__

    images = []
    for i, im in enumerate(session.images):
        images.append(
            {
                **_ref(im.path, base),
                "height": int(im.height),
                "width": int(im.width),
                "active": im.active,
                "masks": [
                    {"name": m.name, "color": [int(c) for c in m.color], "visible": bool(m.visible),
                     "file": _mask_file(i, j)}
                    for j, m in enumerate(im.masks)
                ],
            }
        )
    model = _ref(session.model, base)
    if model is not None:
        model["sha256"] = session.model_sha256
    return {
        "format": FORMAT,
        "version": VERSION,
        "tool_version": __version__,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "image": _ref(session.image, base),
        "images": images,
        "model": model,
        "custom_objects": [_ref(p, base) for p in session.custom_objects],
        "mappings": session.mappings,
        "labels": session.labels,
        "view": session.view,
        "autosave": session.autosave,
    }


def _mask_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def save_session(path: str | os.PathLike, session: Session, *, durable: bool = True) -> Path:
    """Write ``session`` to a folder, or to one ``.mvsession`` file (see :func:`is_folder_target`).

    Raises
    ------
    SessionError
        The location cannot be written (the message says where and why).
    """
    path = Path(path)
    try:
        if is_folder_target(path):
            return _save_folder(path, session, durable)
        return _save_file(path, session, durable)
    except OSError as exc:
        raise SessionError(
            f"The session could not be saved to {path}: {exc.strerror or exc}. Choose a place "
            "you can write to."
        ) from exc


def _save_folder(folder: Path, session: Session, durable: bool) -> Path:
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    doc = to_json(session, folder)
    written = set()
    for i, im in enumerate(session.images):
        for j, m in enumerate(im.masks):
            name = _mask_file(i, j)
            with atomic_write(folder / name, fsync=durable) as fh:
                fh.write(_mask_bytes(m.data))
            written.add(Path(name).name)
    with atomic_write(folder / SESSION_JSON, "w", fsync=durable) as fh:
        json.dump(doc, fh, indent=2)
    for old in (folder / "masks").glob("*.npy"):  # masks of an earlier save no longer listed
        if old.name not in written:
            with contextlib.suppress(OSError):
                old.unlink()
    return folder


def _save_file(path: Path, session: Session, durable: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = to_json(session, path.parent)
    with atomic_write(path, fsync=durable) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, im in enumerate(session.images):
            for j, m in enumerate(im.masks):
                zf.writestr(_mask_file(i, j), _mask_bytes(m.data))
        zf.writestr(SESSION_JSON, json.dumps(doc, indent=2))
    return path


# ---------------------------------------------------------------------------------------------
# Reading


#: what zipfile raises for damaged or unsupported archives (an encrypted entry: RuntimeError;
#: an unknown compression method or zip version: NotImplementedError)
_ZIP_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
               NotImplementedError, RuntimeError, struct.error)


class _Reader:
    """Reads files of a session folder or archive by their name inside it, within a budget.

    Every read first looks at the declared size (the zip directory's uncompressed size, or the
    file's size on disk) and refuses one over the caller's limit before a byte is read; the
    reads themselves stop at the limit too, so a zip entry whose directory lies is bounded
    as well.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self.base = path
        else:
            self.base = path.parent
            try:
                self.zip = zipfile.ZipFile(path)
            except _ZIP_ERRORS as exc:
                raise SessionError(
                    f"{path.name}: not a maskviewer session (a .mvsession file is a zip archive; "
                    "this one cannot be read, it may be damaged)."
                ) from exc

    def _check_name(self, name: str) -> None:
        if "/.." in f"/{name}" or name.startswith(("/", "\\")) or ":" in name or "\\" in name:
            raise SessionError(f"The session refers to a file outside itself ({name}).")

    def size(self, name: str) -> int:
        """The declared (uncompressed) size of ``name``, read from the directory only."""
        self._check_name(name)
        try:
            if self.zip is not None:
                return int(self.zip.getinfo(name).file_size)
            return (self.base / name).stat().st_size
        except KeyError:
            raise SessionError(f"{self.path.name}: {name} is missing from the session.") from None
        except OSError as exc:
            raise SessionError(f"{self.path.name}: {name} cannot be read ({exc.strerror or exc}).") from exc

    @contextlib.contextmanager
    def open(self, name: str, limit: int) -> Iterator[BinaryIO]:
        """``name`` opened for reading, after its declared size was checked against ``limit``."""
        declared = self.size(name)
        if declared > limit:
            raise SessionError(
                f"{self.path.name}: {name} declares {declared:,} bytes, more than the "
                f"{limit:,} the session allows for it; the file is damaged or crafted."
            )
        try:
            with (self.zip.open(name) if self.zip is not None else open(self.base / name, "rb")) as fh:
                yield fh
        except _ZIP_ERRORS as exc:
            raise SessionError(f"{self.path.name}: {name} cannot be read ({exc}).") from exc

    def read(self, name: str, limit: int) -> bytes:
        """All of ``name`` (at most ``limit`` bytes)."""
        with self.open(name, limit) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise SessionError(f"{self.path.name}: {name} is too large for a session file.")
        return data

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _load_mask(reader: _Reader, name: str, shape: tuple[int, int]) -> np.ndarray:
    """One mask: header checked against the session's ``(H, W)``, then exactly its bytes read."""
    h, w = shape
    where = f"{reader.path.name}: the mask {name}"
    with reader.open(name, h * w * 8 + NPY_HEADER_BYTES) as fh:  # float64 is the widest accepted
        try:
            arr_shape, fortran, dtype = read_npy_header_from(fh)
        except ValueError as exc:
            raise SessionError(f"{where} is damaged ({exc}).") from exc
        if arr_shape != (h, w) or dtype.hasobject or dtype.kind not in "fb":
            raise SessionError(
                f"{where} has shape {arr_shape} ({dtype}); the session says {w}×{h} float."
            )
        n = h * w * dtype.itemsize
        data = fh.read(n)
    if len(data) != n:
        raise SessionError(f"{where} is damaged (cut short: {len(data)} of {n} bytes).")
    arr = np.frombuffer(data, dtype).reshape((h, w), order="F" if fortran else "C").astype(np.float32)
    if not np.all(np.isfinite(arr)) or arr.size and (arr.min() < 0 or arr.max() > 1):
        raise SessionError(f"{where} has values outside 0..1.")
    return arr


def _check_budget(path: Path, images: list[dict]) -> None:
    """Refuse a session whose masks, as declared, exceed the pixel budget (before reading any)."""
    total = 0
    for i, entry in enumerate(images):
        pixels = entry["height"] * entry["width"]
        n = len(entry.get("masks") or [])
        if n and pixels > MAX_MASK_PIXELS:
            raise SessionError(
                f"{path.name}: images[{i}] is {entry['width']}×{entry['height']} pixels; masks of "
                f"at most {MAX_MASK_PIXELS // 1_000_000} megapixels are read."
            )
        total += pixels * n * 4
    if total > MAX_MASK_BYTES:
        raise SessionError(
            f"{path.name}: its masks would take {total / 2**30:.1f} GiB in memory (at most "
            f"{MAX_MASK_BYTES / 2**30:.1f} GiB are read from a session)."
        )


def read_document(reader: _Reader) -> dict:
    """``session.json`` parsed and checked: format, version, then every field's type and range."""
    name = reader.path.name
    try:
        doc = parse_json(reader.read(SESSION_JSON, MAX_JSON_BYTES))
    except SchemaError as exc:
        raise SessionError(f"{name}: session.json is {exc}.") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SessionError(f"{name}: not a maskviewer session.")
    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise SessionError(
            f"{name}: saved by a newer maskviewer (session version {version}); "
            "update maskviewer to open it."
        )
    try:
        return SESSION.check(doc)
    except SchemaError as exc:
        raise SessionError(f"{name}: {exc}.") from None


def load_session(path: str | os.PathLike) -> Session:
    """Read a session folder (or its ``session.json``) or a ``.mvsession`` file.

    ``session.json`` is checked against :data:`maskviewer.io.session_schema.SESSION` and the
    masks' declared sizes against a budget before any mask is read.

    Raises
    ------
    SessionError
        Missing, damaged, foreign or oversized files; the message names the file and field.
    """
    path = Path(path)
    if path.name == SESSION_JSON and path.is_file():
        path = path.parent
    if not path.exists():
        raise SessionError(f"{path}: no such session file or folder.")
    reader = _Reader(path)
    try:
        doc = read_document(reader)
        base = reader.base
        _check_budget(path, doc.get("images") or [])
        images = []
        for entry in doc.get("images") or []:
            h, w = entry["height"], entry["width"]
            masks = [
                SessionMask(m["name"], _load_mask(reader, m["file"], (h, w)),
                            tuple(m.get("color", (255, 60, 60)))[:3], m.get("visible", True))
                for m in entry.get("masks") or []
            ]
            images.append(SessionImage(_resolve(entry, base), h, w, masks, entry.get("active")))
        model = doc.get("model")
        return Session(
            image=_resolve(doc.get("image"), base),
            images=images,
            model=_resolve(model, base),
            model_sha256=model.get("sha256") if model else None,
            custom_objects=[p for p in (_resolve(r, base) for r in doc.get("custom_objects") or []) if p],
            mappings=dict(doc.get("mappings") or {}),
            labels=doc.get("labels"),
            view=dict(doc.get("view") or {}),
            autosave=doc.get("autosave"),
            saved=str(doc.get("saved") or ""),
        )
    except MemoryError:
        raise SessionError(f"{path.name}: not enough memory to open this session.") from None
    finally:
        reader.close()
