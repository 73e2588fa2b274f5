"""The data set's aggregates as plots: the confusion matrix (classes), predicted against true
(values), the mean Dice at every threshold with the best one marked (binary maps), and each
patch rule's and mask variant's accuracy with its 95% interval. Each plot is shown only when
the rows hold what it needs; until then a sentence says what will appear."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from maskviewer.gui.binarise.plots import BEST, THRESHOLD, swatch
from maskviewer.gui.dataset.model import interval_rows, summary_lines
from maskviewer.gui.empty_state import EmptyState

EMPTY_TEXT = ("The data set's answers appear here once it has run: accuracy and a confusion matrix, "
              "MAE and predicted against true, mean Dice at every threshold, patch rules and mask ablation.")
POINTS = (90, 140, 220)
MAX_CELL_TEXT = 12  # classes up to which each confusion cell shows its count
PLOT_HEIGHT = 200


def _plot(bottom: str, left: str) -> pg.PlotWidget:
    p = pg.PlotWidget()
    p.setMenuEnabled(False)
    p.setMinimumHeight(PLOT_HEIGHT)
    p.setMaximumHeight(PLOT_HEIGHT + 60)
    p.setLabel("bottom", bottom)
    p.setLabel("left", left)
    for axis in ("bottom", "left"):
        p.getAxis(axis).enableAutoSIPrefix(False)
    return p


def _ticks(names: list[str]) -> list[list[tuple[float, str]]]:
    return [[(float(i), n) for i, n in enumerate(names)]]


class ConfusionPlot(pg.PlotWidget):
    """Counts of (true class, predicted class): rows true, columns predicted; the diagonal is right."""

    def __init__(self) -> None:
        super().__init__()
        self.setMenuEnabled(False)
        self.setMinimumHeight(PLOT_HEIGHT + 40)
        self.setMaximumHeight(PLOT_HEIGHT + 100)
        self.setLabel("bottom", "predicted class")
        self.setLabel("left", "true class")
        self.invertY(True)
        self.setAspectLocked(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(pg.colormap.get("CET-L12").getLookupTable(nPts=256))
        self.addItem(self.image)
        self.texts: list[pg.TextItem] = []
        self.matrix = np.zeros((0, 0), np.int64)

    def show_matrix(self, matrix: list[list[int]], classes: list[str] | None) -> None:
        m = np.asarray(matrix, dtype=np.int64)
        self.matrix = m
        k = m.shape[0]
        cells = k * k if k <= MAX_CELL_TEXT else 0
        if len(self.texts) != cells:  # one text per cell, made again only when the classes change
            for t in self.texts:
                self.removeItem(t)
            self.texts = [pg.TextItem("", anchor=(0.5, 0.5)) for _ in range(cells)]
            for i, t in enumerate(self.texts):
                t.setPos(i % k, i // k)
                self.addItem(t)
        shade = np.log1p(m.astype(np.float64))
        self.image.setImage(shade, levels=(0.0, max(float(shade.max()), 1e-9)))
        self.image.setRect(-0.5, -0.5, k, k)
        names = [(classes[i] if classes and i < len(classes) else str(i))[:6] for i in range(k)]
        for axis in ("bottom", "left"):
            self.getAxis(axis).setTicks(_ticks(names))
        top = max(int(m.max(initial=0)), 1)
        for i, t in enumerate(self.texts):
            n = int(m[i // k, i % k])
            t.setText(str(n) if n else "")
            t.setColor("w" if n > top ** 0.5 else (30, 30, 30))
        self.setRange(xRange=(-0.5, k - 0.5), yRange=(-0.5, k - 0.5), padding=0.02)


class IntervalPlot(pg.PlotWidget):
    """One bar per patch rule or mask variant, with its 95% interval."""

    def __init__(self) -> None:
        super().__init__()
        self.setMenuEnabled(False)
        self.setMinimumHeight(PLOT_HEIGHT)
        self.setMaximumHeight(PLOT_HEIGHT + 60)
        self.setLabel("left", "accuracy")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=(*POINTS, 180))
        self.errors = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), beam=0.25, pen=pg.mkPen((40, 40, 40), width=1.5))
        self.addItem(self.bars)
        self.addItem(self.errors)
        self.names: list[str] = []

    def show_rows(self, rows: list[tuple[str, float, float, float, str]]) -> None:
        self.names = [r[0] for r in rows]
        x = np.arange(len(rows), dtype=float)
        v = np.array([r[1] for r in rows], dtype=float)
        lo = np.array([r[2] for r in rows], dtype=float)
        hi = np.array([r[3] for r in rows], dtype=float)
        self.bars.setOpts(x=x, height=v, width=0.6)
        self.errors.setData(x=x, y=v, top=np.nan_to_num(hi - v), bottom=np.nan_to_num(v - lo))
        units = {r[4] for r in rows}
        self.setLabel("left", units.pop() if len(units) == 1 else "accuracy / MAE")
        self.getAxis("bottom").setTicks(_ticks([n.split(": ", 1)[-1] for n in self.names]))
        top = float(np.nanmax(hi)) if rows else 1.0
        self.setRange(xRange=(-0.6, len(rows) - 0.4), yRange=(0.0, max(1.0 if "accuracy" in units or not units else top, top)),
                      padding=0.02)


class AggregatesView(QWidget):
    """The sentences and plots of a run's aggregates (``show``), or the empty state."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.confusion = ConfusionPlot()
        self.scatter = _plot("true value", "predicted value")
        self.points = pg.ScatterPlotItem(size=5, brush=(*POINTS, 150), pen=None)
        self.diagonal = self.scatter.plot([], [], pen=pg.mkPen((150, 150, 150), style=Qt.PenStyle.DashLine))
        self.scatter.addItem(self.points)
        self.dice = _plot("threshold", "mean Dice")
        self.dice.setYRange(0, 1)
        self.dice_curve = self.dice.plot([], [], pen=pg.mkPen(BEST, width=2))
        self.best = pg.ScatterPlotItem(size=10, brush=BEST, pen="w")
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(BEST, style=Qt.PenStyle.DashLine))
        self.thr_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(THRESHOLD))
        for item in (self.best, self.best_line, self.thr_line):
            self.dice.addItem(item)
        self.dice_legend = QLabel()
        self.intervals = IntervalPlot()
        self.intervals_title = QLabel()
        self.intervals_title.setWordWrap(True)
        self.parts: dict[str, list[QWidget]] = {
            "classes": [QLabel("<b>Confusion matrix</b> (rows: truth, columns: prediction)"), self.confusion],
            "regression": [QLabel("<b>Predicted against true</b> (dashed: equal)"), self.scatter],
            "binary": [QLabel("<b>Mean Dice at each threshold</b>"), self.dice_legend, self.dice],
            "intervals": [self.intervals_title, self.intervals],
        }
        inner = QWidget()
        body = QVBoxLayout(inner)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.text)
        for widgets in self.parts.values():
            for w in widgets:
                if isinstance(w, QLabel):
                    w.setWordWrap(True)
                body.addWidget(w)
        self.empty = EmptyState(inner, EMPTY_TEXT)
        column.addWidget(self.empty)
        self.show_summary({}, [], None)

    def show_summary(self, summary: dict, rows: list[dict], classes: list[str] | None,
                     threshold: float | None = None, shown: tuple[float, float] | None = None) -> None:
        """Draw ``summary`` (from :func:`~maskviewer.core.evaluation.aggregate`) and the rows'
        predicted-against-true points; an empty summary shows the empty state. ``shown``: the
        threshold the table shows Dice at and its mean Dice, when not the run's."""
        if not summary or summary.get("images", 0) == summary.get("failed", 0):
            self.empty.set_empty(True, EMPTY_TEXT if not summary else "Every image failed: see the table.")
            return
        self.empty.set_empty(False)
        self.text.setText("<br>".join(summary_lines(summary, classes, shown)))
        shown = {
            "classes": "classes" in summary and bool(summary["classes"].get("confusion")),
            "regression": "regression" in summary,
            "binary": "binary" in summary,
            "intervals": bool(interval_rows(summary)),
        }
        for part, on in shown.items():
            for w in self.parts[part]:
                w.setVisible(on)
        if shown["classes"]:
            self.confusion.show_matrix(summary["classes"]["confusion"], classes)
        if shown["regression"]:
            self._scatter(rows)
        if shown["binary"]:
            self._dice(summary["binary"], threshold)
        if shown["intervals"]:
            iv = interval_rows(summary)
            self.intervals.show_rows(iv)
            kinds = [k for k, there in (("patch rules", "patches" in summary), ("mask variants", "ablation" in summary)) if there]
            self.intervals_title.setText(f"<b>Accuracy of the {' and '.join(kinds)}</b> with 95% intervals")

    def _scatter(self, rows: list[dict]) -> None:
        pairs = [(float(r["truth"]), float(r["value"])) for r in rows
                 if isinstance(r.get("truth"), (int, float)) and isinstance(r.get("value"), (int, float))]
        if not pairs:
            self.points.setData([], [])
            return
        t, v = np.array(pairs).T
        self.points.setData(t, v)
        lo, hi = float(min(t.min(), v.min())), float(max(t.max(), v.max()))
        self.diagonal.setData([lo, hi], [lo, hi])

    def _dice(self, b: dict, threshold: float | None) -> None:
        self.dice_curve.setData(b["thresholds"], b["mean_dice_curve"])
        self.best.setData([b["best_threshold"]], [b["best_mean_dice"]])
        self.best_line.setValue(b["best_threshold"])
        self.thr_line.setVisible(threshold is not None)
        if threshold is not None:
            self.thr_line.setValue(threshold)
        self.dice_legend.setText(" &nbsp; ".join((
            f"{swatch(BEST)} mean Dice", f"{swatch(BEST, '●')} best {b['best_threshold']:.2f} ({b['best_mean_dice']:.3f})",
            f"{swatch(THRESHOLD)} threshold" + (f" {threshold:.2f}" if threshold is not None else ""))))
