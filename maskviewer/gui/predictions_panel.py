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
        for g in self._groups:
            self._body_lay.removeWidget(g)
            g.deleteLater()
        self._groups, self.tables, self.images = [], {}, {}
        pred = self.prediction
        self.placeholder.setVisible(pred is None)
        self.timing.setText("" if pred is None else f"{pred.seconds * 1000:.1f} ms")
        if pred is None:
            return
        for pos, (name, value) in enumerate(pred.outputs.items()):
            group = self._output_group(name, np.asarray(value))
            self._groups.append(group)
            self._body_lay.insertWidget(pos + 1, group)

    def _output_group(self, name: str, value: np.ndarray) -> QWidget:
        kind = output_kind(value.shape)
        box = QGroupBox(f"{name}  {tuple(value.shape)}")
        lay = QVBoxLayout(box)
        if kind == "vector":
            vec = value.reshape(-1)
            probs = looks_like_probabilities(vec)
            note = QLabel("probabilities" if probs else "raw scores (softmax shown alongside)")
            note.setStyleSheet("color: gray;")
            lay.addWidget(note)
            rows = top_k(vec, self.k.value(), self.labels if vec.size > 1 else None)
            sm = None if probs or vec.size == 1 else softmax(vec)
            table = QTableWidget(len(rows), 3 if sm is None else 4)
            headers = ["Class", "Label", "Score"] + ([] if sm is None else ["Softmax"])
            table.setHorizontalHeaderLabels(headers)
            for r, cs in enumerate(rows):
                cells = [str(cs.index), cs.label, f"{cs.score:.4f}"]
                if sm is not None:
                    cells.append(f"{sm[cs.index]:.4f}")
                for c, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    if c >= 2:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    table.setItem(r, c, item)
            table.verticalHeader().hide()
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            table.setMinimumHeight(min(6, len(rows) + 1) * 26)
            self.tables[name] = table
            lay.addWidget(table)
        elif kind == "image":
            img = value[:, :, 0] if value.ndim == 3 and value.shape[2] in (1, 2) else value
            finite = img[np.isfinite(img)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            view = pg.GraphicsLayoutWidget()
            view.setMinimumHeight(160)
            vb = view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
            item = pg.ImageItem(axisOrder="row-major")
            item.setImage(np.nan_to_num(img.astype(np.float32)), levels=(lo, hi if hi > lo else lo + 1))
            vb.addItem(item)
            self.images[name] = item
            lay.addWidget(view)
            lay.addWidget(QLabel(f"range {lo:.4g} … {hi:.4g}"))
        else:
            lay.addWidget(
                QLabel(f"A tensor of shape {tuple(value.shape)}: mean {float(np.mean(value)):.4g}")
            )
        return box
