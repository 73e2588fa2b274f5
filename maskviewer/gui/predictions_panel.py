"""The predictions dock: top-k classes per vector output, image-shaped outputs as images."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.predictions import looks_like_probabilities, output_kind, softmax, top_k
from maskviewer.core.state import Prediction


class PredictionsPanel(QWidget):
    """Shows the latest :class:`Prediction`. ``tables`` maps output name to its table (for tests)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.k = QSpinBox()
        self.k.setRange(1, 100)
        self.k.setValue(5)
        self.k.setPrefix("top ")
        self.k.valueChanged.connect(lambda _v: self.refresh())
        self.timing = QLabel("")
        head = QHBoxLayout()
        head.addWidget(self.k)
        head.addStretch(1)
        head.addWidget(self.timing)
        self._body = QWidget()
        self._body_lay = QVBoxLayout(self._body)
        self._body_lay.setContentsMargins(0, 0, 0, 0)
        self._body_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._body)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c03030;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        lay.addLayout(head)
        lay.addWidget(self.error_label)
        lay.addWidget(scroll, 1)
        self.placeholder = QLabel("No prediction yet.")
        self._body_lay.insertWidget(0, self.placeholder)
        self.prediction: Prediction | None = None
        self.labels: list[str] | None = None
        self.tables: dict[str, QTableWidget] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self._groups: list[QWidget] = []
        self._views: dict[str, _OutputView] = {}
        self._signature: list = []

    def set_labels(self, labels: list[str] | None) -> None:
        self.labels = labels
        self.refresh()

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.error_label.hide()
        self.refresh()

    def show_error(self, message: str) -> None:
        """Say why the latest inference failed; the last good prediction stays below."""
        self.error_label.setText(message)
        self.error_label.show()

    def refresh(self) -> None:
        pred = self.prediction
        self.placeholder.setVisible(pred is None)
        self.timing.setText("" if pred is None else f"{pred.seconds * 1000:.1f} ms")
        outputs = {} if pred is None else {k: np.asarray(v) for k, v in pred.outputs.items()}
        signature = [(k, output_kind(v.shape), v.shape) for k, v in outputs.items()]
        if signature != self._signature:  # other outputs: rebuild; same outputs: update in place
            for g in self._groups:
                self._body_lay.removeWidget(g)
                g.deleteLater()
            self._groups, self._views, self.tables, self.images = [], {}, {}, {}
            for pos, (name, kind, shape) in enumerate(signature):
                view = _OutputView(name, kind, shape)
                self._views[name] = view
                self._groups.append(view)
                self._body_lay.insertWidget(pos + 1, view)
                if view.table is not None:
                    self.tables[name] = view.table
                if view.image is not None:
                    self.images[name] = view.image
            self._signature = signature
        for name, value in outputs.items():
            self._views[name].update_value(value, self.labels, self.k.value())


class _OutputView(QGroupBox):
    """One output: a top-k table and a bar chart (vectors), an image, or a summary line."""

    def __init__(self, name: str, kind: str, shape: tuple) -> None:
        super().__init__(f"{name}  {tuple(shape)}")
        self.kind = kind
        self.table: QTableWidget | None = None
        self.image: pg.ImageItem | None = None
        self.bars: pg.BarGraphItem | None = None
        lay = QVBoxLayout(self)
        self.note = QLabel("")
        self.note.setStyleSheet("color: gray;")
        lay.addWidget(self.note)
        if kind == "vector":
            self.table = QTableWidget(0, 3)
            self.table.verticalHeader().hide()
            self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
            lay.addWidget(self.table)
            n = int(np.prod(shape)) if len(shape) else 1
            if 1 < n <= 100:
                plot = pg.PlotWidget()
                plot.setMaximumHeight(110)
                plot.setMenuEnabled(False)
                plot.setMouseEnabled(False, False)
                plot.hideButtons()
                plot.getAxis("left").setWidth(34)
                self.bars = pg.BarGraphItem(x=np.arange(n), height=np.zeros(n), width=0.8, brush="#4a90d9")
                plot.addItem(self.bars)
                plot.setXRange(-0.6, n - 0.4, padding=0)
                lay.addWidget(plot)
        elif kind == "image":
            view = pg.GraphicsLayoutWidget()
            view.setMinimumHeight(160)
            vb = view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
            self.image = pg.ImageItem(axisOrder="row-major")
            vb.addItem(self.image)
            lay.addWidget(view)

    def update_value(self, value: np.ndarray, labels: list[str] | None, k: int) -> None:
        if self.kind == "vector":
            self._update_vector(value.reshape(-1), labels, k)
        elif self.kind == "image":
            img = value[:, :, 0] if value.ndim == 3 and value.shape[2] in (1, 2) else value
            finite = img[np.isfinite(img)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            bad = img.size - finite.size
            self.image.setImage(np.nan_to_num(img.astype(np.float32)), levels=(lo, hi if hi > lo else lo + 1))
            self.note.setText(f"range {lo:.4g} … {hi:.4g}" + (f"; {bad} NaN/inf values" if bad else ""))
        else:
            self.note.setText(f"mean {float(np.mean(value)):.4g}, not shown as an image")

    def _update_vector(self, vec: np.ndarray, labels: list[str] | None, k: int) -> None:
        probs = looks_like_probabilities(vec)
        self.note.setText("probabilities" if probs else "raw scores (softmax shown alongside)")
        rows = top_k(vec, k, labels if vec.size > 1 else None)
        sm = None if probs or vec.size == 1 else softmax(vec)
        table = self.table
        headers = ["Class", "Label", "Score"] + ([] if sm is None else ["Softmax"])
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        for r, cs in enumerate(rows):
            cells = [str(cs.index), cs.label, f"{cs.score:.4f}"]
            if sm is not None:
                cells.append(f"{sm[cs.index]:.4f}")
            for c, text in enumerate(cells):
                item = table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    if c >= 2:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    table.setItem(r, c, item)
                item.setText(text)
        table.setMinimumHeight(min(6, len(rows) + 1) * 26)
        if self.bars is not None:
            heights = vec if sm is None else sm
            brushes = ["#4a90d9"] * vec.size
            brushes[int(np.argmax(vec))] = "#e07b39"
            self.bars.setOpts(height=np.asarray(heights, dtype=float), brushes=brushes)
