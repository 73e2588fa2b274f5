"""Masks: painting, filling, shapes and undo, on float32 arrays in 0..1.

Coordinates are pixel indices as floats: ``(x, y)`` with pixel ``(row r, column c)`` centred
on ``(c, r)``. Every edit touches only a bounding box and records, tile by tile, the part that
changed (before and after), so undo and redo restore exact arrays and a stroke across a 4096²
mask costs what it touches, not the whole image.

Blend rules (napari-like): the brush raises values to ``max(current, dab * intensity)`` and the
eraser lowers them to ``min(current, 1 - dab * intensity)``, so going over the same place within
a stroke never accumulates.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.events import Event

#: Side of the square tiles the undo recorder copies on first touch.
TILE = 128
#: Default cap of the undo history, in bytes (before and after patches together).
DEFAULT_HISTORY_BYTES = 256 * 1024 * 1024
#: Fixed cost counted per stored patch (its box and bookkeeping), so the cap also bounds counts.
PATCH_OVERHEAD = 64

#: Colours given to new masks in turn (RGB).
MASK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64),
    (64, 160, 255),
    (64, 220, 96),
    (255, 200, 0),
    (200, 80, 255),
    (0, 220, 220),
)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both boxes (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def clip_box(box: Box, shape: tuple[int, int]) -> Box | None:
    """``box`` clipped to an array of ``shape``; None when nothing is left."""
    y0, y1 = max(box[0], 0), min(box[1], shape[0])
    x0, x1 = max(box[2], 0), min(box[3], shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    return (y0, y1, x0, x1)


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
# Undo history


@dataclass
class Patch:
    """One changed box of a mask: values before and after (a scalar where constant)."""

    box: Box
    before: np.ndarray | float
    after: np.ndarray | float

    @property
    def nbytes(self) -> int:
        size = PATCH_OVERHEAD
        for v in (self.before, self.after):
            if isinstance(v, np.ndarray):
                size += v.nbytes
        return size


@dataclass
class HistoryEntry:
    """One undoable edit (a whole stroke, a fill, a shape...)."""

    mask: Mask
    patches: list[Patch]
    label: str = ""

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches)

    @property
    def box(self) -> Box | None:
        out: Box | None = None
        for p in self.patches:
            out = union_box(out, p.box)
        return out


def _compact(values: np.ndarray) -> np.ndarray | float:
    """A scalar for a constant patch (a blank area costs nothing), else a copy."""
    first = values.flat[0]
    if np.all(values == first):
        return float(first)
    return values.copy()


class Recorder:
    """Copy-on-write backup of the tiles an edit touches, turned into patches at the end.

    Call :meth:`touch` with a box *before* writing into it; :meth:`commit` compares the saved
    tiles with the mask and keeps, per tile, only the box that changed.
    """

    def __init__(self, mask: Mask, label: str = "", backup: np.ndarray | None = None) -> None:
        self.mask = mask
        self.label = label
        h, w = mask.shape
        # a reused, already-written buffer: a fresh one would page-fault on every first touch
        if backup is None or backup.shape != mask.data.shape:
            backup = np.empty_like(mask.data)
        self._backup = backup
        self._saved = np.zeros((-(-h // TILE), -(-w // TILE)), dtype=bool)
        self.box: Box | None = None

    def touch(self, box: Box) -> None:
        """Save the tiles under ``box`` (``y0, y1, x0, x1``) that are not saved yet."""
        y0, y1, x0, x1 = box
        ty0, ty1 = y0 // TILE, (y1 - 1) // TILE + 1
        tx0, tx1 = x0 // TILE, (x1 - 1) // TILE + 1
        sub = self._saved[ty0:ty1, tx0:tx1]
        if not sub.all():
            data, backup = self.mask.data, self._backup
            for ty, tx in np.argwhere(~sub):
                ys = slice((ty0 + ty) * TILE, (ty0 + ty + 1) * TILE)
                xs = slice((tx0 + tx) * TILE, (tx0 + tx + 1) * TILE)
                backup[ys, xs] = data[ys, xs]
            sub[:] = True
        self.box = union_box(self.box, box)

    def commit(self) -> HistoryEntry | None:
        """The entry holding what changed since the first touch (None if nothing did)."""
        data, backup = self.mask.data, self._backup
        patches = []
        for ty, tx in np.argwhere(self._saved):
            ys = slice(ty * TILE, (ty + 1) * TILE)
            xs = slice(tx * TILE, (tx + 1) * TILE)
            b, a = backup[ys, xs], data[ys, xs]
            diff = b != a
            if not diff.any():
                continue
            rows = np.flatnonzero(diff.any(axis=1))
            cols = np.flatnonzero(diff.any(axis=0))
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            box = (ys.start + r0, ys.start + r1, xs.start + c0, xs.start + c1)
            patches.append(
                Patch(box, _compact(b[r0:r1, c0:c1]), _compact(a[r0:r1, c0:c1]))
            )
        self._saved[:] = False
        if not patches:
            return None
        return HistoryEntry(self.mask, patches, self.label)


class History:
    """Undo/redo of whole edits, capped in bytes: the oldest entries are dropped first."""

    def __init__(self, max_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._undo: deque[HistoryEntry] = deque()
        self._redo: deque[HistoryEntry] = deque()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by undo and redo entries together (always <= ``max_bytes``)."""
        return self._bytes

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, entry: HistoryEntry) -> None:
        """Record a new edit; the redo list is cleared, then old entries go to fit the cap."""
        for old in self._redo:
            self._bytes -= old.nbytes
        self._redo.clear()
        self._undo.append(entry)
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes and self._undo:
            self._bytes -= self._undo.popleft().nbytes

    def undo(self) -> HistoryEntry | None:
        """Restore the state before the newest edit; returns that edit (None if none)."""
        if not self._undo:
            return None
        entry = self._undo.pop()
        _put_back(entry, after=False)
        self._redo.append(entry)
        return entry

    def redo(self) -> HistoryEntry | None:
        """Apply again the newest undone edit; returns it (None if none)."""
        if not self._redo:
            return None
        entry = self._redo.pop()
        _put_back(entry, after=True)
        self._undo.append(entry)
        return entry

    def forget(self, mask: Mask) -> None:
        """Drop every entry of ``mask`` (it was deleted)."""
        for stack in (self._undo, self._redo):
            keep = [e for e in stack if e.mask is not mask]
            for e in stack:
                if e.mask is mask:
                    self._bytes -= e.nbytes
            stack.clear()
            stack.extend(keep)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0


