"""Line plots for exports: the deletion and insertion curves of a map, drawn into an RGB array.

The lines and axes are drawn with numpy (each segment sampled densely, so a line has no gaps
at any slope); the few words (axis ends, the AUCs) with Pillow's default font, as the legend
of :mod:`maskviewer.io.export.pictures` is. The array is written like every other picture.
"""

from __future__ import annotations

import numpy as np

#: curve colours, by mode
COLOURS = {"deletion": (214, 39, 40), "insertion": (31, 119, 180)}
AXIS = (60, 60, 60)
GRID = (225, 225, 225)


def _plot_box(width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the plotting area inside the picture."""
    return 44, 26, width - 12, height - 30


def to_pixels(x: np.ndarray, y: np.ndarray, box: tuple[int, int, int, int], ylim: tuple[float, float]) -> tuple:
    """Data ``(x in 0..1, y in ylim)`` to pixel columns and rows of ``box`` (rows grow downward)."""
    left, top, right, bottom = box
    lo, hi = ylim
    span = hi - lo if hi > lo else 1.0
    cols = left + np.clip(np.asarray(x, np.float64), 0, 1) * (right - left)
    rows = bottom - (np.clip(np.asarray(y, np.float64), lo, hi) - lo) / span * (bottom - top)
    return cols, rows


def draw_polyline(rgb: np.ndarray, cols: np.ndarray, rows: np.ndarray, colour: tuple, width: int = 2) -> None:
    """Draw the line through the points ``(cols, rows)`` into ``rgb`` in place."""
    h, w = rgb.shape[:2]
    for k in range(len(cols) - 1):
        n = int(max(abs(cols[k + 1] - cols[k]), abs(rows[k + 1] - rows[k]), 1)) * 2 + 1
        t = np.linspace(0.0, 1.0, n)
        c = cols[k] + t * (cols[k + 1] - cols[k])
        r = rows[k] + t * (rows[k + 1] - rows[k])
        for dr in range(width):
            for dc in range(width):
                rr = np.clip(np.round(r).astype(int) + dr - width // 2, 0, h - 1)
                cc = np.clip(np.round(c).astype(int) + dc - width // 2, 0, w - 1)
                rgb[rr, cc] = colour


def curves_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = "", width: int = 420, height: int = 300,
) -> np.ndarray:
    """The curves ``mode -> (fractions, scores, auc)`` as one plot, ``(height, width, 3)`` uint8.

    x is the fraction of pixels deleted or inserted (0..1); y the class score, from 0 to 1
    (or to the curves' own range when a score leaves 0..1).
    """
    from PIL import Image, ImageDraw

    rgb = np.full((height, width, 3), 255, np.uint8)
    box = left, top, right, bottom = _plot_box(width, height)
    values = np.concatenate([np.asarray(s, np.float64) for _f, s, _a in curves.values()]) if curves else np.zeros(1)
    values = values[np.isfinite(values)] if np.isfinite(values).any() else np.zeros(1)
    ylim = (min(0.0, float(values.min())), max(1.0, float(values.max())))
    for frac in (0.25, 0.5, 0.75):  # light grid lines
        c, r = to_pixels(np.array([frac, frac]), np.array(ylim), box, ylim)
        rgb[top:bottom, int(round(c[0]))] = GRID
        c, r = to_pixels(np.array([0.0, 1.0]), np.full(2, ylim[0] + frac * (ylim[1] - ylim[0])), box, ylim)
        rgb[int(round(r[0])), left:right] = GRID
    rgb[top : bottom + 1, left] = AXIS
    rgb[bottom, left : right + 1] = AXIS
    for mode, (fractions, scores, _auc) in curves.items():
        s = np.nan_to_num(np.asarray(scores, np.float64), nan=ylim[0])
        cols, rows = to_pixels(np.asarray(fractions), s, box, ylim)
        draw_polyline(rgb, cols, rows, COLOURS.get(mode, AXIS))
    img = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(img)
    draw.text((4, top - 6), f"{ylim[1]:.3g}", fill=AXIS)
    draw.text((4, bottom - 6), f"{ylim[0]:.3g}", fill=AXIS)
    draw.text((left - 3, bottom + 4), "0", fill=AXIS)
    draw.text((right - 6, bottom + 4), "1", fill=AXIS)
    label = "fraction of pixels deleted / inserted"
    draw.text(((left + right - draw.textlength(label)) / 2, bottom + 12), label, fill=AXIS)
    if title:
        shown = title if draw.textlength(title) <= width - 16 else title[:60] + "…"
        draw.text((8, 6), shown, fill=(0, 0, 0))
    y = top + 6
    for mode, (_f, _s, auc) in curves.items():
        text = f"{mode} AUC {auc:.3f}"
        x = right - 6 - draw.textlength(text)
        draw.rectangle((x - 14, y + 4, x - 4, y + 8), fill=COLOURS.get(mode, AXIS))
        draw.text((x, y), text, fill=(0, 0, 0))
        y += 14
    return np.asarray(img)
