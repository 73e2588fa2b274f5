"""The predictions panel: each output shown by its kind (see :mod:`maskviewer.core.output_kinds`).

Class scores: the top-k classes with probabilities (logits get a softmax, the logit beside
it); multi-label: each label's probability; regression: the values by name ("count 15.33");
image-shaped outputs: an image. Each output has a "Read as" choice; the user's choice is
remembered per model and every view follows it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
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

from maskviewer.core import output_kinds as ok
from maskviewer.core.output_kinds import OutputKind, OutputKinds
from maskviewer.core.state import Prediction

EMPTY_TEXT = "No prediction yet: open a model and an image (or a demo from Help → Demos)."


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
        self.placeholder = QLabel(EMPTY_TEXT)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: gray;")
        self._body_lay.insertWidget(0, self.placeholder)
        self.prediction: Prediction | None = None
        self.labels: list[str] | None = None
        self.kinds = OutputKinds()
        self._choose: Callable[[str, str], None] = self.kinds.choose
        self.tables: dict[str, QTableWidget] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.views: dict[str, _OutputView] = {}
        self._groups: list[QWidget] = []
        self._signature: list = []

    def bind_kinds(self, kinds: OutputKinds, choose: Callable[[str, str], None]) -> None:
        """Read outputs through ``kinds`` (the app state's); a "Read as" edit calls ``choose``."""
        self.kinds = kinds
        self._choose = choose
        kinds.changed.connect(lambda _name: self.refresh())
        self.refresh()

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
        kinds = {k: self.kinds.kind_of(k, v) for k, v in outputs.items()}
        signature = [(k, kinds[k], v.shape) for k, v in outputs.items()]
        if signature != self._signature:  # other outputs or kinds: rebuild; same: update in place
            self._rebuild(signature)
        for name, value in outputs.items():
            self.views[name].update_value(value, self.labels, self.k.value())
        # top k ranks classes and labels: no use for values and maps
        self.k.setVisible(any(k.is_classes or k.is_labels for k in kinds.values()))

    def _rebuild(self, signature: list) -> None:
        for g in self._groups:
            self._body_lay.removeWidget(g)
            g.deleteLater()
        self._groups, self.views, self.tables, self.images = [], {}, {}, {}
        for pos, (name, kind, shape) in enumerate(signature):
            view = _OutputView(name, kind, shape)
            view.kind_combo.activated.connect(
                lambda _i, n=name, v=view: self._choose(n, v.kind_combo.currentData()))
            self.views[name] = view
            self._groups.append(view)
            self._body_lay.insertWidget(pos + 1, view)
            if view.table is not None:
                self.tables[name] = view.table
            if view.image is not None:
                self.images[name] = view.image
        self._signature = signature


def _headers(kind: OutputKind) -> list[str]:
    if kind.is_classes:
        return ["Class", "Label", "Probability"] + (["Logit"] if kind.kind == ok.LOGITS else [])
    if kind.is_labels:
        return ["Label", "Probability"] + (["Logit"] if kind.kind == ok.MULTILABEL_LOGITS else [])
    return ["Name", "Value"]


class _OutputView(QGroupBox):
    """One output, shown by its kind: a table (and bars), a value in large type, or an image."""

    def __init__(self, name: str, kind: OutputKind, shape: tuple) -> None:
        super().__init__(f"{name}  {tuple(shape)}")
        self.kind = kind
        self.table: QTableWidget | None = None
        self.image: pg.ImageItem | None = None
        self.bars: pg.BarGraphItem | None = None
        self.value_label: QLabel | None = None
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.kind_combo = QComboBox()
        for choice in ok.choices(tuple(shape)):
            self.kind_combo.addItem(ok.KIND_LABELS[choice], choice)
        self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(kind.kind)))
        self.kind_combo.setToolTip(f"How this output is read: {kind.reason}")
        self.kind_combo.setEnabled(self.kind_combo.count() > 1)
        # long kind names must not widen a narrow page: the combo shortens them instead
        self.kind_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kind_combo.setMinimumContentsLength(14)
        form.addRow("Read as", self.kind_combo)
        lay.addLayout(form)
        self.note = QLabel("")
        self.note.setStyleSheet("color: gray;")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        n = int(np.prod(shape)) if len(shape) else 1
        if kind.is_map:
            view = pg.GraphicsLayoutWidget()
            view.setMinimumHeight(160)
            vb = view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
            self.image = pg.ImageItem(axisOrder="row-major")
            vb.addItem(self.image)
            lay.addWidget(view)
        elif kind.is_regression and n == 1:
            self.value_label = QLabel("")
            self.value_label.setStyleSheet("font-size: 16pt; font-weight: bold;")
            self.value_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lay.addWidget(self.value_label)
        else:
            self._add_table(lay, kind, n)

    def _add_table(self, lay: QVBoxLayout, kind: OutputKind, n: int) -> None:
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        headers = _headers(kind)
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        lay.addWidget(self.table)
        if 1 < n <= 100 and not kind.is_regression:
            plot = pg.PlotWidget()
            plot.setMaximumHeight(110)
            plot.setMenuEnabled(False)
            plot.setMouseEnabled(False, False)
            plot.hideButtons()
            plot.getAxis("left").setWidth(34)
            self.bars = pg.BarGraphItem(x=np.arange(n), height=np.zeros(n), width=0.8, brush="#4a90d9")
            plot.addItem(self.bars)
            plot.setXRange(-0.6, n - 0.4, padding=0)
            plot.setYRange(0, 1.0, padding=0.02)
            lay.addWidget(plot)

    def update_value(self, value: np.ndarray, labels: list[str] | None, k: int) -> None:
        kind = self.kind
        if kind.is_map:
            self._update_image(value)
            return
        n = value.size
        reading = ok.read(kind, value, labels, n if kind.is_regression else k)
        self.note.setText(_note(kind, n))
        if self.value_label is not None:
            self.value_label.setText(ok.summary(reading, 1))
            return
        self._fill_table(reading)
        if self.bars is not None:
            shown = ok.shown_values(kind.kind, value.reshape(-1))
            brushes = ["#4a90d9"] * n
            brushes[int(np.nanargmax(shown))] = "#e07b39"
            self.bars.setOpts(height=np.nan_to_num(shown), brushes=brushes)

    def _fill_table(self, reading: ok.Reading) -> None:
        kind, table = reading.kind, self.table
        table.setRowCount(len(reading.entries))
        for r, e in enumerate(reading.entries):
            if kind.is_classes:
                label = e.name if e.name != str(e.index) else ""
                cells = [str(e.index), label, f"{e.value:.4f}"] + ([f"{e.raw:.4f}"] if kind.kind == ok.LOGITS else [])
            elif kind.is_labels:
                cells = [e.name, f"{e.value:.4f}"] + ([f"{e.raw:.4f}"] if kind.kind == ok.MULTILABEL_LOGITS else [])
            else:
                cells = [e.name, f"{e.value:.6g}"]
            for c, text in enumerate(cells):
                item = table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    if text[:1].isdigit() or text[:1] == "-":
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    table.setItem(r, c, item)
                item.setText(text)
        if kind.is_classes:  # no labels, or labels that are the class numbers: no Label column
            table.setColumnHidden(1, all(e.name == str(e.index) for e in reading.entries))
        table.setMinimumHeight(min(6, len(reading.entries) + 1) * 26)

    def _update_image(self, value: np.ndarray) -> None:
        if value.ndim > 3 or (value.ndim == 3 and value.shape[2] not in (1, 2, 3, 4)):
            self.note.setText(f"mean {float(np.mean(value)):.4g}; {value.ndim}-D, not shown as an image")
            return
        img = value[:, :, 0] if value.ndim == 3 and value.shape[2] in (1, 2) else value
        finite = img[np.isfinite(img)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        bad = img.size - finite.size
        self.image.setImage(np.nan_to_num(img.astype(np.float32)), levels=(lo, hi if hi > lo else lo + 1))
        self.note.setText(f"range {lo:.4g} … {hi:.4g}" + (f"; {bad} NaN/inf values" if bad else ""))


def _note(kind: OutputKind, n: int) -> str:
    """One grey line under the choice: what the numbers are."""
    if kind.kind == ok.SOFTMAX:
        return f"{n} classes: probabilities"
    if kind.kind == ok.LOGITS:
        return f"{n} classes: logits, shown as probabilities (softmax)"
    if kind.kind == ok.MULTILABEL:
        return "one probability (binary)" if n == 1 else f"{n} labels, each its own probability"
    if kind.kind == ok.MULTILABEL_LOGITS:
        return "logit, shown as a probability (sigmoid)" if n == 1 else f"{n} labels: logits, shown as probabilities"
    return "" if n == 1 else f"{n} values"