# ---------------------------------------------------------------------------------------------
# Brush


@dataclass(frozen=True)
class Brush:
    """A round brush.

    Attributes
    ----------
    radius : float
        In pixels; a dab covers the pixels whose centres lie within ``radius`` of its centre.
    hardness : float
        0..1: the inner ``hardness * radius`` is at full value, then a smooth fall to 0 at
        ``radius`` (1 is a hard edge).
    intensity : float
        0..1: the value painted (weighted masks), or how much the eraser removes.
    """

    radius: float = 10.0
    hardness: float = 1.0
    intensity: float = 1.0

    def spacing(self) -> float:
        """Distance between dabs along a stroke: half the radius, so dabs always overlap."""
        return max(self.radius / 2.0, 0.5)


@functools.lru_cache(maxsize=32)
def dab_kernel(radius: float, hardness: float = 1.0) -> np.ndarray:
    """The dab profile: float32 ``(2k+1, 2k+1)``, ``k = floor(radius)``, 1 at the centre.

    Pixels within ``hardness * radius`` are 1; between that and ``radius`` the value falls
    smoothly (smoothstep) to 0; beyond ``radius`` it is 0.
    """
    radius = max(float(radius), 0.5)
    hardness = min(max(float(hardness), 0.0), 1.0)
    k = int(math.floor(radius))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    d = np.sqrt((yy * yy + xx * xx).astype(np.float64))
    inner = radius * hardness
    if inner >= radius:
        out = (d <= radius).astype(np.float32)
    else:
        t = np.clip((radius - d) / (radius - inner), 0.0, 1.0)
        out = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
        out[d > radius] = 0.0
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=32)
def _scaled_kernel(radius: float, hardness: float, intensity: float, erase: bool) -> np.ndarray:
    k = dab_kernel(radius, hardness) * np.float32(intensity)
    if erase:
        k = np.float32(1.0) - k
    k.setflags(write=False)
    return k


