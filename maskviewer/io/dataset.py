"""Opening a data set and reading its entries' pictures, one entry at a time.

A data set is one of:

- a **folder** of images; sub-folders of images are classes (their names, sorted, are the
  labels); folders called ``masks`` and ``references`` beside the images hold a mask and a
  reference mask per image, matched by file stem;
- a **list**: a CSV file with a header (columns ``image``, and optionally ``label``,
  ``mask``, ``reference``, ``input:NAME`` for a model's other image inputs) or a JSON file
  (a list of such objects, or ``{"items": [...], "classes": [...]}``); paths are relative to
  the list file;
- **arrays**: an ``.npz`` with ``x`` (or ``images``) and optionally ``y`` (``labels``),
  ``masks``, ``references``; or an ``.npy`` of images with its labels beside it
  (``NAME_x.npy`` / ``NAME_y.npy``);
- a bundled **demo**'s held-out set (:func:`demo_dataset`).

Nothing is read whole: pictures are read when an entry is loaded (``.npy`` arrays are
memory-mapped; an ``.npz`` member or a large region image is read once and kept).
"""

from __future__ import annotations

import csv
import io as _io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.dataset import DatasetError, DatasetIndex, Entry, Source
from maskviewer.core.image import ImageData, full_scale

#: the largest list file read (a million rows of paths fit easily)
MAX_LIST_BYTES = 256 * 2**20
MAX_ROWS = 5_000_000
#: folders beside the images that hold masks and references, not classes
MASK_FOLDERS = ("masks", "mask")
REFERENCE_FOLDERS = ("references", "reference", "refs")
_IMAGE_COLUMNS = ("image", "path", "file", "filename")


def open_dataset(path: str | Path) -> DatasetIndex:
    """The data set at ``path`` (a folder, a CSV/JSON list, an ``.npz`` or ``.npy``).

    Raises
    ------
    DatasetError
        Missing path, an unknown format, a list without an image column, no images at all.
    """
    from maskviewer.io.images import IMAGE_SUFFIXES

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_dir():
        index = _folder(p, IMAGE_SUFFIXES)
    elif p.suffix.lower() == ".csv":
        index = _list(p, _csv_rows(p))
    elif p.suffix.lower() == ".json":
        index = _json(p)
    elif p.suffix.lower() in (".npz", ".npy"):
        index = _arrays(p)
    else:
        raise DatasetError(
            f"{p.name}: not a data set (a folder of images, a .csv or .json list, an .npz or .npy of arrays)"
        )
    if not index.entries:
        raise DatasetError(f"{p}: the data set holds no images")
    return index


# -- folders -------------------------------------------------------------------------------------


def _images_in(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in suffixes)


def _by_stem(folder: Path | None, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if folder is None:
        return {}
    return {f.stem: f for f in _images_in(folder, suffixes)}


def _side_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _folder(root: Path, suffixes: tuple[str, ...]) -> DatasetIndex:
    masks = _by_stem(_side_folder(root, MASK_FOLDERS), suffixes)
    refs = _by_stem(_side_folder(root, REFERENCE_FOLDERS), suffixes)
    skip = {n for n in (*MASK_FOLDERS, *REFERENCE_FOLDERS)}
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name not in skip and not d.name.startswith("."))
    classes = [d.name for d in subdirs if _images_in(d, suffixes)]
    entries = []
    pairs = [(f, None) for f in _images_in(root, suffixes)]
    for name in classes:
        pairs += [(f, name) for f in _images_in(root / name, suffixes)]
    for f, label in pairs:
        m, r = masks.get(f.stem), refs.get(f.stem)
        entries.append(Entry(
            key=f.relative_to(root).as_posix(), image=Source(str(f)), label=label,
            mask=Source(str(m)) if m else None, reference=Source(str(r)) if r else None,
        ))
    notes = [f"classes from sub-folders: {', '.join(classes)}"] if classes else []
    return DatasetIndex(root.name, str(root), "folder", entries, classes or None, notes)


# -- lists ---------------------------------------------------------------------------------------


def _read_text(p: Path) -> str:
    if p.stat().st_size > MAX_LIST_BYTES:
        raise DatasetError(f"{p.name}: larger than {MAX_LIST_BYTES >> 20} MiB; not read")
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{p.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _csv_rows(p: Path) -> list[dict[str, str]]:
    reader = csv.DictReader(_io.StringIO(_read_text(p)))
    rows = []
    try:
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise DatasetError(f"{p.name}: more than {MAX_ROWS} rows")
            rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None})
    except csv.Error as exc:
        raise DatasetError(f"{p.name}, line {reader.line_num}: {exc}") from None
    return rows


