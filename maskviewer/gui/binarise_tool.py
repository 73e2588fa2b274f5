"""The Binarise tool: threshold an image-shaped output, score it against a reference, export.

A dock with the value histogram and a draggable threshold (slider, spin box, or the line on the
histogram), the automatic methods of scikit-image, polarity and view, a reference mask with live
scores and a Dice-vs-threshold curve; a second dock shows outputs side by side (an autoencoder's
input, reconstruction, binary output and difference). The per-map work (sorting, histogram,
display codes) runs once per prediction on the worker thread; a threshold change only patches
the cached preview (see :class:`maskviewer.core.threshold.ThresholdCache`).

Hooks for other tools: :meth:`BinariseTool.add_source` (an activation map, say) and
:attr:`BinariseTool.reference_provider` (a painted mask).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import (
    DICE_EPS,
    FN_COLOUR,
    FP_COLOUR,
    SCORE_LABELS,
    TP_COLOUR,
    DiceCurve,
    ReferenceScorer,
    Scores,
    reference_to_mask,
    resize_nearest,
    sample_on_frame,
)
from maskviewer.core.threshold import METHOD_LABELS, METHODS, ThresholdCache, binarise
from maskviewer.io.atomic import atomic_write

KIND_CACHE = "binarise-cache"
KIND_SCORE = "binarise-score"
KIND_METHOD = "binarise-method"
SLIDER_STEPS = 1000
DEFAULT_THRESHOLD = 0.5
VIEWS = ("Binary over input", "Binary", "Continuous", "Continuous over input", "Hidden")
TINT = (0, 220, 255)  # foreground colour of the "over input" view
ROWS = ("dice", "iou", "precision", "recall", "accuracy", "tp", "fp", "fn", "tn")


@dataclass
class Source:
    """A map that can be binarised, or an explanation of why an output cannot be."""

    name: str
    values: np.ndarray | None
    note: str = ""
    frame: Frame | None = None


def image_sources(outputs: dict[str, np.ndarray]) -> list[Source]:
    """Every output as sources: ``(H, W)`` and ``(H, W, 1)`` maps as they are, ``(H, W, 2..4)``
    one per channel, anything else explained."""
    sources = []
    for name, value in outputs.items():
        a = np.asarray(value)
        if a.ndim == 2 and min(a.shape) > 1:
            sources.append(Source(name, a))
        elif a.ndim == 3 and a.shape[2] == 1 and min(a.shape[:2]) > 1:
            sources.append(Source(name, a[:, :, 0]))
        elif a.ndim == 3 and a.shape[2] in (2, 3, 4) and min(a.shape[:2]) > 1:
            sources.extend(Source(f"{name} [channel {c}]", a[:, :, c]) for c in range(a.shape[2]))
        else:
            sources.append(
                Source(
                    name,
                    None,
                    f"Output “{name}” has shape {tuple(a.shape)}: not an image. Binarising needs "
                    "a map of shape (H, W), (H, W, 1) or (H, W, C) with up to 4 channels (a "
                    "segmentation or reconstruction head). Pick another output.",
                )
            )
    return sources


def _grey_lut() -> np.ndarray:
    return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def _colormap(name: str) -> np.ndarray:
    return pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)


def _display_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float32), nan=lo, posinf=hi, neginf=lo)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.clip((a - lo) * scale, 0, 255).astype(np.uint8)
    if out.ndim == 3 and out.shape[2] in (1, 2):
        out = out[:, :, 0]
    return out


def _fmt(value: float | int) -> str:
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return "—" if not np.isfinite(value) else f"{value:.4f}"


class _Tile(QWidget):
    """A small titled image view for the side-by-side dock."""

    def __init__(self, title: str, caption: str = "") -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel(f"<b>{title}</b>")
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumSize(160, 160)
        self.view.setBackground("#202020")
        vb = self.view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        vb.addItem(self.item)
        self.caption = QLabel(caption)
        self.caption.setStyleSheet("color: gray;")
        self.caption.setWordWrap(True)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.cache: ThresholdCache | None = None  # binary tiles follow the threshold


class BinarisePanel(QWidget):
    """The widgets of the Binarise dock (layout only; :class:`BinariseTool` drives them)."""

    def __init__(self) -> None:
        super().__init__()
        self.source = QComboBox()
        self.source.setToolTip("The output (or map) to binarise")
        self.info = QLabel("Run a model with an image-shaped output (a mask, a reconstruction).")
        self.info.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c07000;")
        self.warning.hide()

        self.hist_plot = pg.PlotWidget()
        self.hist_plot.setMinimumHeight(150)
        self.hist_plot.setMenuEnabled(False)
        self.hist_plot.setLabel("bottom", "value")
        self.hist_plot.setLabel("left", "pixels")
        self.hist_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.hist_curve = self.hist_plot.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(90, 140, 220, 160), pen=(90, 140, 220))
        self.best_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((60, 200, 90), style=Qt.PenStyle.DashLine))
        self.best_line.hide()
        self.thr_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen((255, 200, 0), width=2))
        self.thr_line.setHoverPen(pg.mkPen((255, 240, 120), width=3))
        self.hist_plot.addItem(self.best_line)
        self.hist_plot.addItem(self.thr_line)
        self.log_counts = QCheckBox("log counts")
        self.log_counts.setChecked(True)
        self.log_counts.setToolTip("log10(1 + count): small bins stay visible next to a saturated background")

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(6)
        self.spin.setRange(-1e30, 1e30)
        self.spin.setSingleStep(0.01)
        self.spin.setValue(DEFAULT_THRESHOLD)
        self.spin.setToolTip("Threshold: foreground is value > threshold (≤ when inverted)")
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_LABELS[m], m)
        self.apply_method = QPushButton("Apply")
        self.apply_method.setToolTip("Set the threshold with this method (scikit-image)")
        self.reset = QPushButton("0.5")
        self.reset.setToolTip("Back to 0.5")
        self.method_label = QLabel("")
        self.method_label.setStyleSheet("color: gray;")
        self.invert = QCheckBox("Invert (foreground ≤ threshold)")
        self.view = QComboBox()
        self.view.addItems(VIEWS)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Opacity of the map over the input")

        self.load_ref = QPushButton("Load…")
        self.load_ref.setToolTip("A reference mask: PNG (non-zero = foreground) or NPY")
        self.painted_ref = QPushButton("Painted mask")
        self.painted_ref.setToolTip("Use the mask painted on the image as the reference")
        self.clear_ref = QPushButton("Clear")
        self.ref_label = QLabel("No reference.")
        self.ref_label.setWordWrap(True)
        self.errors = QCheckBox("TP / FP / FN on the image")
        self.errors.setToolTip("Green: true positive, red: false positive, blue: false negative")
        self.table = QTableWidget(len(ROWS), 2)
        self.table.setHorizontalHeaderLabels(["Score", "Value"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(30 * (len(ROWS) + 1))
        for r, key in enumerate(ROWS):
            for c, text in enumerate((SCORE_LABELS[key], "—")):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.item(0, 0).setToolTip(f"(2·|A∩B| + ε) / (|A| + |B| + ε), ε = {DICE_EPS:g}")
        self.curve_plot = pg.PlotWidget()
        self.curve_plot.setMinimumHeight(130)
        self.curve_plot.setMenuEnabled(False)
        self.curve_plot.setLabel("bottom", "threshold")
        self.curve_plot.setLabel("left", "Dice")
        self.curve_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.curve_plot.setYRange(0, 1)
        self.curve = self.curve_plot.plot([], [], pen=pg.mkPen((60, 200, 90), width=2))
        self.best_point = pg.ScatterPlotItem(size=10, brush=(60, 200, 90), pen="w")
        self.curve_thr = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((255, 200, 0)))
        self.curve_plot.addItem(self.best_point)
        self.curve_plot.addItem(self.curve_thr)
        self.best_label = QLabel("")
        self.use_best = QPushButton("Use best")
        self.export_mask = QPushButton("Export mask…")
        self.export_mask.setToolTip("The binary mask: PNG (0/255) or NPY (bool)")
        self.export_scores = QPushButton("Export scores…")
        self.export_scores.setToolTip("Threshold and scores: JSON or CSV")
        self.side_by_side = QPushButton("Side by side…")
        self.side_by_side.setToolTip("Input, outputs, binary mask, reconstruction and difference")

        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Source"))
        row.addWidget(self.source, 1)
        lay.addLayout(row)
        lay.addWidget(self.info)
        lay.addWidget(self.warning)
        lay.addWidget(self.hist_plot)
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        row.addWidget(self.reset)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Method"))
        row.addWidget(self.method, 1)
        row.addWidget(self.apply_method)
        row.addWidget(self.log_counts)
        lay.addLayout(row)
        lay.addWidget(self.method_label)
        lay.addWidget(self.invert)
        row = QHBoxLayout()
        row.addWidget(QLabel("View"))
        row.addWidget(self.view, 1)
        row.addWidget(self.opacity)
        lay.addLayout(row)
        ref = QGroupBox("Reference")
        rl = QVBoxLayout(ref)
        row = QHBoxLayout()
        row.addWidget(self.load_ref)
        row.addWidget(self.painted_ref)
        row.addWidget(self.clear_ref)
        rl.addLayout(row)
        rl.addWidget(self.ref_label)
        rl.addWidget(self.errors)
        rl.addWidget(self.table)
        rl.addWidget(self.curve_plot)
        row = QHBoxLayout()
        row.addWidget(self.best_label, 1)
        row.addWidget(self.use_best)
        rl.addLayout(row)
        lay.addWidget(ref)
        row = QHBoxLayout()
        row.addWidget(self.export_mask)
        row.addWidget(self.export_scores)
        row.addWidget(self.side_by_side)
        lay.addLayout(row)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def shown_score(self, key: str) -> str:
        """The text shown for a score (``"dice"``, ``"iou"``, …)."""
        return self.table.item(ROWS.index(key), 1).text()


class GalleryPanel(QWidget):
    """Maps side by side: the input, each output, its binary, reconstruction and difference."""

    def __init__(self) -> None:
        super().__init__()
        self.all_outputs = QCheckBox("All outputs side by side")
        self.note = QLabel("")
        self.note.setStyleSheet("color: gray;")
        self.note.setWordWrap(True)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.all_outputs)
        lay.addWidget(self.note)
        lay.addWidget(scroll, 1)
        self.setMinimumHeight(280)
        self.tiles: dict[str, _Tile] = {}

    def clear(self) -> None:
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.hide()  # at once: deleteLater runs only after this rebuild
            tile.deleteLater()
        self.tiles = {}

    def add(self, key: str, tile: _Tile, columns: int = 4) -> None:
        n = len(self.tiles)
        self.grid.addWidget(tile, n // columns, n % columns)
        self.tiles[key] = tile


class BinariseTool(QObject):
    """Wires the Binarise docks to the state, the worker and the canvas.

    Attributes
    ----------
    threshold : float
        The current threshold (0.5 until the user moves it).
    reference_provider : callable or None
        Returns ``(name, mask)`` for the "Painted mask" button: an image-sized boolean mask,
        sampled onto the output through the input's frame. Without one, the masks tool's active
        mask is used when that tool is installed.
    confirm : callable
        ``confirm(title, text) -> bool``: asks the user (the resize offer).
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.state
        self.panel = BinarisePanel()
        self.gallery = GalleryPanel()
        self.confirm: Callable[[str, str], bool] = window.confirm
        self.reference_provider: Callable[[], tuple[str, np.ndarray] | None] | None = None
        self.threshold = DEFAULT_THRESHOLD
        self.method_used = ""
        self.sources: dict[str, Source] = {}
        self.extra_sources: dict[str, Source] = {}
        self.caches: dict[str, ThresholdCache] = {}
        self.current: str | None = None
        self.scorer: ReferenceScorer | None = None
        self.scores: Scores | None = None
        self.curve: DiceCurve | None = None
        self.reference: np.ndarray | None = None  # as given (any size)
        self.reference_name = ""
        self._ref_for_map: np.ndarray | None = None  # on the current map's grid
        self._ref_resize_ok = False
        self._ref_is_image_mask = False
        self._syncing = False
        self._above: np.ndarray | None = None
        self._inside: np.ndarray | None = None  # display-code layers inside/outside the reference
        self._outside: np.ndarray | None = None
        self.difference: np.ndarray | None = None  # |input - reconstruction| when shown

        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.err_in = pg.ImageItem(axisOrder="row-major")
        self.err_out = pg.ImageItem(axisOrder="row-major")
        for item in (self.map_item, self.err_in, self.err_out):
            item.hide()  # placed over the image by install(), with the Binarise tab

        p = self.panel
        p.source.currentIndexChanged.connect(lambda _i: self.select_source(p.source.currentData()))
        p.slider.valueChanged.connect(self._slider_moved)
        p.spin.valueChanged.connect(lambda v: self.set_threshold(v, source="spin"))
        p.thr_line.sigPositionChanged.connect(lambda line: self.set_threshold(line.value(), source="line"))
        p.reset.clicked.connect(lambda: self.set_threshold(DEFAULT_THRESHOLD))
        p.apply_method.clicked.connect(lambda: self.apply_method(p.method.currentData()))
        p.invert.toggled.connect(lambda _on: self._threshold_changed(rescore=True))
        p.view.currentIndexChanged.connect(lambda _i: self._refresh_view())
        p.opacity.valueChanged.connect(lambda _v: self._refresh_view())
        p.log_counts.toggled.connect(lambda _on: self._refresh_histogram())
        p.load_ref.clicked.connect(self.load_reference_dialog)
        p.painted_ref.clicked.connect(self.use_painted_reference)
        p.clear_ref.clicked.connect(self.clear_reference)
        p.errors.toggled.connect(lambda _on: self._refresh_view())
        p.use_best.clicked.connect(self.use_best)
        p.export_mask.clicked.connect(self.export_mask_dialog)
        p.export_scores.clicked.connect(self.export_scores_dialog)
        self.gallery.all_outputs.toggled.connect(lambda _on: self._rebuild_gallery())

        w = self.controller.worker
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        self.state.prediction_changed.connect(self._prediction_changed)
        self.state.model_changed.connect(lambda _info: self._reset_sources())
        self.state.image_changed.connect(lambda _image: self._reset_sources())
        self._enable()

    # -- sources --------------------------------------------------------------------------------

    def _reset_sources(self) -> None:
        """A new model or image: the old maps no longer apply."""
        self.controller.worker.cancel(KIND_CACHE)
        self.sources, self.extra_sources, self.caches, self.current = {}, {}, {}, None
        self.scorer = self.scores = self.curve = None
        self._refresh_combo()
        self._refresh_all()

    def _frame(self) -> Frame | None:
        pred = self.state.prediction
        if pred is None or not pred.frames:
            img = self.state.image
            return None if img is None else Frame(0.0, 0.0, float(img.width), float(img.height))
        return next(iter(pred.frames.values()))

    def _prediction_changed(self, prediction) -> None:
        if prediction is None:
            return
        frame = self._frame()
        sources = {s.name: s for s in image_sources(prediction.outputs)}
        for s in sources.values():
            s.frame = frame
        sources.update(self.extra_sources)
        self.sources = sources
        self._build_caches({k: s for k, s in sources.items() if s.values is not None})

    def add_source(self, name: str, array: np.ndarray, frame: Frame | None = None) -> None:
        """Offer another map for binarising (an activation map, say).

        ``array`` is ``(H, W)`` or ``(H, W, 1)``; ``frame`` says where it lies on the image
        (default: the model input's frame).
        """
        a = np.asarray(array)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim != 2:
            src = Source(name, None, f"“{name}” has shape {tuple(np.shape(array))}: binarising needs a 2-D map.")
        else:
            src = Source(name, a, frame=frame or self._frame())
        self.extra_sources[name] = src
        self.sources[name] = src
        if src.values is not None:
            self._build_caches({name: src}, keep=True)
        else:
            self._refresh_combo()

    def _build_caches(self, sources: dict[str, Source], keep: bool = False) -> None:
        maps = {name: s.values for name, s in sources.items()}
        previous = dict(self.caches) if keep else {}
        if not maps:  # nothing to prepare: say why at once
            self.caches = previous
            self._refresh_combo()
            if self.current is None:
                self._refresh_all()
            return

        def job(ctx) -> dict:
            out = dict(previous)
            for i, (name, values) in enumerate(maps.items()):
                ctx.progress(i, len(maps))
                out[name] = ThresholdCache(values, check=ctx.check)
            return out

        self.panel.info.setText("Preparing the histogram…")
        self.controller.submit(KIND_CACHE, job)

    def _refresh_combo(self) -> None:
        combo = self.panel.source
        combo.blockSignals(True)
        combo.clear()
        for name, s in self.sources.items():
            suffix = "" if s.values is not None else "  (not an image)"
            combo.addItem(name + suffix, name)
        names = list(self.sources)
        pick = None
        if names:
            usable = [n for n in names if self.sources[n].values is not None]
            pick = self.current if self.current in names else (usable[0] if usable else names[0])
            combo.setCurrentIndex(names.index(pick))
        combo.blockSignals(False)
        if pick is not None:
            self.select_source(pick)

    def select_source(self, name: str | None) -> None:
        """Show ``name`` (a key of :attr:`sources`) in the panel and on the canvas."""
        if self._syncing or name is None:
            return
        changed = name != self.current
        self.current = name
        src = self.sources.get(name)
        cache = self.caches.get(name)
        self.scorer = self.scores = self.curve = None
        self._ref_for_map = None
        if src is None or src.values is None or cache is None:
            self._refresh_all()
            return
        if changed:
            self._configure_slider(cache)
        if self.reference is not None:
            self._apply_reference(ask=False)
        self._refresh_all()

    @property
    def cache(self) -> ThresholdCache | None:
        return self.caches.get(self.current) if self.current else None

    # -- threshold ------------------------------------------------------------------------------

    def _range(self, cache: ThresholdCache) -> tuple[float, float]:
        lo, hi = cache.lo, cache.hi
        return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)

    def _configure_slider(self, cache: ThresholdCache) -> None:
        lo, hi = self._range(cache)
        self.panel.spin.setSingleStep(max((hi - lo) / 100, 1e-6))

    def _slider_moved(self, value: int) -> None:
        cache = self.cache
        if self._syncing or cache is None:
            return
        lo, hi = self._range(cache)
        self.set_threshold(lo + (hi - lo) * value / SLIDER_STEPS, source="slider")

    def set_threshold(self, value: float, source: str = "") -> None:
        """Set the threshold and update every view and score."""
        if self._syncing:
            return
        value = float(value)
        if not np.isfinite(value):
            return
        self.threshold = value
        if source in ("slider", "spin", "line"):
            self.method_used = ""
        self._threshold_changed(rescore=False, skip=source)

    def _threshold_changed(self, rescore: bool = False, skip: str = "") -> None:
        p = self.panel
        cache = self.cache
        self._syncing = True
        try:
            if skip != "spin":
                p.spin.setValue(self.threshold)
            if skip != "line":
                p.thr_line.setValue(self.threshold)
            if skip != "slider" and cache is not None:
                lo, hi = self._range(cache)
                p.slider.setValue(int(round(np.clip((self.threshold - lo) / (hi - lo), 0, 1) * SLIDER_STEPS)))
        finally:
            self._syncing = False
        p.curve_thr.setValue(self.threshold)
        p.method_label.setText(
            f"{METHOD_LABELS[self.method_used]}: {self.threshold:.6g}" if self.method_used else ""
        )
        if cache is not None:
            self._above = cache.set_threshold(self.threshold)
            for tile in self.gallery.tiles.values():
                if tile.cache is not None and tile.cache is not cache:
                    tile.cache.set_threshold(self.threshold)
        if rescore:
            self._refresh_curve()
        self._refresh_scores()
        self._refresh_view()
        self._refresh_gallery_luts()

    def apply_method(self, method: str) -> None:
        """Set the threshold with an automatic method (Li, Triangle and Mean on the worker)."""
        cache = self.cache
        if cache is None:
            return
        if cache.counts.n_finite == 0:
            self._warn("The map has no finite values: there is nothing to threshold.")
            return
        if method in ("otsu", "yen", "isodata"):  # from the cached histogram: microseconds
            self._method_done(method, cache.threshold(method))
            return

        name = self.current

        def job(ctx) -> tuple[str, str, float]:
            return name, method, cache.threshold(method, check=ctx.check)

        self.panel.method_label.setText(f"Computing {METHOD_LABELS[method]}…")
        self.controller.submit(KIND_METHOD, job)

    def _method_done(self, method: str, value: float) -> None:
        self.set_threshold(value)
        self.method_used = method
        self.panel.method_label.setText(f"{METHOD_LABELS[method]}: {value:.6g}")

    def use_best(self) -> None:
        if self.curve is not None:
            self.set_threshold(self.curve.best_threshold)

    @property
    def invert(self) -> bool:
        return self.panel.invert.isChecked()

    def binary_mask(self) -> np.ndarray | None:
        """The exact binary mask of the current source at the current threshold."""
        cache = self.cache
        return None if cache is None else binarise(cache.values, self.threshold, self.invert)

    # -- reference ------------------------------------------------------------------------------

    def load_reference_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Reference mask", self.controller.last_dir(),
            "Masks (*.png *.bmp *.tif *.tiff *.npy);;All files (*)",
        )
        if path:
            self.load_reference(path)

    def load_reference(self, path: str | Path) -> bool:
        """Load a reference mask file (PNG/BMP/TIFF: non-zero is foreground; NPY)."""
        from maskviewer.io.images import load_image

        try:
            image = load_image(path)
            mask = reference_to_mask(image.raw if image.raw is not None else image.array)
        except (MaskviewerError, ValueError) as exc:
            self.window.show_error("Cannot use this reference", f"{Path(path).name}: {exc}")
            return False
        return self.set_reference(mask, Path(path).name)

    def use_painted_reference(self) -> bool:
        """Use the painted mask (from :attr:`reference_provider` or the masks tool)."""
        got = None
        if self.reference_provider is not None:
            got = self.reference_provider()
        else:
            masks = getattr(self.window, "tools", {}).get("masks")
            mask = masks.current_mask() if masks is not None and hasattr(masks, "current_mask") else None
            got = None if mask is None else ("painted mask", np.asarray(mask) > 0.5)
        if got is None:
            self.window.show_error("No painted mask", "Paint a mask on the image first (Masks panel).")
            return False
        name, mask = got
        return self.set_reference(np.asarray(mask, dtype=bool), name, image_mask=True)

    def set_reference(self, mask: np.ndarray, name: str = "reference", image_mask: bool = False) -> bool:
        """Score against ``mask`` (bool). A mask of another size than the map is resized
        (nearest neighbour) if the user agrees; an image-sized painted mask (``image_mask``)
        is sampled through the input's frame."""
        self.reference = np.asarray(mask, dtype=bool)
        self.reference_name = name
        self._ref_resize_ok = False
        self._ref_is_image_mask = image_mask
        ok = self._apply_reference(ask=True)
        self._refresh_all()
        return ok

    def clear_reference(self) -> None:
        self.reference = None
        self.reference_name = ""
        self._ref_for_map = None
        self.scorer = self.scores = self.curve = None
        if self.cache is not None:
            self.cache.clear_layers()
        self._refresh_all()

    def _apply_reference(self, ask: bool) -> bool:
        cache = self.cache
        ref = self.reference
        if cache is None or ref is None:
            return False
        shape = cache.values.shape
        src = self.sources.get(self.current)
        if self._ref_is_image_mask and src is not None and src.frame is not None:
            f = src.frame
            ref = sample_on_frame(ref, (f.x, f.y, f.width, f.height), shape)
        elif ref.shape != shape:
            if not self._ref_resize_ok:
                question = (
                    f"The reference “{self.reference_name}” is {ref.shape[1]}×{ref.shape[0]} "
                    f"pixels and the output “{self.current}” is {shape[1]}×{shape[0]}.\n\n"
                    "Resize the reference to the output (nearest neighbour)?"
                )
                if not ask or not self.confirm("Reference size differs", question):
                    self.panel.ref_label.setText(
                        f"{self.reference_name}: {ref.shape[1]}×{ref.shape[0]}, not the output's "
                        f"{shape[1]}×{shape[0]}; not used. Load a mask of the output's size or "
                        "accept the resize."
                    )
                    self._ref_for_map = None
                    self.scorer = None
                    return False
                self._ref_resize_ok = True
            ref = resize_nearest(ref, shape)
        self._ref_for_map = ref
        self.scorer = None  # the old reference's scores no longer apply
        cache.clear_layers()
        self._inside = cache.add_layer(ref)  # copies of the codes, patched as they are
        self._outside = cache.add_layer(~ref)
        values = cache.values
        name = self.current

        def job(_ctx) -> tuple[str, ReferenceScorer]:
            return name, ReferenceScorer(values, ref)

        self.panel.ref_label.setText(f"{self.reference_name}: scoring…")
        self.controller.submit(KIND_SCORE, job)
        return True

    # -- worker results -------------------------------------------------------------------------

    def _job_finished(self, kind: str, generation: int, result) -> None:
        if not kind.startswith("binarise-") or not self.controller.is_latest(kind, generation):
            return
        if kind == KIND_CACHE:
            self.caches = result
            first = self.current is None or self.current not in self.caches
            self._refresh_combo()
            if first and self.cache is not None:
                self._configure_slider(self.cache)
            self._threshold_changed(rescore=True)
            self._rebuild_gallery()
        elif kind == KIND_SCORE:
            name, scorer = result
            if name == self.current:
                self.scorer = scorer
                self._refresh_curve()
                self._threshold_changed(rescore=False)
        elif kind == KIND_METHOD:
            name, method, value = result
            if name == self.current:
                self._method_done(method, value)

    def _job_failed(self, kind: str, generation: int, message: str, _exc) -> None:
        if kind.startswith("binarise-") and self.controller.is_latest(kind, generation):
            self._warn(message)

    def _warn(self, message: str) -> None:
        self.panel.warning.setText(message)
        self.panel.warning.setVisible(bool(message))

    # -- views ----------------------------------------------------------------------------------

    def _enable(self) -> None:
        p = self.panel
        has = self.cache is not None
        for w in (p.slider, p.spin, p.method, p.apply_method, p.reset, p.invert, p.export_mask, p.hist_plot):
            w.setEnabled(has)
        has_ref = has and self.scorer is not None
        for w in (p.errors, p.table, p.curve_plot, p.use_best, p.export_scores):
            w.setEnabled(has_ref)
        p.painted_ref.setEnabled(has)
        p.load_ref.setEnabled(has)
        p.clear_ref.setEnabled(self.reference is not None)

    def _refresh_all(self) -> None:
        self._warn("")
        self._refresh_info()
        self._refresh_histogram()
        self._refresh_curve()
        self._threshold_changed()
        self._rebuild_gallery()
        self._enable()

    def _refresh_info(self) -> None:
        p = self.panel
        src = self.sources.get(self.current) if self.current else None
        cache = self.cache
        if src is None:
            p.info.setText("Run a model with an image-shaped output (a mask, a reconstruction).")
        elif src.values is None:
            p.info.setText(src.note)
        elif cache is None:
            p.info.setText("Preparing the histogram…")
        else:
            h, w = cache.values.shape
            p.info.setText(f"{w}×{h} {cache.values.dtype}, values {cache.lo:.4g} … {cache.hi:.4g}")
            note = cache.counts.nonfinite.describe()
            if cache.counts.n_finite == 0:
                note = "Every value is NaN or infinite: the model's output is broken (check its input scaling)."
            if note:
                self._warn(note)
        if self.reference is None:
            p.ref_label.setText("No reference. Load a mask, or use the painted one.")
        elif self._ref_for_map is not None:
            r = self._ref_for_map
            p.ref_label.setText(f"{self.reference_name}: {int(r.sum()):,} of {r.size:,} pixels foreground")

    def _refresh_histogram(self) -> None:
        p = self.panel
        cache = self.cache
        if cache is None:
            p.hist_curve.setData([0, 1], [0])
            return
        counts = np.log10(1 + cache.hist) if p.log_counts.isChecked() else cache.hist.astype(float)
        p.hist_curve.setData(cache.edges.astype(np.float64), counts)
        p.hist_plot.setLabel("left", "log₁₀(1 + pixels)" if p.log_counts.isChecked() else "pixels")
        lo, hi = self._range(cache)
        pad = (hi - lo) * 0.02
        p.hist_plot.setXRange(lo - pad, hi + pad, padding=0)
        p.thr_line.setBounds((lo - pad, hi + pad))

    def _refresh_curve(self) -> None:
        p = self.panel
        if self.scorer is None:
            self.curve = None
            p.curve.setData([], [])
            p.best_point.setData([], [])
            p.best_line.hide()
            p.best_label.setText("")
            return
        self.curve = c = self.scorer.dice_curve(invert=self.invert)
        p.curve.setData(c.thresholds, c.dice)
        p.best_point.setData([c.best_threshold], [c.best_dice])
        p.best_line.setValue(c.best_threshold)
        p.best_line.show()
        p.best_label.setText(f"Best Dice {c.best_dice:.4f} at {c.best_threshold:.6g}")
        self._enable()

    def _refresh_scores(self) -> None:
        p = self.panel
        if self.scorer is None:
            self.scores = None
            for r in range(len(ROWS)):
                p.table.item(r, 1).setText("—")
            return
        self.scores = s = self.scorer.scores(self.threshold, self.invert)
        for r, key in enumerate(ROWS):
            p.table.item(r, 1).setText(_fmt(getattr(s, key)))
        if self._ref_for_map is not None:
            r = self._ref_for_map
            p.ref_label.setText(f"{self.reference_name}: {int(r.sum()):,} of {r.size:,} pixels foreground")

    def _refresh_view(self) -> None:
        cache, src = self.cache, self.sources.get(self.current) if self.current else None
        items = (self.map_item, self.err_in, self.err_out)
        view = self.panel.view.currentText()
        if cache is None or src is None or src.frame is None:
            for item in items:
                item.hide()
            return
        f = src.frame
        alpha = int(round(self.panel.opacity.value() * 2.55))
        if view == "Hidden":
            self.map_item.hide()
        else:
            if view == "Continuous":
                lut = cache.continuous_lut(_colormap("viridis"), 255)
            elif view == "Continuous over input":
                lut = cache.continuous_lut(_colormap("viridis"), alpha)
            elif view == "Binary":
                lut = cache.binary_lut(self.threshold, self.invert, (255, 255, 255, 255), (0, 0, 0, 255), (255, 0, 255, 255), self._above)
            else:
                lut = cache.binary_lut(self.threshold, self.invert, (*TINT, alpha), (0, 0, 0, 0), (255, 0, 255, alpha), self._above)
            self._show(self.map_item, cache.codes, lut, f)
        show_errors = self.panel.errors.isChecked() and self.scorer is not None and cache._layers
        if show_errors:
            lut_in = cache.binary_lut(self.threshold, self.invert, TP_COLOUR, FN_COLOUR, FN_COLOUR, self._above)
            lut_out = cache.binary_lut(self.threshold, self.invert, FP_COLOUR, (0, 0, 0, 0), (0, 0, 0, 0), self._above)
            self._show(self.err_in, self._inside, lut_in, f)
            self._show(self.err_out, self._outside, lut_out, f)
        else:
            self.err_in.hide()
            self.err_out.hide()

    @staticmethod
    def _show(item: pg.ImageItem, codes: np.ndarray, lut: np.ndarray, frame: Frame) -> None:
        item.setImage(codes, autoLevels=False, levels=(0, 255), lut=lut)
        item.setRect(frame.x, frame.y, frame.width, frame.height)
        item.show()

    # -- side by side ---------------------------------------------------------------------------

    def _rebuild_gallery(self) -> None:
        g = self.gallery
        g.clear()
        pred = self.state.prediction
        cache = self.cache
        if pred is None or cache is None:
            g.note.setText("Shows the input, the outputs, the binary mask and, for an autoencoder, "
                           "the reconstruction and its difference from the input.")
            return
        notes = []
        fed = self._fed_input()
        recon = self._reconstruction(fed)
        if fed is not None:
            arrays = [fed[1]] + ([recon[1]] if recon is not None else [])
            finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            t = _Tile(f"Input “{fed[0]}”", f"as fed to the model, {lo:.3g} … {hi:.3g}")
            t.item.setImage(_display_uint8(fed[1], lo, hi), autoLevels=False, levels=(0, 255))
            g.add("input", t)
            if recon is not None:
                t = _Tile(f"Reconstruction “{recon[0]}”", "same scale as the input")
                t.item.setImage(_display_uint8(recon[1], lo, hi), autoLevels=False, levels=(0, 255))
                g.add("reconstruction", t)
        names = [n for n in self.caches] if g.all_outputs.isChecked() else [self.current]
        for name in names:
            c = self.caches[name]
            t = _Tile(name, f"{c.lo:.3g} … {c.hi:.3g}")
            t.item.setImage(c.codes, autoLevels=False, levels=(0, 255), lut=c.continuous_lut(_colormap("viridis")))
            g.add(f"map:{name}", t)
            t = _Tile(f"{name}: binary", "")
            t.cache = c
            c.set_threshold(self.threshold)
            g.add(f"binary:{name}", t)
        if recon is not None and fed is not None and recon[1].shape == fed[1].shape:
            diff = np.abs(fed[1].astype(np.float32) - recon[1].astype(np.float32))
            diff = diff.mean(axis=2) if diff.ndim == 3 else diff
            self.difference = diff
            top = float(np.nanmax(diff)) if np.isfinite(diff).any() else 1.0
            t = _Tile("Difference |input − reconstruction|", f"0 … {top:.3g}, mean {float(np.nanmean(diff)):.3g}")
            heat = _colormap("inferno")[_display_uint8(diff, 0.0, top)]
            t.item.setImage(heat, autoLevels=False, levels=(0, 255))
            g.add("difference", t)
        else:
            self.difference = None
            if len(pred.outputs) > 1:
                notes.append("No output has the input's shape, so there is no reconstruction to compare.")
        g.note.setText(" ".join(notes))
        self._refresh_gallery_luts()

    def _fed_input(self) -> tuple[str, np.ndarray] | None:
        pred = self.state.prediction
        for name, a in (pred.inputs.items() if pred else ()):
            if np.ndim(a) in (2, 3):
                return name, np.asarray(a)
        return None

    def _reconstruction(self, fed) -> tuple[str, np.ndarray] | None:
        """An output with the fed input's shape (an autoencoder's reconstruction), if any."""
        pred = self.state.prediction
        if pred is None or fed is None:
            return None
        current_output = (self.current or "").split(" [channel")[0]
        candidates = [(n, np.asarray(v)) for n, v in pred.outputs.items() if np.shape(v) == fed[1].shape]
        others = [c for c in candidates if c[0] != current_output]
        pick = others or candidates
        return pick[0] if pick else None

    def _refresh_gallery_luts(self) -> None:
        for key, tile in self.gallery.tiles.items():
            if tile.cache is not None and key.startswith("binary:"):
                c = tile.cache
                above = c._bin_min > self.threshold
                lut = c.binary_lut(self.threshold, self.invert, (255, 255, 255, 255), (0, 0, 0, 255), (255, 0, 255, 255), above)
                tile.item.setImage(c.codes, autoLevels=False, levels=(0, 255), lut=lut)
                frac = int(c.counts.count_positive(self.threshold, self.invert)) / c.values.size
                op = "≤" if self.invert else ">"
                tile.caption.setText(f"{op} {self.threshold:.4g}: {frac:.1%} foreground")

    # -- export ---------------------------------------------------------------------------------

    def export_mask_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Export binary mask", str(Path(self.controller.last_dir()) / "mask.png"),
            "PNG 0/255 (*.png);;NumPy bool (*.npy)",
        )
        if path:
            self.export_mask(path)

    def export_mask(self, path: str | Path) -> bool:
        """Write the exact binary mask: ``.png`` as 0/255 grey, ``.npy`` as bool."""
        mask = self.binary_mask()
        path = Path(path)
        if mask is None:
            self.window.show_error("Nothing to export", "Run a model with an image-shaped output first.")
            return False
        try:
            if path.suffix.lower() == ".npy":
                with atomic_write(path) as fh:
                    np.save(fh, mask, allow_pickle=False)
            elif path.suffix.lower() == ".png":
                from PIL import Image

                with atomic_write(path) as fh:
                    Image.fromarray(mask.astype(np.uint8) * 255).save(fh, format="PNG")
            else:
                self.window.show_error("Cannot export", f"{path.name}: save the mask as .png or .npy.")
                return False
        except OSError as exc:
            self.window.show_error("Cannot export", f"{path}: {exc.strerror or exc}")
            return False
        self.window.statusBar().showMessage(f"Saved {path.name}", 8000)
        return True

    def score_record(self) -> dict:
        """What :meth:`export_scores` writes."""
        cache = self.cache
        rec = {
            "source": self.current,
            "threshold": self.threshold,
            "method": self.method_used or "manual",
            "invert": self.invert,
            "foreground": "value <= threshold" if self.invert else "value > threshold",
            "reference": self.reference_name or None,
            "dice_eps": DICE_EPS,
        }
        if cache is not None:
            nf = cache.counts.nonfinite
            rec.update(height=int(cache.values.shape[0]), width=int(cache.values.shape[1]),
                       nan=nf.nan, posinf=nf.posinf, neginf=nf.neginf)
        if self.scores is not None:
            rec.update({k: v for k, v in self.scores.to_dict().items() if k != "eps"})
        if self.curve is not None:
            rec.update(best_threshold=self.curve.best_threshold, best_dice=self.curve.best_dice)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in rec.items()}

    def export_scores_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Export scores", str(Path(self.controller.last_dir()) / "scores.json"),
            "JSON (*.json);;CSV (*.csv)",
        )
        if path:
            self.export_scores(path)

    def export_scores(self, path: str | Path) -> bool:
        """Write :meth:`score_record` as ``.json`` or as a two-column ``.csv``."""
        path = Path(path)
        rec = self.score_record()
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(rec, indent=2) + "\n"
        elif suffix == ".csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["name", "value"])
            for k, v in rec.items():
                writer.writerow([k, "" if v is None else v])
            text = buf.getvalue()
        else:
            self.window.show_error("Cannot export", f"{path.name}: save the scores as .json or .csv.")
            return False
        try:
            with atomic_write(path, "w") as fh:
                fh.write(text)
        except OSError as exc:
            self.window.show_error("Cannot export", f"{path}: {exc.strerror or exc}")
            return False
        self.window.statusBar().showMessage(f"Saved {path.name}", 8000)
        return True

    def export_items(self) -> list:
        """The binary output shown, for File → Export."""
        from maskviewer.gui.export_tool import binarise_items

        return binarise_items(self)


