"""The one place export files are written: pictures, raw values, stacked arrays, text.

Every file is written atomically (a temporary file beside it, renamed into place: a killed
process never leaves a half-written file; :mod:`maskviewer.io.atomic`). :class:`ArtifactWriter`
turns :class:`~maskviewer.io.export.items.ExportItem` s into files and describes each as a
manifest entry; :class:`NpyStack` builds one ``.npy`` row by row. Names come from
:mod:`maskviewer.io.export.naming`, pixels from :mod:`~maskviewer.io.export.pictures`, bytes
from :mod:`~maskviewer.io.export.encoding`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.io.atomic import atomic_write, write_atomic
from maskviewer.io.export import naming
from maskviewer.io.export.banded import write_banded
from maskviewer.io.export.encoding import encode_png, npy_header
from maskviewer.io.export.items import (
    MASK_TINT,
    NAME_KEYS,
    NPY_LAYOUTS,
    ExportError,
    ExportItem,
    ExportStyle,
)
from maskviewer.io.export.pictures import (
    HeatPicture,
    canvas,
    enlarge,
    heat_pictures,
    image_rgb,
    is_large,
    legend_rgba,
    map_on_image,
    mask_png_array,
    montage_rgba,
    picture_scale,
    tint_overlay,
)
from maskviewer.io.export.stack import NpyStack, StackSet  # noqa: F401  (NpyStack: re-exported)

#: a job for :meth:`ArtifactWriter.write_batch`: the item, its image, the file stem
Job = tuple["ExportItem", "ImageData | None", "str | None"]


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and make sure files can be written in it.

    Raises
    ------
    ExportError
        The folder cannot be created or written (the message names it and says what to do).
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise ExportError(f"{folder} is a file, not a folder: choose a folder for the export.")
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".maskviewer-write-test.~", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except ExportError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(
            f"Cannot write to the output folder {folder}: {reason}. Choose a folder you can "
            "write to."
        ) from exc
    return folder


def save_png(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write a uint8/uint16 array as PNG, atomically."""
    write_atomic(path, encode_png(array), fsync=durable)


