"""Masks: painting, filling, shapes and undo, on float32 arrays in 0..1.

Coordinates are pixel indices as floats: ``(x, y)`` with pixel ``(row r, column c)`` centred
on ``(c, r)``. Every edit touches only a bounding box and records, tile by tile, the part that
changed (before and after), so undo and redo restore exact arrays and a stroke across a 4096²
mask costs what it touches, not the whole image.

Blend rules (napari-like): the brush raises values to ``max(current, dab * intensity)`` and the
eraser lowers them to ``min(current, 1 - dab * intensity)``, so going over the same place within
a stroke never accumulates.

This module holds :class:`Mask` and :class:`MaskSet` and is the place to import every mask
name from; the work is done in its siblings: :mod:`~maskviewer.core.mask_history` (the undo
recorder and history), :mod:`~maskviewer.core.mask_paint` (brush and strokes),
:mod:`~maskviewer.core.mask_fill` (flood fill) and :mod:`~maskviewer.core.mask_shapes`
(rectangles, ellipses, polygons).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.mask_fill import flood_fill, flood_region, runs_to_mask
from maskviewer.core.mask_history import (
    DEFAULT_HISTORY_BYTES,
    PATCH_OVERHEAD,
    TILE,
    Box,
    History,
    HistoryEntry,
    Patch,
    Recorder,
    clip_box,
    union_box,
)
from maskviewer.core.mask_paint import Brush, Stroke, dab, dab_kernel, stroke_points
from maskviewer.core.mask_shapes import ellipse, polygon, rectangle

__all__ = [
    "DEFAULT_HISTORY_BYTES",
    "MASK_COLORS",
    "PATCH_OVERHEAD",
    "TILE",
    "Box",
    "Brush",
    "History",
    "HistoryEntry",
    "Mask",
    "MaskSet",
    "Patch",
    "Recorder",
    "Stroke",
    "clip_box",
    "dab",
    "dab_kernel",
    "ellipse",
    "flood_fill",
    "flood_region",
    "polygon",
    "rectangle",
    "runs_to_mask",
    "stroke_points",
    "union_box",
]

#: Colours given to new masks in turn (RGB).
MASK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64),
    (64, 160, 255),
    (64, 220, 96),
    (255, 200, 0),
    (200, 80, 255),
    (0, 220, 220),
)


# ---------------------------------------------------------------------------------------------
# Masks


@dataclass(eq=False)
class Mask:
    """One named mask over an image.

    Attributes
    ----------
    name : str
        Unique within its :class:`MaskSet`.
    data : ndarray
        ``(H, W)`` float32 in 0..1.
    color : tuple of int
        RGB used to draw it.
    visible : bool
        Drawn over the image.
    dirty : bool
        Changed since it was last saved or loaded.
    """

    name: str
    data: np.ndarray
    color: tuple[int, int, int] = MASK_COLORS[0]
    visible: bool = True
    dirty: bool = False
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    def is_binary(self) -> bool:
        """True when every value is exactly 0 or 1."""
        return bool(np.all((self.data == 0) | (self.data == 1)))


# ---------------------------------------------------------------------------------------------
# A set of masks over one image


def _unique_name(name: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if name not in taken:
        return name
    i = 2
    while f"{name} {i}" in taken:
        i += 1
    return f"{name} {i}"


#: blank masks of more pixels than this take memory only where they are painted
LAZY_ABOVE = 1 << 22


def blank(shape: tuple[int, int]) -> np.ndarray:
    """A zero ``(H, W)`` float32 mask.

    Up to :data:`LAZY_ABOVE` pixels its pages are written now (the first dabs do not
    page-fault); a larger one comes from ``np.zeros`` (the system's zero pages: memory is
    taken only where it is painted, so a 14,000² image's blank masks cost nothing).
    """
    if shape[0] * shape[1] > LAZY_ABOVE:
        return np.zeros(shape, dtype=np.float32)
    data = np.empty(shape, dtype=np.float32)
    data.fill(0.0)
    return data


@dataclass(eq=False)
class MaskSet:
    """Several named masks over one image, one of them active, with a shared undo history.

    Events
    ------
    changed(mask, box)
        Pixels of ``mask`` changed inside ``box`` (``None``: anywhere).
    masks_changed()
        A mask was added, removed, renamed, recoloured or made active.
    """

    height: int
    width: int
    history_bytes: int = DEFAULT_HISTORY_BYTES
    image_path: str | None = None
    masks: list[Mask] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history = History(self.history_bytes)
        self.changed = Event()
        self.masks_changed = Event()
        self._active: Mask | None = self.masks[0] if self.masks else None
        self._scratch: np.ndarray | None = None

    def _backup(self) -> np.ndarray:
        """The undo recorder's buffer, shared by all edits (one at a time) and written once."""
        if self._scratch is None:
            self._scratch = blank(self.shape)
        return self._scratch

    # -- the list ----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.masks]

    @property
    def active(self) -> Mask | None:
        return self._active

    @property
    def dirty(self) -> bool:
        """True when any mask holds changes not saved to a file."""
        return any(m.dirty for m in self.masks)

    def get(self, name: str) -> Mask | None:
        return next((m for m in self.masks if m.name == name), None)

    def add(
        self, name: str = "mask", data: np.ndarray | None = None,
        color: tuple[int, int, int] | None = None,
    ) -> Mask:
        """Add a mask (blank unless ``data``), make it active and return it."""
        if data is None:
            data = blank(self.shape)
        else:
            data = np.array(data, dtype=np.float32, order="C")  # a copy: the caller keeps theirs
            if data.shape != self.shape:
                raise ValueError(f"mask shape {data.shape} != image shape {self.shape}")
        used = {m.color for m in self.masks}
        if color is None:
            color = next((c for c in MASK_COLORS if c not in used), MASK_COLORS[len(self.masks) % len(MASK_COLORS)])
        mask = Mask(_unique_name(name.strip() or "mask", self.names), data, tuple(color))
        self.masks.append(mask)
        self._active = mask
        self.masks_changed.emit()
        return mask

    def remove(self, name: str) -> None:
        mask = self.get(name)
        if mask is None:
            return
        i = self.masks.index(mask)
        self.masks.remove(mask)
        self.history.forget(mask)
        if self._active is mask:
            self._active = self.masks[min(i, len(self.masks) - 1)] if self.masks else None
        self.masks_changed.emit()

    def rename(self, old: str, new: str) -> str:
        """Rename a mask; returns the name given (made unique). Raises KeyError if absent."""
        mask = self.get(old)
        if mask is None:
            raise KeyError(old)
        new = new.strip()
        if not new or new == old:
            return old
        mask.name = _unique_name(new, [n for n in self.names if n != old])
        self.masks_changed.emit()
        return mask.name

    def set_active(self, name: str) -> None:
        mask = self.get(name)
        if mask is not None and mask is not self._active:
            self._active = mask
            self.masks_changed.emit()

    def set_color(self, name: str, color: tuple[int, int, int]) -> None:
        mask = self.get(name)
        if mask is not None:
            mask.color = tuple(int(c) for c in color)
            self.masks_changed.emit()

    def mark_saved(self, name: str | None = None, path: str | None = None) -> None:
        for m in self.masks:
            if name is None or m.name == name:
                m.dirty = False
                if path is not None:
                    m.path = path

    # -- edits -------------------------------------------------------------------------------

    def _target(self, name: str | None) -> Mask:
        mask = self.get(name) if name is not None else self._active
        if mask is None:
            raise KeyError(name or "no active mask")
        return mask

    def _done(self, entry: HistoryEntry | None) -> HistoryEntry | None:
        if entry is not None:
            self.history.push(entry)
            entry.mask.dirty = True
            self.changed.emit(entry.mask, entry.box)
        return entry

    def begin_stroke(self, brush: Brush, erase: bool = False, name: str | None = None) -> Stroke:
        """A stroke on the active mask; feed it points, then :meth:`end_stroke` it."""
        return Stroke(self._target(name), brush, erase, self._backup())

    def stroke_to(self, stroke: Stroke, x: float, y: float) -> Box | None:
        """Extend ``stroke`` and announce the changed box."""
        box = stroke.add_point(x, y)
        if box is not None:
            self.changed.emit(stroke.mask, box)
        return box

    def end_stroke(self, stroke: Stroke) -> HistoryEntry | None:
        return self._done(stroke.finish())

    def _edit(self, label: str, name: str | None, fn) -> HistoryEntry | None:
        mask = self._target(name)
        rec = Recorder(mask, label, self._backup())
        fn(mask.data, rec)
        return self._done(rec.commit())

    def fill(self, x: int, y: int, value: float = 1.0, tolerance: float = 0.0,
             name: str | None = None) -> HistoryEntry | None:
        """Flood-fill from ``(x, y)``; see :func:`flood_fill`."""
        return self._edit("Fill", name, lambda d, r: flood_fill(d, x, y, value, tolerance, r))

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, value: float = 1.0,
                  erase: bool = False, name: str | None = None) -> HistoryEntry | None:
        return self._edit("Rectangle", name, lambda d, r: rectangle(d, x0, y0, x1, y1, value, erase, r))

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, value: float = 1.0,
                erase: bool = False, name: str | None = None) -> HistoryEntry | None:
        return self._edit("Ellipse", name, lambda d, r: ellipse(d, x0, y0, x1, y1, value, erase, r))

    def polygon(self, points: Sequence[tuple[float, float]], value: float = 1.0,
                erase: bool = False, name: str | None = None) -> HistoryEntry | None:
        return self._edit("Polygon", name, lambda d, r: polygon(d, points, value, erase, r))

    def invert(self, name: str | None = None) -> HistoryEntry | None:
        """``1 - mask`` (values stay in 0..1)."""
        def fn(d: np.ndarray, r: Recorder) -> None:
            r.touch((0, self.height, 0, self.width))
            np.subtract(np.float32(1.0), d, out=d)

        return self._edit("Invert", name, fn)

    def clear(self, name: str | None = None) -> HistoryEntry | None:
        def fn(d: np.ndarray, r: Recorder) -> None:
            r.touch((0, self.height, 0, self.width))
            d.fill(0.0)

        return self._edit("Clear", name, fn)

    def replace(self, data: np.ndarray, name: str | None = None, label: str = "Load") -> HistoryEntry | None:
        """Set the whole mask to ``data`` (an undoable edit, e.g. loading a file)."""
        data = np.asarray(data, dtype=np.float32)
        if data.shape != self.shape:
            raise ValueError(f"mask shape {data.shape} != image shape {self.shape}")

        def fn(d: np.ndarray, r: Recorder) -> None:
            r.touch((0, self.height, 0, self.width))
            d[...] = data

        return self._edit(label, name, fn)

    def undo(self) -> HistoryEntry | None:
        entry = self.history.undo()
        if entry is not None:
            entry.mask.dirty = True
            self.changed.emit(entry.mask, entry.box)
        return entry

    def redo(self) -> HistoryEntry | None:
        entry = self.history.redo()
        if entry is not None:
            entry.mask.dirty = True
            self.changed.emit(entry.mask, entry.box)
        return entry