def dab(
    data: np.ndarray,
    x: float,
    y: float,
    brush: Brush,
    erase: bool = False,
    recorder: Recorder | None = None,
) -> Box | None:
    """Stamp one round dab centred on ``(x, y)``; returns the box it touched (None if outside)."""
    kernel = _scaled_kernel(
        max(float(brush.radius), 0.5), float(brush.hardness), float(brush.intensity), erase
    )
    k = kernel.shape[0] // 2
    cx, cy = int(round(x)), int(round(y))
    h, w = data.shape
    y0, y1, x0, x1 = cy - k, cy + k + 1, cx - k, cx + k + 1
    box = clip_box((y0, y1, x0, x1), (h, w))
    if box is None:
        return None
    by0, by1, bx0, bx1 = box
    ker = kernel[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
    if recorder is not None:
        recorder.touch(box)
    patch = data[by0:by1, bx0:bx1]
    if erase:
        np.minimum(patch, ker, out=patch)
    else:
        np.maximum(patch, ker, out=patch)
    return box


def stroke_points(
    x0: float, y0: float, x1: float, y1: float, spacing: float
) -> list[tuple[float, float]]:
    """Dab centres from ``(x0, y0)`` (excluded) to ``(x1, y1)`` (included), at most ``spacing`` apart."""
    dist = math.hypot(x1 - x0, y1 - y0)
    n = max(1, int(math.ceil(dist / max(spacing, 1e-6))))
    return [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]


class Stroke:
    """A brush or eraser stroke: dabs along the mouse path, one undo entry at the end.

    Dabs are placed between successive positions no more than half a radius apart, so a fast
    mouse (few events far apart) leaves no gaps.
    """

    def __init__(
        self, mask: Mask, brush: Brush, erase: bool = False, backup: np.ndarray | None = None
    ) -> None:
        self.mask = mask
        self.brush = brush
        self.erase = erase
        self.recorder = Recorder(mask, "Erase" if erase else "Paint", backup)
        self.last: tuple[float, float] | None = None
        self.box: Box | None = None

    def add_point(self, x: float, y: float) -> Box | None:
        """Extend the stroke to ``(x, y)``; returns the box changed by this call."""
        if self.last is None:
            points = [(x, y)]
        else:
            points = stroke_points(*self.last, x, y, self.brush.spacing())
        self.last = (x, y)
        changed: Box | None = None
        data, brush, erase, rec = self.mask.data, self.brush, self.erase, self.recorder
        for px, py in points:
            changed = union_box(changed, dab(data, px, py, brush, erase, rec))
        self.box = union_box(self.box, changed)
        return changed

    def finish(self) -> HistoryEntry | None:
        """The stroke's undo entry (None if it changed nothing)."""
        return self.recorder.commit()


# ---------------------------------------------------------------------------------------------
# Fill and shapes


def _runs(eq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in a 2-D bool array: (row, start, end) with end exclusive."""
    h, w = eq.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = eq
    edges = np.flatnonzero(np.diff(padded.ravel()))  # alternate starts and ends, per row
    starts, ends = edges[0::2], edges[1::2]
    rows = starts // (w + 2)
    starts = starts - rows * (w + 2)
    ends = ends - rows * (w + 2)
    return rows, starts, ends


def flood_region(
    data: np.ndarray, x: int, y: int, tolerance: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 4-connected region around ``(x, y)`` whose values are within ``tolerance`` of the seed's.

    Returns the region as horizontal runs ``(rows, starts, ends)`` (ends exclusive). Runs are
    found in one vectorised pass and joined row to row as a graph, which keeps a fill of a
    4096² region well under the cost of labelling every pixel.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = data.shape
    seed = data[y, x]
    eq = (np.abs(data - seed) <= tolerance) if tolerance > 0 else (data == seed)
    rows, starts, ends = _runs(eq)
    n = rows.size
    stride = w + 2
    key_start = rows * stride + starts
    key_end = rows * stride + ends
    # runs of the next row overlapping [start, end): a contiguous range of that row's runs
    lo = np.searchsorted(key_end, (rows + 1) * stride + starts, side="right")
    hi = np.searchsorted(key_start, (rows + 1) * stride + ends, side="left")
    counts = np.maximum(hi - lo, 0)
    src = np.repeat(np.arange(n), counts)
    first = np.repeat(lo - np.cumsum(counts) + counts, counts)
    dst = first + np.arange(src.size)
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    row_first = np.searchsorted(rows, y)
    seed_run = row_first + np.searchsorted(ends[row_first : np.searchsorted(rows, y, "right")], x, "right")
    keep = labels == labels[seed_run]
    return rows[keep], starts[keep], ends[keep]


def runs_to_mask(
    rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """A bool array of ``shape`` with the given runs set."""
    h, w = shape
    d = np.zeros((h, w + 1), dtype=np.int8)
    d[rows, starts] = 1
    d[rows, ends] = -1
    return np.cumsum(d, axis=1, dtype=np.int8)[:, :w] > 0


def _write_runs(
    data: np.ndarray, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, value: float
) -> None:
    if rows.size <= 4 * data.shape[0]:
        for r, s, e in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
            data[r, s:e] = value
        return
    y0, y1 = int(rows.min()), int(rows.max()) + 1  # many short runs: one vectorised write
    region = runs_to_mask(rows - y0, starts, ends, (y1 - y0, data.shape[1]))
    data[y0:y1][region] = value


def flood_fill(
    data: np.ndarray,
    x: int,
    y: int,
    value: float,
    tolerance: float = 0.0,
    recorder: Recorder | None = None,
) -> Box | None:
    """Set the 4-connected region around ``(x, y)`` (see :func:`flood_region`) to ``value``."""
    h, w = data.shape
    if not (0 <= x < w and 0 <= y < h):
        return None
    rows, starts, ends = flood_region(data, x, y, tolerance)
    box = (int(rows.min()), int(rows.max()) + 1, int(starts.min()), int(ends.max()))
    if recorder is not None:
        recorder.touch(box)
    _write_runs(data, rows, starts, ends, np.float32(value))
    return box


def _blend_box(
    data: np.ndarray, box: Box, region: np.ndarray | None, value: float, erase: bool,
    recorder: Recorder | None,
) -> Box:
    if recorder is not None:
        recorder.touch(box)
    y0, y1, x0, x1 = box
    sub = data[y0:y1, x0:x1]
    target = np.float32(1.0 - value) if erase else np.float32(value)
    op = np.minimum if erase else np.maximum
    if region is None:
        op(sub, target, out=sub)
    else:
        sub[region] = op(sub[region], target)
    return box


def rectangle(
    data: np.ndarray, x0: float, y0: float, x1: float, y1: float, value: float = 1.0,
    erase: bool = False, recorder: Recorder | None = None,
) -> Box | None:
    """Paint the pixels whose centres lie in the rectangle between two corners (inclusive)."""
    c0, c1 = sorted((x0, x1))
    r0, r1 = sorted((y0, y1))
    box = clip_box(
        (int(math.ceil(r0)), int(math.floor(r1)) + 1, int(math.ceil(c0)), int(math.floor(c1)) + 1),
        data.shape,
    )
    if box is None:
        return None
    return _blend_box(data, box, None, value, erase, recorder)


def ellipse(
    data: np.ndarray, x0: float, y0: float, x1: float, y1: float, value: float = 1.0,
    erase: bool = False, recorder: Recorder | None = None,
) -> Box | None:
    """Paint the ellipse inscribed in the rectangle between two corners (pixel centres)."""
    from skimage.draw import ellipse as sk_ellipse

    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    rx, ry = abs(x1 - x0) / 2.0 + 0.5, abs(y1 - y0) / 2.0 + 0.5
    rr, cc = sk_ellipse(cy, cx, ry, rx, shape=data.shape)
    return _blend_coords(data, rr, cc, value, erase, recorder)


def polygon(
    data: np.ndarray, points: Sequence[tuple[float, float]], value: float = 1.0,
    erase: bool = False, recorder: Recorder | None = None,
) -> Box | None:
    """Paint the inside of a polygon (or a freehand lasso) given as ``(x, y)`` vertices."""
    from skimage.draw import polygon as sk_polygon

    if len(points) < 3:
        return None
    pts = np.asarray(points, dtype=np.float64)
    rr, cc = sk_polygon(pts[:, 1], pts[:, 0], shape=data.shape)
    return _blend_coords(data, rr, cc, value, erase, recorder)


def _blend_coords(
    data: np.ndarray, rr: np.ndarray, cc: np.ndarray, value: float, erase: bool,
    recorder: Recorder | None,
) -> Box | None:
    if rr.size == 0:
        return None
    box = (int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1)
    region = np.zeros((box[1] - box[0], box[3] - box[2]), dtype=bool)
    region[rr - box[0], cc - box[2]] = True
    return _blend_box(data, box, region, value, erase, recorder)


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
            self._scratch = np.empty(self.shape, dtype=np.float32)
            self._scratch.fill(0.0)  # commit the pages now, not during the first strokes
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
            data = np.empty(self.shape, dtype=np.float32)
            data.fill(0.0)  # written pages: the first dabs do not page-fault
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


def _put_back(entry: HistoryEntry, after: bool) -> None:
    """Write an edit's boxes into its mask as they were before it (undo) or after it (redo)."""
    for p in entry.patches:
        y0, y1, x0, x1 = p.box
        entry.mask.data[y0:y1, x0:x1] = p.after if after else p.before