def save_npy(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write an array as ``.npy`` (what :func:`numpy.save` writes), atomically."""
    a = np.asarray(array)
    if not a.flags.c_contiguous:
        a = a.copy()
    if a.dtype.hasobject:
        raise ValueError("object arrays are not written")
    write_atomic(path, npy_header(a.shape, a.dtype.str), a.reshape(-1).view(np.uint8), fsync=durable)


def save_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` (a table, a text) atomically."""
    write_atomic(path, data, fsync=durable)


@contextlib.contextmanager
def open_text(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file to stream into, renamed into place (and flushed to disk) when the block ends
    without an exception; removed otherwise."""
    with atomic_write(path, "w") as out:
        yield out


def _record(rel: str, array: np.ndarray) -> dict:
    """A file's record in a manifest entry: its path, shape and dtype."""
    return {"path": rel, "shape": [int(d) for d in array.shape], "dtype": _dtype_name(array.dtype)}


@functools.lru_cache(maxsize=32)
def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype)


class ArtifactWriter:
    """Writes :class:`ExportItem` s into a folder and describes each as a manifest entry.

    Parameters
    ----------
    out_dir : path
        The export folder (must exist and be writable: see :func:`check_writable`).
    style : ExportStyle
    overwrite : bool
        Replace files that exist; otherwise an existing file is an :class:`ExportError`.
    durable : bool
        fsync every file (slow for thousands of small files; the files are renamed into place
        atomically either way, so an interrupted run leaves no partial file).
    npy_layout : str
        ``"files"``: one ``.npy`` per item beside its pictures. ``"stacked"``: the raw values of
        all items with the same stem and shape are rows of one ``.npy`` in ``stack_dir``
        (``arrays/activation_conv1_mean.npy``, ``(rows, h, w)``); the manifest gives each
        item's ``row``. Call :meth:`close` when done (it writes the stacks' headers).
    stack_dir : str
        Folder (relative) of the stacked arrays.
    stack_token : str, optional
        The random part of the stacks' temporary file names (a resumable export keeps its
        run's token in its journal, to find them again); default: random per stack.
    """

    def __init__(
        self, out_dir: str | os.PathLike, style: ExportStyle | None = None, *, overwrite: bool = False,
        durable: bool = True, npy_layout: str = "files", stack_dir: str = "arrays",
        stack_token: str | None = None,
    ) -> None:
        if npy_layout not in NPY_LAYOUTS:
            raise ExportError(f"Unknown NPY layout {npy_layout!r}; use {' or '.join(NPY_LAYOUTS)}.")
        self.npy_layout = npy_layout
        self.stack_dir = stack_dir.strip("/")
        self.stacks = StackSet(self.stack_dir, stack_token, self._target)
        #: stacked array (relative path) -> ``(stem, row shape, dtype)``, what a journal keeps
        self.stack_keys = self.stacks.keys
        self.out_dir = Path(out_dir)
        self._root = os.path.join(os.fspath(self.out_dir), "")
        self.style = style or ExportStyle()
        self.overwrite = overwrite
        self.durable = durable
        # recently used folders: None for one that existed, else the names written in it (a
        # folder this writer created holds nothing else, so its files need no look on disk)
        self._dirs: collections.OrderedDict[str, set[str] | None] = collections.OrderedDict()

    def planned_paths(self, item: ExportItem, stem: str, with_image: bool = True) -> list[Path]:
        """The files :meth:`write` would create for ``item`` (to ask before overwriting)."""
        return naming.planned_paths(self.out_dir, item, stem, self.style, with_image)

    def _target(self, rel: str) -> str:
        """The absolute path of ``rel``, its folder made; an existing file is refused unless
        overwriting."""
        path = naming.native_path(self._root, rel)
        parent, _, name = path.rpartition(os.sep)
        dirs = self._dirs
        if parent in dirs:
            dirs.move_to_end(parent)
            written = dirs[parent]
        else:
            self._refuse_links(parent)
            if os.path.isdir(parent):
                written = None
            else:
                os.makedirs(parent, exist_ok=True)
                written = set()
            dirs[parent] = written
            if len(dirs) > 1024:
                dirs.popitem(last=False)  # forgotten: its files are looked for on disk again
        if not self.overwrite:
            if written is None:
                taken = os.path.lexists(path)
            else:
                taken = name in written
                written.add(name)
            if taken:
                raise ExportError(
                    f"{path} exists already; it was not overwritten. Choose another folder or "
                    "allow overwriting."
                )
        return path

    def _refuse_links(self, parent: str) -> None:
        """Refuse a folder under the export folder that is a link: files are never written
        through a link planted in the output folder."""
        root = self._root.rstrip(os.sep)
        here = parent
        while len(here) > len(root) and here.startswith(self._root):
            if os.path.islink(here):
                raise ExportError(f"{here} is a link; the export writes no file through a link.")
            here = os.path.dirname(here)

    def _save_png(self, stem: str, role: str, picture: np.ndarray) -> dict:
        rel = naming.file_name(stem, role)
        save_png(self._target(rel), picture, self.durable)
        return _record(rel, picture)

    def write(self, item: ExportItem, image: ImageData | None, stem: str | None = None) -> dict:
        """Write ``item``'s files (``stem`` relative to the folder) and return its manifest entry.

        Parameters
        ----------
        item : ExportItem
        image : ImageData or None
            The image the item belongs to: sets the PNG resolution and is under the overlay.
            Without it, maps are written at the frame's size and no overlay is made.
        stem : str, optional
            Relative path without suffix; default ``item.stem()``.
        """
        result = self.write_batch([(item, image, stem)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def write_batch(self, jobs: list[Job]) -> list[dict | Exception]:
        """Write many items; the manifest entry of each, or what went wrong writing it.

        The same files as :meth:`write` item by item, but the heatmaps of items that share a
        map size, frame and image size (a batch's maps of one layer) are coloured, stretched
        and blended in one go. An :class:`ExportError` or ``OSError`` is returned in the
        item's place (the others are still written; running out of memory on one item is an
        :class:`ExportError` of that item); other exceptions propagate.
        """
        jobs = [(item, image, stem or item.stem()) for item, image, stem in jobs]
        clash = naming.colliding_jobs(
            [stem for _item, _image, stem in jobs],
            [naming.planned_roles(item, self.style, image is not None) for item, image, _stem in jobs],
        )
        pictures: dict[int, HeatPicture] = {}
        if "png" in self.style.formats:
            groups: dict[tuple, list[int]] = {}
            for i, (item, image, _stem) in enumerate(jobs):
                if item.is_heat and item.is_map and np.ndim(item.values) == 2:
                    place = canvas(item, image)
                    if not is_large(place[1], place[2]):  # large ones are made band by band
                        groups.setdefault((np.shape(item.values), *place), []).append(i)
            for (_shape, frame, h, w), idx in groups.items():
                try:
                    made = heat_pictures([jobs[i][0] for i in idx], [jobs[i][1] for i in idx], frame, h, w, self.style)
                except MemoryError:
                    continue  # made one by one below: only an item that cannot be made fails
                pictures.update(zip(idx, made, strict=True))
        out: list[dict | Exception] = []
        for i, (item, image, stem) in enumerate(jobs):
            if i in clash:  # checked before any file: neither replaces the other's
                other = jobs[clash[i]][0]
                out.append(ExportError(
                    f"{item.kind} {item.name!r} and {other.kind} {other.name!r} would be written to "
                    f"the same files ({stem}); nothing of the second was written."
                ))
                continue
            try:
                out.append(self._write_one(item, image, stem, pictures.get(i)))
            except (MaskviewerError, OSError) as exc:
                out.append(exc)
            except MemoryError:
                out.append(ExportError(f"{item.image or stem}: not enough memory to make its pictures."))
        self.stacks.flush()  # a batch's rows in one write per array
        return out

    def _write_one(self, item: ExportItem, image: ImageData | None, stem: str, picture: HeatPicture | None) -> dict:
        """Write one item's files; its manifest entry."""
        entry: dict[str, Any] = {
            "image": item.image,
            "kind": item.kind,
            NAME_KEYS[item.kind]: item.name,
            "method": item.method or None,
            "class": None if item.class_index is None else int(item.class_index),
        }
        values = np.asarray(item.values)
        files: dict[str, dict] = {}
        if "npy" in self.style.formats or not item.is_map:
            files["npy"] = self._write_raw(item, values, stem)
            if "row" in files["npy"]:
                entry["npy_row"] = files["npy"]["row"]
        if "png" in self.style.formats:
            if item.tiles is not None:
                files["grid"] = self._save_png(stem, "grid", montage_rgba(item.tiles, self.style, item.vrange))
            if item.is_map:
                files.update(self._write_pictures(item, values, image, stem, picture))
            if item.plot is not None:
                files["plot"] = self._save_png(stem, "plot", item.plot)
        colours = files.pop("colour_range", None)
        if colours is not None:
            entry["colour_range"] = [float(colours["lo"]), float(colours["hi"])]
        entry["files"] = files
        # the PNG and NPY at the top, as the manifest promises: paths, shapes and dtypes
        for role in ("png", "npy"):
            entry[role] = files.get(role, {}).get("path")
        main = files.get("npy") or files.get("png")
        entry["shape"] = main["shape"] if main else list(values.shape)
        entry["dtype"] = main["dtype"] if main else str(values.dtype)
        entry.update(item.info)
        return entry

    def _write_raw(self, item: ExportItem, values: np.ndarray, stem: str) -> dict:
        """The raw values (float32; bool stays bool) as a file or a stacked array's row; the record."""
        raw = values if values.dtype == np.bool_ else values.astype(np.float32, copy=False)
        if self.npy_layout == "stacked":
            rel, row = self.stacks.append(naming.stack_base(stem), raw)
            return {**_record(rel, raw), "row": row}
        rel = naming.file_name(stem, "npy")
        save_npy(self._target(rel), raw, self.durable)
        return _record(rel, raw)

    def resume_stacks(self, stacks: dict[str, tuple[str, tuple[int, ...], str, int]]) -> None:
        """Go on with the stacked arrays of a killed run (see :meth:`StackSet.resume`)."""
        self.stacks.resume(stacks)

    def sync(self) -> None:
        """Put the stacked arrays' rows on the disk (before a journal vouches for them)."""
        self.stacks.flush(fsync=self.durable)

    def close(self) -> list[str]:
        """Finish the stacked arrays (headers written, files renamed into place); their paths."""
        return self.stacks.close(fsync=self.durable)

    def suspend(self) -> None:
        """Stop without finishing the stacked arrays, leaving their temporary files for a
        resumed run (an interrupted command-line export)."""
        self.stacks.suspend()

    def abandon(self) -> None:
        """Drop unfinished stacked arrays (an export that failed or was cancelled)."""
        self.stacks.abandon()

    def _write_pictures(
        self, item: ExportItem, values: np.ndarray, image: ImageData | None, stem: str, made: HeatPicture | None
    ) -> dict[str, dict]:
        """A map's picture, overlay and legend; their records (and the colours' value range)."""
        files: dict[str, dict] = {}
        if values.ndim == 3:  # a grid's map stack: the picture is the montage
            return files
        frame, h, w = canvas(item, image)
        if made is None and is_large(h, w):
            return write_banded(self, item, values, image, stem, frame, (h, w))
        if item.is_heat:
            if made is None:  # not coloured with its batch
                made = heat_pictures([item], [image], frame, h, w, self.style)[0]
            picture, over, (lo, hi) = made
            files["colour_range"] = {"lo": lo, "hi": hi}
            if self.style.legend:
                legend = legend_rgba(self.style.colormap, lo, hi, item.caption or item.method)
                files["legend"] = self._save_png(stem, "legend", legend)
        else:
            background = image_rgb(image) if image is not None and self.style.overlay else None
            weight = map_on_image(values.astype(np.float32), frame, h, w, order="nearest")
            over = tint_overlay(background, weight, MASK_TINT, self.style.alpha) if background is not None else None
            if item.kind == "binary":
                # the exact mask at the map's own resolution; the overlay shows it on the image
                picture = values.astype(np.uint8) * 255
            else:  # mask: image pixels
                picture = mask_png_array(values)
        factor = picture_scale(self.style.scale, h, w)  # mask and binary PNGs are data: exact size
        files["png"] = self._save_png(stem, "png", enlarge(picture, factor) if item.is_heat else picture)
        if over is not None:
            files["overlay"] = self._save_png(stem, "overlay", enlarge(over, factor))
        return files
