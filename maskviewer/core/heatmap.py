"""Heatmaps: colour maps, normalisation, upsampling onto the image, channel grids, overlays.

Everything here is numpy on small arrays (a layer map is at most the model input's size);
the GUI calls it on its own thread to recolour without asking the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from maskviewer.core._colormap_data import LUT_HEX
from maskviewer.core.image import resize_bilinear
from maskviewer.core.mapping import Frame
from maskviewer.core.model_info import LayerInfo, ModelInfo

#: colour map names, in the order the GUI offers them
COLORMAPS = ("viridis", "inferno", "magma", "turbo", "grey", "diverging")
COLORMAP_LABELS = {
    "viridis": "Viridis",
    "inferno": "Inferno",
    "magma": "Magma",
    "turbo": "Turbo",
    "grey": "Grey",
    "diverging": "Diverging (blue–white–red)",
}
#: normalisation modes
NORMALISATIONS = ("per_map", "percentile", "shared")
NORMALISATION_LABELS = {
    "per_map": "Per map (min–max)",
    "percentile": "Percentile clip (1–99 %)",
    "shared": "Shared across channels",
}
#: how opaque a heatmap is over the image unless the user says otherwise: the window's
#: Layers panel starts at it and exports (window and command line) blend with it
DEFAULT_OPACITY = 0.6
#: the longest side a heatmap is upsampled to for display (the overlay is stretched beyond)
DISPLAY_MAX_SIDE = 1024
#: small images still get a smooth heatmap: at least this many pixels on the longest side
DISPLAY_MIN_SIDE = 256


@cache
def colormap_lut(name: str) -> np.ndarray:
    """The 256x3 uint8 RGB lookup table of colour map ``name`` (see :data:`COLORMAPS`).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name == "grey":
        ramp = np.arange(256, dtype=np.uint8)
        lut = np.stack([ramp, ramp, ramp], axis=1)
    elif name in LUT_HEX:
        lut = np.frombuffer(bytes.fromhex("".join(LUT_HEX[name])), dtype=np.uint8).reshape(256, 3)
    else:
        raise ValueError(f"Unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}.")
    lut = lut.copy()
    lut.flags.writeable = False
    return lut


