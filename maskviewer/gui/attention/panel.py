"""The Attention page's widgets, bound to an :class:`~maskviewer.gui.attention.model.AttentionModel`.

A control the user changes sets the model; a model change updates the controls. The panel
computes nothing: the tiles (per-head maps, or the heads × layers overview) are drawn by the model.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.rollout import HEAD_FUSIONS
from maskviewer.gui.attention.jobs import MODES
from maskviewer.gui.attention.model import AttentionModel
from maskviewer.gui.form_row import form_row
from maskviewer.gui.layers.widgets import GridView

CLASS_MAX = 100_000


class AttentionPanel(QWidget):
    """Controls of the Attention page, the tiles of heads (and layers) and the message line."""

    def __init__(self, model: AttentionModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._updating = False
        self._make_controls()
        self._lay_out()
        self._bind()
        self._layers_changed()
        self._show_message(model.message)

    def _make_controls(self) -> None:
        self.mode = QComboBox()
        for key, label in MODES.items():
            self.mode.addItem(label, key)
        self.layer = QComboBox()
        self.head = QComboBox()
        self.token = QLabel("class token")
        self.class_token = QPushButton("Class token")
        self.class_token.setToolTip("Query from the class token again (click a patch on the image to query from it)")
        self.fusion = QComboBox()
        for f in HEAD_FUSIONS:
            self.fusion.addItem(f"heads: {f}", f)
        self.discard = QDoubleSpinBox()
        self.discard.setRange(0.0, 0.95)
        self.discard.setSingleStep(0.05)
        self.discard.setPrefix("discard lowest ")
        self.class_index = QSpinBox()
        self.class_index.setRange(-1, CLASS_MAX)
        self.class_index.setValue(-1)
        self.class_index.setSpecialValueText("top class")
        self.grid = QLineEdit()
        self.grid.setPlaceholderText("grid found (e.g. 14x14)")
        self.extra = QSpinBox()
        self.extra.setRange(-1, 64)
        self.extra.setValue(-1)
        self.extra.setSpecialValueText("extra tokens found")
        self.extra.setPrefix("extra tokens ")
        self.opacity = QSlider()
        self.opacity.setOrientation(self.opacity.orientation().Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(self.model.opacity)
        self.tiles = GridView()
        self.tiles.setMinimumHeight(180)
        self.tiles.setMaximumHeight(420)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("attention_message")

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Show", self.mode)
        form.addRow("Layer", self.layer)
        form.addRow("Head", self.head)
        form.addRow("Query", form_row(self.token, self.class_token, stretch=(1, 0)))
        form.addRow("Rollout", form_row(self.fusion, self.discard, stretch=(1, 1)))
        form.addRow("Class", self.class_index)
        form.addRow("Tokens", form_row(self.grid, self.extra, stretch=(1, 1)))
        form.addRow("Opacity", self.opacity)
        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.message)
        box.addWidget(self.tiles, 1)
        box.addStretch(0)

    def _bind(self) -> None:
        m = self.model
        self.mode.currentIndexChanged.connect(lambda _i: self._set(m.set_mode, self.mode.currentData()))
        self.layer.currentIndexChanged.connect(lambda _i: self._set(m.select_layer, self.layer.currentData()))
        self.head.currentIndexChanged.connect(lambda _i: self._set(m.set_head, self.head.currentData()))
        self.class_token.clicked.connect(m.use_class_token)
        self.fusion.currentIndexChanged.connect(lambda _i: self._set(m.set_fusion, self.fusion.currentData()))
        self.discard.valueChanged.connect(lambda v: self._set(m.set_discard, v))
        self.class_index.valueChanged.connect(lambda v: self._set(m.set_class, v))
        self.grid.editingFinished.connect(self._override)
        self.extra.valueChanged.connect(lambda _v: self._override())
        self.opacity.valueChanged.connect(self._opacity)
        m.layers_changed.connect(self._layers_changed)
        m.request_changed.connect(self._request_changed)
        m.message_changed.connect(self._show_message)
        m.cleared.connect(self.tiles.item.clear)

    def _set(self, setter, value) -> None:
        if not self._updating:
            setter(value)

    def _override(self) -> None:
        if not self._updating:
            extra = self.extra.value()
            self.model.set_override(self.grid.text(), None if extra < 0 else extra)

    def _opacity(self, value: int) -> None:
        self.model.opacity = value
        self.model.display_changed.emit()

    def _layers_changed(self) -> None:
        self._updating = True
        try:
            self.layer.clear()
            for path, heads in self.model.layers:
                self.layer.addItem(f"{path}  ({heads} heads)", path)
            self.layer.setCurrentIndex(self.layer.findData(self.model.request.layer))
            self._fill_heads()
        finally:
            self._updating = False
        self._request_changed()

    def _fill_heads(self) -> None:
        heads = dict(self.model.layers).get(self.model.request.layer or "", 0)
        self.head.clear()
        self.head.addItem("Mean of the heads", None)
        for h in range(heads):
            self.head.addItem(f"Head {h}", h)
        self.head.setCurrentIndex(self.head.findData(self.model.head) if self.model.head is not None else 0)

    def _request_changed(self) -> None:
        r = self.model.request
        ready = self.model.ready
        self._updating = True
        try:
            self.mode.setCurrentIndex(self.mode.findData(r.mode))
            if self.layer.currentData() != r.layer:
                self.layer.setCurrentIndex(self.layer.findData(r.layer))
                self._fill_heads()
            self.token.setText("class token" if r.token is None else f"token {r.token} (clicked patch)")
        finally:
            self._updating = False
        for w in (self.mode, self.class_token, self.grid, self.extra):
            w.setEnabled(ready)
        self.layer.setEnabled(ready and r.mode == "heads")
        self.head.setEnabled(ready and r.mode == "heads")
        self.fusion.setEnabled(ready and r.mode == "rollout")
        self.discard.setEnabled(ready and r.mode == "rollout")
        self.class_index.setEnabled(ready and r.mode == "attribution")

    def _show_message(self, text: str) -> None:
        self.message.setText(text)

    def show_tiles(self) -> None:
        """Copy the model's tiles (per-head maps or the overview) into the view."""
        drawn = self.model.tiles()
        self.tiles.setVisible(drawn is not None)  # rollout and attribution have one map: no tiles
        if drawn is None:
            self.tiles.item.clear()
            self.tiles.numbers.set_labels([], 0, self.tiles.item.boundingRect())
            return
        rgba, layout = drawn
        o = self.model.outcome
        cols = max(o.cols, 1)
        self.tiles.show_grid(rgba, None, layout, None)
        labels = []
        for i in range(layout.count):  # "h2" per head; "b1 h2" (block 1, head 2) in the overview
            x, y = layout.tile_origin(i)
            text = f"h{i % cols}" if len(o.rows) <= 1 else f"b{i // cols} h{i % cols}"
            labels.append((float(x), float(y), text))
        self.tiles.numbers.set_labels(labels, layout.tile_w, self.tiles.item.boundingRect())
        self.tiles.view.autoRange(padding=0.02)
