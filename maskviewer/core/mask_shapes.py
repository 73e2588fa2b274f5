"""Filled shapes painted into masks: rectangles, ellipses and polygons (or lassos)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from maskviewer.core.mask_history import Box, Recorder, clip_box


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
