"""The Binarise dock: widgets bound to a :class:`~maskviewer.gui.binarise.model.BinariseModel`.

The source list, the histogram with its threshold line, slider and spin box, the automatic
methods, polarity and view, the reference group with its score table and Dice curve, and the
export buttons. The widgets change the model; the model's events redraw the widgets. The
buttons that open a dialog (load reference, exports, side by side) are wired by the tool.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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

from maskviewer.core.metrics import DICE_EPS, SCORE_LABELS
from maskviewer.core.threshold import METHOD_LABELS, METHODS
from maskviewer.gui.binarise.model import (
    DEFAULT_THRESHOLD,
    ROWS,
    VIEWS,
    BinariseModel,
)
from maskviewer.gui.binarise.plots import (
    CURVE_EMPTY,
    ERROR_NAMES,
    HIST_EMPTY,
    HIST_NOT_IMAGE,
    HIST_WAITING,
    DiceCurvePlot,
    HistogramPlot,
    curve_legend,
    errors_legend,
    histogram_legend,
)
from maskviewer.gui.binarise.sources import format_score
from maskviewer.gui.empty_state import EmptyState

SLIDER_STEPS = 1000


def _row(*widgets, stretch: QWidget | None = None) -> QHBoxLayout:
    """A row of widgets (``stretch`` takes the spare room); strings become labels."""
    row = QHBoxLayout()
    for w in widgets:
        w = QLabel(w) if isinstance(w, str) else w
        row.addWidget(w, 1 if w is stretch else 0)
    return row


def _legend(html: str) -> QLabel:
    """A line of rich text naming a plot's lines or an overlay's colours."""
    label = QLabel(html)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    return label


class BinarisePanel(QWidget):
    """The widgets of the Binarise dock, bound to ``model``."""

    def __init__(self, model: BinariseModel) -> None:
        super().__init__()
        self.model = model
        self._syncing = False  # set while the model moves the threshold widgets
        self._make_source_widgets()
        self._make_threshold_widgets()
        self._make_reference_widgets()
        self._lay_out()
        self._connect()
        self._enable()

    # -- widgets --------------------------------------------------------------------------------

    def _make_source_widgets(self) -> None:
        self.source = QComboBox()
        self.source.setToolTip("The output (or map) to binarise")
        self.info = QLabel(self.model.info)
        self.info.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c07000;")
        self.warning.hide()
        self.hist_plot = HistogramPlot()
        self.hist_box = EmptyState(self.hist_plot, HIST_EMPTY)  # no axes until there are values
        self.hist_box.setMaximumHeight(240)  # the threshold and the scores below stay in view
        self.hist_legend = _legend(histogram_legend(None, None))
        self.hist_legend.hide()
        self.log_counts = QCheckBox("log counts")
        self.log_counts.setChecked(True)
        self.log_counts.setToolTip("log10(1 + count): small bins stay visible next to a saturated background")

    def _make_threshold_widgets(self) -> None:
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
        self.opacity.setValue(self.model.opacity)
        self.opacity.setToolTip("Opacity of the map over the input")

    def _make_reference_widgets(self) -> None:
        self.load_ref = QPushButton("Load…")
        self.load_ref.setToolTip("A reference mask: PNG (non-zero = foreground) or NPY")
        self.painted_ref = QPushButton("Painted mask")
        self.painted_ref.setToolTip("Use the mask painted on the image as the reference")
        self.clear_ref = QPushButton("Clear")
        self.ref_label = QLabel(self.model.scoring.note)
        self.ref_label.setWordWrap(True)
        self.errors = QCheckBox("TP / FP / FN on the image")
        self.errors.setToolTip("\n".join(f"{short}: {long}" for _c, short, long in ERROR_NAMES))
        self.errors_legend = _legend(errors_legend())
        self.table = self._score_table()
        self.curve_plot = DiceCurvePlot()
        self.curve_box = EmptyState(self.curve_plot, CURVE_EMPTY)
        self.curve_box.setMaximumHeight(200)
        self.curve_legend = _legend(curve_legend())
        self.curve_legend.hide()
        self.best_label = QLabel("")
        self.use_best = QPushButton("Use best")
        self.export_mask = QPushButton("Export mask…")
        self.export_mask.setToolTip("The binary mask: PNG (0/255) or NPY (bool)")
        self.export_scores = QPushButton("Export scores…")
        self.export_scores.setToolTip("Threshold and scores: JSON or CSV")
        self.side_by_side = QPushButton("Side by side…")
        self.side_by_side.setToolTip("Input, outputs, binary mask, reconstruction and difference")

    @staticmethod
    def _score_table() -> QTableWidget:
        table = QTableWidget(len(ROWS), 2)
        table.setHorizontalHeaderLabels(["Score", "Value"])
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.setMinimumHeight(30 * (len(ROWS) + 1))
        for r, key in enumerate(ROWS):
            for c, text in enumerate((SCORE_LABELS[key], "—")):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(r, c, item)
        table.item(0, 0).setToolTip(f"(2·|A∩B| + ε) / (|A| + |B| + ε), ε = {DICE_EPS:g}")
        return table

    def _lay_out(self) -> None:
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(_row("Source", self.source, stretch=self.source))
        lay.addWidget(self.info)
        lay.addWidget(self.warning)
        lay.addWidget(self.hist_box)
        lay.addWidget(self.hist_legend)
        lay.addLayout(_row(self.slider, self.spin, self.reset, stretch=self.slider))
        lay.addLayout(_row("Method", self.method, self.apply_method, self.log_counts, stretch=self.method))
        lay.addWidget(self.method_label)
        lay.addWidget(self.invert)
        lay.addLayout(_row("View", self.view, self.opacity, stretch=self.view))
        ref = QGroupBox("Reference")
        rl = QVBoxLayout(ref)
        rl.addLayout(_row(self.load_ref, self.painted_ref, self.clear_ref))
        rl.addWidget(self.ref_label)
        for w in (self.errors, self.errors_legend, self.table, self.curve_box, self.curve_legend):
            rl.addWidget(w)
        rl.addLayout(_row(self.best_label, self.use_best, stretch=self.best_label))
        lay.addWidget(ref)
        lay.addLayout(_row(self.export_mask, self.export_scores, self.side_by_side))
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # -- widgets → model ------------------------------------------------------------------------

    def _connect(self) -> None:
        m = self.model
        self.source.currentIndexChanged.connect(lambda _i: m.select_source(self.source.currentData()))
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin.valueChanged.connect(lambda v: self._set_threshold(v, "spin"))
        self.hist_plot.thr_line.sigPositionChanged.connect(lambda line: self._set_threshold(line.value(), "line"))
        self.reset.clicked.connect(lambda: m.set_threshold(DEFAULT_THRESHOLD))
        self.apply_method.clicked.connect(lambda: m.apply_method(self.method.currentData()))
        self.invert.toggled.connect(lambda on: None if self._syncing else m.set_invert(on))
        self.view.currentIndexChanged.connect(lambda _i: m.set_display(view=self.view.currentText()))
        self.opacity.valueChanged.connect(lambda v: m.set_display(opacity=v))
        self.errors.toggled.connect(lambda on: m.set_display(show_errors=on))
        self.log_counts.toggled.connect(lambda _on: self._show_histogram())
        self.clear_ref.clicked.connect(m.clear_reference)
        self.use_best.clicked.connect(m.use_best)

        m.sources_changed.connect(self._show_sources)
        m.refreshed.connect(self._show_all)
        m.threshold_changed.connect(self._show_threshold)
        m.curve_changed.connect(self._show_curve)
        m.notes_changed.connect(self._show_notes)

    def _set_threshold(self, value: float, source: str) -> None:
        if not self._syncing:
            self.model.set_threshold(value, source=source)

    def _slider_moved(self, value: int) -> None:
        span = self.model.value_range()
        if self._syncing or span is None:
            return
        lo, hi = span
        self.model.set_threshold(lo + (hi - lo) * value / SLIDER_STEPS, source="slider")

    # -- model → widgets ------------------------------------------------------------------------

    def _show_sources(self, pick: str | None) -> None:
        """Rebuild the source list, ``pick`` current (without re-selecting it)."""
        combo, sources = self.source, self.model.sources
        combo.blockSignals(True)
        combo.clear()
        for name, s in sources.items():
            combo.addItem(name + ("" if s.values is not None else "  (not an image)"), name)
        if pick in sources:
            combo.setCurrentIndex(list(sources).index(pick))
        combo.blockSignals(False)

    def _show_all(self) -> None:
        m = self.model
        if m.current in m.sources and self.source.currentData() != m.current:
            self.source.blockSignals(True)
            self.source.setCurrentIndex(list(m.sources).index(m.current))
            self.source.blockSignals(False)
        span = m.value_range()
        if span is not None:
            self.spin.setSingleStep(max((span[1] - span[0]) / 100, 1e-6))
        self._show_histogram()
        self._show_curve()
        self._show_threshold()

    def _show_histogram(self) -> None:
        cache = self.model.cache
        edges, hist = (None, None) if cache is None else (cache.edges, cache.hist)
        span = self.model.value_range()
        self.hist_plot.show_histogram(edges, hist, self.log_counts.isChecked(), span)
        self.hist_box.set_empty(edges is None or hist is None or span is None, self._hist_empty_text())

    def _hist_empty_text(self) -> str:
        """Why there is no histogram: no prediction yet, an output that is not an image, or
        the values still being counted."""
        m = self.model
        source = m.sources.get(m.current) if m.prediction is not None and m.current else None
        if source is None:
            return HIST_EMPTY
        return (HIST_NOT_IMAGE if source.values is None else HIST_WAITING).format(name=m.current)

    def _show_curve(self) -> None:
        c = self.model.scoring.curve
        self.curve_plot.show_curve(c)
        self.curve_box.set_empty(c is None)
        self.curve_legend.setVisible(c is not None)
        self.hist_plot.show_best(None if c is None else c.best_threshold)
        self._show_hist_legend()
        self.best_label.setText("" if c is None else f"Best Dice {c.best_dice:.4f} at {c.best_threshold:.6g}")
        self._enable()

    def _show_threshold(self, skip: str = "") -> None:
        """Move the threshold widgets (all but ``skip``, the one the user moved) and the scores."""
        m = self.model
        span = m.value_range()
        self._syncing = True
        try:
            if skip != "spin":
                self.spin.setValue(m.threshold)
            if skip != "line":
                self.hist_plot.thr_line.setValue(m.threshold)
            if skip != "slider" and span is not None:
                lo, hi = span
                self.slider.setValue(int(round(np.clip((m.threshold - lo) / (hi - lo), 0, 1) * SLIDER_STEPS)))
            self.invert.setChecked(m.invert)
        finally:
            self._syncing = False
        self.curve_plot.thr_line.setValue(m.threshold)
        self._show_hist_legend()
        for r, key in enumerate(ROWS):
            scores = m.scoring.scores
            self.table.item(r, 1).setText("—" if scores is None else format_score(getattr(scores, key)))
        self._show_notes()
        self._enable()

    def _show_hist_legend(self) -> None:
        m = self.model
        curve = m.scoring.curve
        self.hist_legend.setText(histogram_legend(
            m.threshold if m.cache is not None else None, None if curve is None else curve.best_threshold
        ))
        self.hist_legend.setVisible(m.cache is not None)

    def _show_notes(self) -> None:
        m = self.model
        self.info.setText(m.info)
        self.warning.setText(m.warning)
        self.warning.setVisible(bool(m.warning))
        self.ref_label.setText(m.scoring.note)
        self.method_label.setText(m.method_note)

    def _enable(self) -> None:
        m = self.model
        has = m.cache is not None
        for w in (self.slider, self.spin, self.method, self.apply_method, self.reset, self.invert,
                  self.export_mask, self.hist_plot):
            w.setEnabled(has)
        has_ref = has and m.scoring.scorer is not None
        for w in (self.errors, self.table, self.curve_plot, self.use_best, self.export_scores):
            w.setEnabled(has_ref)
        self.painted_ref.setEnabled(has)
        self.load_ref.setEnabled(has)
        self.clear_ref.setEnabled(m.scoring.mask is not None)

    def shown_score(self, key: str) -> str:
        """The text shown for a score (``"dice"``, ``"iou"``, …)."""
        return self.table.item(ROWS.index(key), 1).text()