def _json(p: Path) -> DatasetIndex:
    from maskviewer.core.schema import AnyOf, List, Map, Obj, SchemaError, Str, parse_json

    cell = AnyOf(Str(), _Number(), what="a path, a label or a number")
    rows_spec = List(Map(cell, 64, "an item"), MAX_ROWS, what="a list of items")
    spec = AnyOf(rows_spec, Obj({"items": rows_spec}, {"classes": List(Str(), 100_000)}), what="a data set list")
    try:
        doc = spec.check(parse_json(_read_text(p)))
    except SchemaError as exc:
        raise DatasetError(f"{p.name}: {exc}") from None
    rows, classes = (doc, None) if isinstance(doc, list) else (doc["items"], doc.get("classes"))
    rows = [{str(k).lower(): str(v) for k, v in row.items()} for row in rows]
    index = _list(p, rows)
    index.classes = classes or index.classes
    return index


class _Number:
    """A finite JSON number, as the list's cell spec accepts it."""

    what = "a number"

    def check(self, value: Any, where: str = "") -> Any:
        from maskviewer.core.schema import SchemaError

        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise SchemaError(f"{where} must be {self.what}")
        return value


def _list(p: Path, rows: list[dict[str, str]]) -> DatasetIndex:
    if not rows:
        return DatasetIndex(p.stem, str(p.parent), "list", [])
    column = next((c for c in _IMAGE_COLUMNS if c in rows[0]), None)
    if column is None:
        raise DatasetError(f"{p.name}: no image column (name one of: {', '.join(_IMAGE_COLUMNS)})")
    base = p.parent

    def source(text: str) -> Source | None:
        return Source(str((base / text) if not Path(text).is_absolute() else Path(text))) if text else None

    entries, seen = [], set()
    for n, row in enumerate(rows, start=2):
        if not row.get(column):
            raise DatasetError(f"{p.name}, row {n}: the {column} cell is empty")
        key = row[column]
        if key in seen:
            key = f"{key}#{n}"
        seen.add(key)
        inputs = {k.split(":", 1)[1]: s for k, v in row.items() if k.startswith("input:") and (s := source(v))}
        entries.append(Entry(
            key=key, image=source(row[column]), label=row.get("label") or None,
            mask=source(row.get("mask", "")), reference=source(row.get("reference", "")), inputs=inputs,
        ))
    labels = sorted({e.label for e in entries if e.label is not None})
    classes = labels if labels and not all(_is_number(x) for x in labels) else None
    return DatasetIndex(p.stem, str(base), "list", entries, classes)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- arrays --------------------------------------------------------------------------------------


def _first(names: list[str], *wanted: str) -> str | None:
    return next((w for w in wanted if w in names), None)


def _arrays(p: Path) -> DatasetIndex:
    if p.suffix.lower() == ".npy":
        from maskviewer.io.npy import read_npy_header

        shape, _ = read_npy_header(p)
        labels_path = p.with_name(p.name.replace("_x.npy", "_y.npy")) if p.name.endswith("_x.npy") else None
        labels = np.load(labels_path, mmap_mode="r") if labels_path and labels_path.exists() else None
        return _rows(p.stem, p, str(p), len(shape) and shape[0], labels, None, None)
    with np.load(p, allow_pickle=False) as z:
        names = list(z.files)
        x = _first(names, "x", "images", "image")
        if x is None:
            raise DatasetError(f"{p.name}: no image array (name it x or images); it holds {', '.join(names)}")
        n = int(z[x].shape[0]) if z[x].ndim else 0
        y_key = _first(names, "y", "labels", "label")
        labels = np.asarray(z[y_key]) if y_key else None
    m, r = _first(names, "masks", "mask"), _first(names, "references", "reference")
    return _rows(p.stem, p, f"{p}::{x}", n, labels, f"{p}::{m}" if m else None, f"{p}::{r}" if r else None)


def _rows(name: str, p: Path, images: str, n: int, labels: Any, masks: str | None, refs: str | None) -> DatasetIndex:
    if labels is not None and len(labels) != n:
        raise DatasetError(f"{p.name}: {n} images but {len(labels)} labels")
    entries = [
        Entry(
            key=f"{name}[{i}]", image=Source(images, i),
            label=None if labels is None else _label_text(labels[i]),
            mask=Source(masks, i) if masks else None, reference=Source(refs, i) if refs else None,
        )
        for i in range(n)
    ]
    return DatasetIndex(name, str(p.parent), "arrays", entries)


def _label_text(value: Any) -> str:
    v = np.asarray(value)
    if v.ndim:
        raise DatasetError("labels must be one value per image (a class index, name or number)")
    item = v.item()
    return str(int(item)) if isinstance(item, float) and item.is_integer() and v.dtype.kind in "iu" else str(item)


# -- the demos' held-out sets ---------------------------------------------------------------------


