"""The Binarise dock's two plots: the value histogram with a draggable threshold line, and
the Dice-vs-threshold curve with its best point; and the legends that name their lines and the
TP / FP / FN colours."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from maskviewer.core.metrics import FN_COLOUR, FP_COLOUR, TP_COLOUR

BEST = (60, 200, 90)  # green: the best Dice
THRESHOLD = (255, 200, 0)  # yellow: the current threshold
HISTOGRAM = (90, 140, 220)  # blue: the pixel counts
HIST_EMPTY = "The histogram of the map's values appears here once the model has run."
HIST_NOT_IMAGE = "“{name}” is not an image: pick an image-shaped output under Source to binarise it."
HIST_WAITING = "Counting the values of “{name}”…"
CURVE_EMPTY = "Load a reference mask (or use the painted one) to see Dice at every threshold."
#: The overlay's colours, named as the legend names them.
ERROR_NAMES = (
    (TP_COLOUR, "TP", "true positive: foreground in both"),
    (FP_COLOUR, "FP", "false positive: foreground only in the binary mask"),
    (FN_COLOUR, "FN", "false negative: foreground only in the reference"),
)


def swatch(rgb, glyph: str = "━━") -> str:
    """``glyph`` in the colour ``rgb`` (rich text)."""
    r, g, b = rgb[:3]
    return f'<span style="color: rgb({r},{g},{b}); font-weight: bold;">{glyph}</span>'


def histogram_legend(threshold: float | None, best: float | None) -> str:
    """Names the histogram's lines: the threshold and, with a reference, the best Dice."""
    thr = "threshold" if threshold is None else f"threshold {threshold:.4g} (drag it)"
    parts = [f"{swatch(HISTOGRAM, '▇')} pixels per value", f"{swatch(THRESHOLD)} {thr}"]
    if best is None:
        parts.append(f'<span style="color: gray;">{swatch(BEST, "╍╍")} best Dice (with a reference)</span>')
    else:
        parts.append(f"{swatch(BEST, '╍╍')} best Dice at {best:.4g}")
    return " &nbsp; ".join(parts)


def curve_legend() -> str:
    """Names the Dice curve's marks."""
    return " &nbsp; ".join(
        (f"{swatch(BEST)} Dice at each threshold", f"{swatch(BEST, '●')} best", f"{swatch(THRESHOLD)} threshold")
    )


def errors_legend() -> str:
    """The TP / FP / FN colours of the overlay on the image."""
    words = {"TP": "correct", "FP": "extra", "FN": "missed"}
    return " &nbsp; ".join(f"{swatch(c, '■')} {short} {words[short]}" for c, short, _long in ERROR_NAMES)


class HistogramPlot(pg.PlotWidget):
    """Pixel counts per value bin; :attr:`thr_line` is the threshold, dragged by the user."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(150)
        self.setMenuEnabled(False)
        self.setLabel("bottom", "value")
        self.setLabel("left", "pixels")
        self.getAxis("bottom").enableAutoSIPrefix(False)
        self.curve = self.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(*HISTOGRAM, 160), pen=HISTOGRAM)
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(BEST, style=Qt.PenStyle.DashLine))
        self.best_line.hide()
        self.thr_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(THRESHOLD, width=2))
        self.thr_line.setHoverPen(pg.mkPen((255, 240, 120), width=3))
        self.addItem(self.best_line)
        self.addItem(self.thr_line)

    def show_histogram(self, edges: np.ndarray | None, hist: np.ndarray | None, log: bool, span: tuple[float, float] | None) -> None:
        """Draw ``hist`` over ``edges`` (``log10(1 + count)`` when ``log``) across ``span``."""
        if edges is None or hist is None or span is None:
            self.curve.setData([0, 1], [0])
            return
        counts = np.log10(1 + hist) if log else hist.astype(float)
        self.curve.setData(edges.astype(np.float64), counts)
        self.setLabel("left", "log₁₀(1 + pixels)" if log else "pixels")
        lo, hi = span
        pad = (hi - lo) * 0.02
        self.setXRange(lo - pad, hi + pad, padding=0)
        self.thr_line.setBounds((lo - pad, hi + pad))

    def show_best(self, threshold: float | None) -> None:
        if threshold is None:
            self.best_line.hide()
        else:
            self.best_line.setValue(threshold)
            self.best_line.show()


class DiceCurvePlot(pg.PlotWidget):
    """Dice at each threshold of the map, the best one marked, the current one a line."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(130)
        self.setMenuEnabled(False)
        self.setLabel("bottom", "threshold")
        self.setLabel("left", "Dice")
        self.getAxis("bottom").enableAutoSIPrefix(False)
        self.setYRange(0, 1)
        self.curve = self.plot([], [], pen=pg.mkPen(BEST, width=2))
        self.best_point = pg.ScatterPlotItem(size=10, brush=BEST, pen="w")
        self.thr_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(THRESHOLD))
        self.addItem(self.best_point)
        self.addItem(self.thr_line)

    def show_curve(self, curve) -> None:
        """Draw a :class:`~maskviewer.core.metrics.DiceCurve` (None clears the plot)."""
        if curve is None:
            self.curve.setData([], [])
            self.best_point.setData([], [])
            return
        self.curve.setData(curve.thresholds, curve.dice)
        self.best_point.setData([curve.best_threshold], [curve.best_dice])
