"""The undo history of mask edits: tile-wise copy-on-write backups, patches and a byte cap.

Every edit touches only a bounding box and records, tile by tile, the part that changed (before
and after), so undo and redo restore exact arrays and a stroke across a 4096² mask costs what
it touches, not the whole image.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the mask type only annotates: masks.py imports this module
    from maskviewer.core.masks import Mask

#: Side of the square tiles the undo recorder copies on first touch.
TILE = 128
#: Default cap of the undo history, in bytes (before and after patches together).
DEFAULT_HISTORY_BYTES = 256 * 1024 * 1024
#: Fixed cost counted per stored patch (its box and bookkeeping), so the cap also bounds counts.
PATCH_OVERHEAD = 64

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


def _put_back(entry: HistoryEntry, after: bool) -> None:
    """Write an edit's boxes into its mask as they were before it (undo) or after it (redo)."""
    for p in entry.patches:
        y0, y1, x0, x1 = p.box
        entry.mask.data[y0:y1, x0:x1] = p.after if after else p.before
