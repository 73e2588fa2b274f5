"""Painting masks with a round brush: the dab profile, single dabs and whole strokes.

Blend rules (napari-like): the brush raises values to ``max(current, dab * intensity)`` and the
eraser lowers them to ``min(current, 1 - dab * intensity)``, so going over the same place within
a stroke never accumulates.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from maskviewer.core.mask_history import Box, HistoryEntry, Recorder, clip_box, union_box

if TYPE_CHECKING:  # the mask type only annotates: masks.py imports this module
    from maskviewer.core.masks import Mask


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