def value_range(
    values: np.ndarray, mode: str = "per_map", percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """The ``(lo, hi)`` a map is scaled by: its min/max, or percentiles for ``"percentile"``.

    Non-finite values are ignored; an all-NaN map gives ``(0, 0)``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 0.0
    if mode == "percentile":
        lo, hi = np.percentile(v, percentiles)
        return float(lo), float(hi)
    return float(v.min()), float(v.max())


def normalize(
    values: np.ndarray,
    mode: str = "per_map",
    *,
    vrange: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> tuple[np.ndarray, tuple[float, float]]:
    """Scale ``values`` to [0, 1].

    Parameters
    ----------
    values : ndarray
        A map (any shape).
    mode : str
        ``"per_map"`` (its own min..max), ``"percentile"`` (clip to its percentiles) or
        ``"shared"`` (``vrange``, e.g. the whole layer's min..max, so channels compare).
    vrange : (float, float), optional
        The range for ``"shared"``; required there, and overrides the others when given.
    percentiles : (float, float)
        Lower and upper percentile for ``"percentile"``.

    Returns
    -------
    unit : ndarray, float32
        ``(values - lo) / (hi - lo)`` clipped to [0, 1]; all zeros when ``hi == lo``.
    (lo, hi) : tuple of float
        The range used (what a colour bar shows).
    """
    if mode not in NORMALISATIONS:
        raise ValueError(f"Unknown normalisation {mode!r}; choose one of {', '.join(NORMALISATIONS)}.")
    if vrange is not None:
        lo, hi = float(vrange[0]), float(vrange[1])
    elif mode == "shared":
        raise ValueError("Shared normalisation needs the shared value range (vrange).")
    else:
        lo, hi = value_range(values, mode, percentiles)
    v = np.asarray(values, dtype=np.float32)
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.zeros(v.shape, dtype=np.float32), (lo, hi)
    unit = (v - np.float32(lo)) / np.float32(span)
    unit = np.clip(np.nan_to_num(unit, nan=0.0), 0.0, 1.0)
    return unit.astype(np.float32, copy=False), (lo, hi)


def to_indices(unit: np.ndarray) -> np.ndarray:
    """Map [0, 1] values to uint8 colour-table indices 0..255 (rounded)."""
    u = np.clip(np.asarray(unit, dtype=np.float32), 0.0, 1.0)
    return (u * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def colorize(unit: np.ndarray, cmap: str = "viridis", alpha: float = 1.0) -> np.ndarray:
    """Colour a [0, 1] map: ``(H, W)`` -> ``(H, W, 4)`` uint8 RGBA (alpha constant)."""
    lut = colormap_lut(cmap)
    rgb = lut[to_indices(unit)]
    a = np.full(rgb.shape[:-1] + (1,), int(round(np.clip(alpha, 0.0, 1.0) * 255)), dtype=np.uint8)
    return np.concatenate([rgb, a], axis=-1)


def display_size(
    frame: Frame, max_side: int = DISPLAY_MAX_SIDE, min_side: int = DISPLAY_MIN_SIDE
) -> tuple[int, int]:
    """``(height, width)`` in pixels to upsample a map to before it is stretched onto ``frame``.

    The frame's own size, scaled down to ``max_side`` or up to ``min_side`` on its longest side.
    """
    h, w = max(1.0, frame.height), max(1.0, frame.width)
    s = min(max_side / max(h, w), max(1.0, min_side / max(h, w)))
    return max(1, round(h * s)), max(1, round(w * s))


def upsample(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a 2-D map (half-pixel centres, as ``tf.image.resize``)."""
    v = np.asarray(values, dtype=np.float32)
    return resize_bilinear(v[:, :, None], height, width)[:, :, 0]


def upsample_to_frame(values: np.ndarray, frame: Frame, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Upsample a map computed over a model input to that input's frame on the image.

    The result is drawn stretched onto ``frame`` (``x, y, width, height`` in image pixels);
    its resolution is the frame's, kept within :func:`display_size`'s bounds.
    """
    h, w = display_size(frame, max_side)
    return upsample(values, h, w)


def composite(image_rgb: np.ndarray, heat_rgba: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """Blend an RGBA heatmap over an RGB image of the same size; returns uint8 RGB.

    The heatmap's own alpha is multiplied by ``opacity``. A stack of heatmaps ``(n, H, W, 4)``
    blends over one image (or a stack of images) in one go.
    """
    img = np.asarray(image_rgb, dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    heat = np.asarray(heat_rgba, dtype=np.float32)
    if img.shape[-3:-1] != heat.shape[-3:-1]:
        raise ValueError(
            f"The heatmap is {heat.shape[-2]}x{heat.shape[-3]} and the image "
            f"{img.shape[-2]}x{img.shape[-3]}; upsample the heatmap to the image first."
        )
    a = heat[..., 3:4] / 255.0 * float(np.clip(opacity, 0.0, 1.0))
    out = img[..., :3] * (1.0 - a) + heat[..., :3] * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GridLayout:
    """Where each channel's tile lies in a channel grid (tile ``i`` is row-major)."""

    count: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    pad: int

    def tile_at(self, x: float, y: float) -> int | None:
        """The tile index under grid pixel ``(x, y)``, or None on padding / outside."""
        if x < 0 or y < 0:
            return None
        col, dx = divmod(int(x), self.tile_w + self.pad)
        row, dy = divmod(int(y), self.tile_h + self.pad)
        if dx >= self.tile_w or dy >= self.tile_h or col >= self.cols or row >= self.rows:
            return None
        i = row * self.cols + col
        return i if i < self.count else None

    def tile_origin(self, i: int) -> tuple[int, int]:
        """``(x, y)`` of tile ``i``'s top-left pixel."""
        row, col = divmod(i, self.cols)
        return col * (self.tile_w + self.pad), row * (self.tile_h + self.pad)


def channel_grid(
    maps: np.ndarray,
    mode: str = "per_map",
    *,
    cols: int | None = None,
    pad: int = 1,
    vrange: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> tuple[np.ndarray, GridLayout]:
    """Tile ``(N, H, W)`` channel maps into one image, each tile normalised.

    Parameters
    ----------
    maps : ndarray
        One map per channel.
    mode : str
        Normalisation per tile (``"per_map"``, ``"percentile"``) or one range for all
        (``"shared"``: ``vrange``, or the maps' overall min..max when not given).
    cols : int, optional
        Tiles per row; default about square.
    pad : int
        Pixels between tiles (value NaN, so they can be drawn transparent).

    Returns
    -------
    grid : ndarray, float32
        ``(rows*(H+pad)-pad, cols*(W+pad)-pad)`` in [0, 1], NaN in the padding.
    layout : GridLayout
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"Channel maps must be (N, H, W), got shape {maps.shape}.")
    n, h, w = maps.shape
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    layout = GridLayout(n, rows, cols, h, w, pad)
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, dtype=np.float32)
    if mode == "shared" and vrange is None:
        vrange = value_range(maps, "per_map")
    for i in range(n):
        x, y = layout.tile_origin(i)
        tile, _ = normalize(
            maps[i], mode, vrange=vrange if mode == "shared" else None, percentiles=percentiles
        )
        grid[y : y + h, x : x + w] = tile
    return grid, layout


def mask_to_grid(mask: np.ndarray, frame: Frame, height: int, width: int) -> np.ndarray:
    """The fraction of each cell of a ``height x width`` layer grid covered by ``mask``.

    ``mask`` is ``(H, W)`` in image pixels (bool, uint8 0..255 or float 0..1); the layer grid covers ``frame`` (the model
    input's place on the image). Each cell's weight is the mean of the mask over the image
    pixels whose centres fall in the cell (the nearest pixel when the cell is smaller than
    a pixel); cells outside the image weigh 0.

    Returns
    -------
    ndarray, float32, ``(height, width)`` in [0, 1].
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[:, :, 0]
    if m.dtype == np.uint8:
        m = m.astype(np.float32) / np.float32(255.0)
    m = np.clip(m.astype(np.float32), 0.0, 1.0)  # soft (anti-aliased) masks weigh by coverage
    ih, iw = m.shape
    # summed-area table: any cell's pixel mean in O(1)
    sat = np.zeros((ih + 1, iw + 1), dtype=np.float64)
    sat[1:, 1:] = np.cumsum(np.cumsum(m, axis=0), axis=1)

    def edges(start: float, length: float, cells: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        b = start + length * np.arange(cells + 1, dtype=np.float64) / cells
        lo = np.ceil(b[:-1] - 0.5).astype(np.intp)  # first pixel whose centre is inside
        hi = np.ceil(b[1:] - 0.5).astype(np.intp)
        empty = hi <= lo  # smaller than a pixel: take the pixel under the centre
        centre = np.floor((b[:-1] + b[1:]) / 2).astype(np.intp)
        lo = np.where(empty, centre, lo)
        hi = np.where(empty, centre + 1, hi)
        return np.clip(lo, 0, limit), np.clip(hi, 0, limit)

    y0, y1 = edges(frame.y, frame.height, height, ih)
    x0, x1 = edges(frame.x, frame.width, width, iw)
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    total = sat[y1][:, x1] - sat[y0][:, x1] - sat[y1][:, x0] + sat[y0][:, x0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(area > 0, total / np.maximum(area, 1), 0.0)
    return frac.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Choosing layers


def spatial_layers(info: ModelInfo) -> list[LayerInfo]:
    """Layers with an ``(B, H, W, C)`` output, in model order (nested ones after their model)."""
    return [layer for layer in info.iter_layers() if layer.is_spatial]


def default_cam_layer(info: ModelInfo, output: str | None = None) -> LayerInfo | None:
    """The layer Grad-CAM uses by default: the last spatial layer before the head that the
    explained output is computed from, and whose map is larger than 1×1.

    Parameters
    ----------
    info : ModelInfo
    output : str, optional
        The output the CAM explains (default: the first). Layers that do not feed it are
        skipped where the graph tells (``LayerInfo.feeds``).

    Layers that are model outputs themselves (a segmentation head) are skipped; nested
    models are looked into, so the innermost last spatial layer wins. When every layer
    feeding the output is 1×1 (after a global pooling) the last of those is returned.
    """
    outputs = {t.name for t in info.outputs}
    wanted = output if output is not None else (info.outputs[0].name if info.outputs else None)

    def feeds(layer: LayerInfo) -> bool:
        return layer.feeds is None or wanted is None or wanted in layer.feeds

    feeding = [layer for layer in spatial_layers(info) if layer.name not in outputs and feeds(layer)]
    larger = [layer for layer in feeding if not is_one_by_one(layer)]
    candidates = larger or feeding
    if not candidates:
        return None
    last = candidates[-1]
    # a nested model's last child is the same tensor as the model's output: prefer the layer
    while last.children:
        spatial_children = [c for c in last.children if c.is_spatial and feeds(c)]
        if larger:
            spatial_children = [c for c in spatial_children if not is_one_by_one(c)]
        if not spatial_children:
            break
        last = spatial_children[-1]
    return last


def is_one_by_one(layer: LayerInfo) -> bool:
    """A spatial layer whose map is a single pixel (after a global pooling): a CAM on it is
    one flat value."""
    shape = layer.output_shape
    return bool(layer.is_spatial and shape is not None and shape[1] == 1 and shape[2] == 1)