def install(window) -> BinariseTool:
    """Add the Binarise docks and the export actions."""
    tool = BinariseTool(window)
    window.add_panel("Binarise", tool.panel, Qt.DockWidgetArea.RightDockWidgetArea)
    for z, item in ((20, tool.map_item), (21, tool.err_in), (21, tool.err_out)):
        window.add_panel_overlay("Binarise", item, z)
    dock = window.add_panel("Side by side", tool.gallery, Qt.DockWidgetArea.BottomDockWidgetArea)
    dock.hide()  # the panel's button (or the View menu) shows it
    tool.gallery_dock = dock

    def show_gallery() -> None:
        dock.show()
        dock.raise_()
        window.resizeDocks([dock], [320], Qt.Orientation.Vertical)
        tool._rebuild_gallery()

    tool.panel.side_by_side.clicked.connect(show_gallery)
    menu = window.file_menu
    actions = menu.actions()
    before = actions[-2] if len(actions) >= 2 else None  # keep Quit last
    for text, slot in (
        ("Export Binary Mask…", tool.export_mask_dialog),
        ("Export Binarise Scores…", tool.export_scores_dialog),
    ):
        act = QAction(text, menu)
        act.triggered.connect(lambda _c=False, s=slot: s())
        if before is not None:
            menu.insertAction(before, act)
        else:
            menu.addAction(act)
    return tool