def demo_dataset(demo: Any) -> DatasetIndex:
    """The held-out set a bundled demo's score was measured on, as a data set.

    The demos keep it as images and labels (``test_x``/``test_y``), as an ``.npz`` of inputs
    whose last channel is the mask (``data`` with ``x``, ``y``; fed as a mask channel), or as
    crops (``corners``, ``size``) of region images, one per model input (``regions``; the
    binary demo's output region is the reference mask).
    """
    score = demo.score or {}
    if "test_x" in score:
        x, y = demo.path(score["test_x"]), demo.path(score["test_y"])
        labels = np.load(y, mmap_mode="r", allow_pickle=False)
        index = _rows(demo.name, x, str(x), len(labels), labels, None, None)
    elif "data" in score and "regions" not in score:
        data = demo.path(score["data"])
        with np.load(data, allow_pickle=False) as z:
            n, channels = int(z["x"].shape[0]), int(z["x"].shape[-1])
            labels = np.asarray(z["y"])
        member = f"{data}::x"
        entries = [
            Entry(key=f"{demo.name}[{i}]", image=Source(member, i, channels=(0, channels - 1)),
                  label=_label_text(labels[i]), mask=Source(member, i, channels=(channels - 1, channels)))
            for i in range(n)
        ]
        index = DatasetIndex(demo.name, str(data.parent), "demo", entries)
    elif "regions" in score:
        index = _crops(demo, score)
    else:
        raise DatasetError(f"the demo {demo.name!r} has no held-out set")
    index.kind, index.name = "demo", demo.name
    return index


def _crops(demo: Any, score: dict) -> DatasetIndex:
    data = demo.path(score["data"])
    with np.load(data, allow_pickle=False) as z:
        corners = np.asarray(z["corners"]).reshape(-1, 2)
        size = int(z["size"])
        labels = np.asarray(z["y"]) if "y" in z.files else None
    regions = {name: str(demo.path(rel)) for name, rel in score["regions"].items()}
    first, *others = regions
    model_outputs = set(getattr(demo, "outputs", None) or [])
    reference = next((n for n in others if n in model_outputs or n in ("mark", "mask", "reference")), None)
    entries = []
    for i, (y, x) in enumerate(corners.tolist()):
        crop = {n: Source(path, corner=(int(y), int(x)), size=size) for n, path in regions.items()}
        entries.append(Entry(
            key=f"{demo.name}[{i}]", image=crop[first],
            label=None if labels is None else _label_text(labels[i]),
            reference=crop[reference] if reference else None,
            inputs={n: crop[n] for n in others if n != reference},
        ))
    return DatasetIndex(demo.name, str(data.parent), "demo", entries)


# -- reading pictures ----------------------------------------------------------------------------


class PictureReader:
    """Reads the pictures entries name; array files and region images are opened once and kept.

    Thread-safe: the evaluator's loader thread and the GUI's may share one.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _array(self, path: str) -> np.ndarray:
        with self._lock:
            if path not in self._arrays:
                self._arrays[path] = _open_array(path)
            return self._arrays[path]

    def picture(self, source: Source) -> ImageData:
        """The picture ``source`` names, as an :class:`ImageData` (crops and rows applied)."""
        from maskviewer.io.images import load_image

        if source.row is None and source.corner is None:
            return load_image(source.path)
        if source.row is None:
            whole = self._array(source.path)
        else:
            whole = self._array(source.path)[source.row]
        a = np.asarray(whole)
        if source.corner is not None:
            y, x = source.corner
            a = a[y : y + source.size, x : x + source.size]
        if source.channels is not None:
            a = a[..., source.channels[0] : source.channels[1]]
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.size == 0:
            raise DatasetError(f"{source.describe()}: not an image (shape {a.shape})")
        a = np.ascontiguousarray(a)
        return ImageData(a, path=source.describe(), value_max=full_scale(a))

    def mask(self, source: Source, shape: tuple[int, int]) -> np.ndarray:
        """A mask in 0..1 of ``shape`` (as :func:`maskviewer.io.masks.load_mask` reads one)."""
        from maskviewer.io.masks import load_mask

        if source.row is None and source.corner is None:
            return load_mask(source.path, shape)
        a = self.picture(source).as_unit_float()[..., 0]
        if a.shape != tuple(shape):
            raise DatasetError(f"{source.describe()}: mask {a.shape[1]}×{a.shape[0]}, image {shape[1]}×{shape[0]}")
        return np.clip(a, 0.0, 1.0).astype(np.float32)

    def reference(self, source: Source) -> np.ndarray:
        """A reference mask as booleans."""
        from maskviewer.core.metrics import reference_to_mask

        return reference_to_mask(self.picture(source).array)


def _open_array(path: str) -> np.ndarray:
    """``FILE.npy`` memory-mapped, ``FILE.npz::MEMBER`` read, or an image file's pixels."""
    if "::" in path:
        file, member = path.rsplit("::", 1)
        with np.load(file, allow_pickle=False) as z:
            return np.asarray(z[member])
    if path.lower().endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    from maskviewer.io.images import load_image

    return load_image(path).array
