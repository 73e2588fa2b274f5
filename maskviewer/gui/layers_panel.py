"""The Layers dock's widgets: layer list, method and display controls, colour bar, ranking, grid.

Thin widgets only; :mod:`maskviewer.gui.layers_tool` wires them to the model work.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.heatmap import (
    COLORMAP_LABELS,
    COLORMAPS,
    NORMALISATION_LABELS,
    NORMALISATIONS,
    colormap_lut,
)

#: methods offered, in order: key -> label
METHOD_LABELS = {
    "mean": "Mean over channels",
    "max": "Max over channels",
    "topk": "Top-k channels (by mean)",
    "channel": "One channel",
    "grid": "Channel grid",
    "attention": "Attention map",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
}
CAM_METHODS = ("gradcam", "gradcam++")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class ColorBar(QWidget):
    """A horizontal colour gradient with the value range under it."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.bar = QLabel()
        self.bar.setFixedHeight(14)
        self.bar.setScaledContents(True)
        self.lo = QLabel("")
        self.hi = QLabel("")
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hi.setAlignment(Qt.AlignmentFlag.AlignRight)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.lo)
        row.addWidget(self.caption, 1)
        row.addWidget(self.hi)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        lay.addWidget(self.bar)
        lay.addLayout(row)
        self.range: tuple[float, float] | None = None
        self.set_colormap("viridis")

    def set_colormap(self, name: str) -> None:
        lut = np.ascontiguousarray(np.repeat(colormap_lut(name)[None], 2, axis=0))
        img = QImage(lut.data, 256, 2, 256 * 3, QImage.Format.Format_RGB888).copy()
        self.bar.setPixmap(QPixmap.fromImage(img))

    def set_range(self, lo: float | None, hi: float | None, caption: str = "") -> None:
        if lo is None or hi is None:
            self.range = None
            self.lo.setText("")
            self.hi.setText("")
        else:
            self.range = (lo, hi)
            self.lo.setText(_fmt(lo))
            self.hi.setText(_fmt(hi))
        self.caption.setText(caption)


class GridView(pg.GraphicsLayoutWidget):
    """The channel grid; a click on a tile emits its position in grid pixels."""

    clicked = Signal(float, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.highlight = pg.QtWidgets.QGraphicsRectItem()
        self.highlight.setPen(pg.mkPen("#ff4040", width=0))
        self.highlight.hide()
        self.view.addItem(self.highlight)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.setMinimumHeight(160)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.item.image is None:
            return
        p = self.item.mapFromScene(event.scenePos())
        self.clicked.emit(p.x(), p.y())


class LayersPanel(QWidget):
    """Controls of the Layers dock.

    Signals
    -------
    request_changed : what to compute changed (layer, method, k, channel, class, mask ranking)
    display_changed : only how it looks changed (colour map, opacity, normalisation, input)
    """

    request_changed = Signal()
    display_changed = Signal()
    tile_clicked = Signal(float, float)
    channel_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._updating = False
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b06000;")
        self.message.hide()

        self.layer_list = QTreeWidget()
        self.layer_list.setHeaderLabels(["Layer", "Output", "Shown as"])
        self.layer_list.setRootIsDecorated(False)
        self.layer_list.setUniformRowHeights(True)
        self.layer_list.itemSelectionChanged.connect(self._emit_request)

        self.method = QComboBox()
        for key, label in METHOD_LABELS.items():
            self.method.addItem(label, key)
        self.k = QSpinBox()
        self.k.setRange(1, 1024)
        self.k.setValue(5)
        self.k.setPrefix("k = ")
        self.channel = QSpinBox()
        self.channel.setRange(0, 0)
        self.channel.setPrefix("channel ")
        self.output = QComboBox()
        self.class_index = QSpinBox()
        self.class_index.setRange(-1, 100_000)
        self.class_index.setValue(-1)
        self.class_index.setSpecialValueText("top class")
        self.class_index.setPrefix("class ")
        self.rank_in_mask = QCheckBox("Rank channels inside the mask")
        self.colormap = QComboBox()
        for name in COLORMAPS:
            self.colormap.addItem(COLORMAP_LABELS[name], name)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.normalisation = QComboBox()
        for name in NORMALISATIONS:
            self.normalisation.addItem(NORMALISATION_LABELS[name], name)
        self.input = QComboBox()
        self.input_label = QLabel("Draw over")
        self.colorbar = ColorBar()
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        for w in (self.method, self.output):
            w.currentIndexChanged.connect(self._emit_request)
        for w in (self.k, self.channel, self.class_index):
            w.valueChanged.connect(self._emit_request)
        self.rank_in_mask.toggled.connect(self._emit_request)
        for w in (self.colormap, self.normalisation, self.input):
            w.currentIndexChanged.connect(self._emit_display)
        self.opacity.valueChanged.connect(self._emit_display)
        self.method.currentIndexChanged.connect(self._update_enabled)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        picks = QHBoxLayout()
        picks.addWidget(self.k)
        picks.addWidget(self.channel)
        form.addRow("Method", self.method)
        form.addRow("", picks)
        cam = QHBoxLayout()
        cam.addWidget(self.output, 1)
        cam.addWidget(self.class_index)
        form.addRow("Output", cam)
        form.addRow("", self.rank_in_mask)
        form.addRow("Colours", self.colormap)
        form.addRow("Opacity", self.opacity)
        form.addRow("Scale", self.normalisation)
        form.addRow(self.input_label, self.input)

        self.ranking = QTableWidget(0, 3)
        self.ranking.setHorizontalHeaderLabels(["#", "Channel", "Mean"])
        self.ranking.verticalHeader().hide()
        self.ranking.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.ranking.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.ranking.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.ranking.cellClicked.connect(self._ranking_clicked)

        self.grid = GridView()
        self.grid.clicked.connect(self.tile_clicked)
        self.bars = pg.PlotWidget()
        self.bars.setBackground("#202020")
        self.bars.setMinimumHeight(160)
        self.bar_item = pg.BarGraphItem(x=[0], height=[0], width=0.8, brush="#4a90d9")
        self.bars.addItem(self.bar_item)
        self.views = QStackedWidget()
        self.views.addWidget(self.grid)
        self.views.addWidget(self.bars)
        self.views.addWidget(QLabel(""))  # nothing to show below
        self.views.setCurrentIndex(2)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.message)
        tl.addWidget(self.layer_list, 1)
        tl.addLayout(form)
        tl.addWidget(self.colorbar)
        tl.addWidget(self.info)
        bottom = QSplitter(Qt.Orientation.Vertical)
        bottom.addWidget(self.views)
        bottom.addWidget(self.ranking)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)
        self._update_enabled()

    # -- reading the controls -----------------------------------------------------------------

    def current_method(self) -> str:
        return self.method.currentData()

    def current_path(self) -> str | None:
        items = self.layer_list.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def current_entry(self):
        items = self.layer_list.selectedItems()
        return items[0].data(1, Qt.ItemDataRole.UserRole) if items else None

    def set_method(self, method: str) -> None:
        self.method.setCurrentIndex(self.method.findData(method))

    def set_colormap(self, name: str) -> None:
        self.colormap.setCurrentIndex(self.colormap.findData(name))

    def set_normalisation(self, name: str) -> None:
        self.normalisation.setCurrentIndex(self.normalisation.findData(name))

    # -- filling ------------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def set_layers(self, entries: list) -> None:
        """Fill the list from :class:`~maskviewer.inference.probe.LayerEntry` rows."""
        self._updating = True
        try:
            self.layer_list.clear()
            for e in entries:
                shape = "?" if e.shape is None else "×".join("?" if d is None else str(d) for d in e.shape[1:])
                kind = "attention" if e.attention else ("map" if e.spatial else "bars")
                item = QTreeWidgetItem([e.path, shape, kind])
                item.setData(0, Qt.ItemDataRole.UserRole, e.path)
                item.setData(1, Qt.ItemDataRole.UserRole, e)
                item.setToolTip(0, f"{e.path} ({e.class_name})")
                if not e.spatial:
                    for col in range(3):
                        item.setForeground(col, QBrush(QColor("#808080")))
                if e.attention:
                    font = QFont(item.font(0))
                    font.setBold(True)
                    item.setFont(0, font)
                self.layer_list.addTopLevelItem(item)
            for col in range(3):
                self.layer_list.resizeColumnToContents(col)
        finally:
            self._updating = False

    def select_layer(self, path: str) -> bool:
        for i in range(self.layer_list.topLevelItemCount()):
            item = self.layer_list.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == path:
                self.layer_list.setCurrentItem(item)
                item.setSelected(True)
                return True
        return False

    def set_outputs(self, names: list[str]) -> None:
        self._updating = True
        try:
            self.output.clear()
            for n in names:
                self.output.addItem(n, n)
        finally:
            self._updating = False

    def set_inputs(self, names: list[str]) -> None:
        self._updating = True
        try:
            self.input.clear()
            for n in names:
                self.input.addItem(n, n)
        finally:
            self._updating = False
        self.input.setVisible(len(names) > 1)
        self.input_label.setVisible(len(names) > 1)

    def set_channel_count(self, c: int) -> None:
        self._updating = True
        try:
            self.channel.setMaximum(max(0, c - 1))
            self.k.setMaximum(max(1, c))
        finally:
            self._updating = False

    def set_ranking(self, order: np.ndarray, means: np.ndarray, scores: np.ndarray | None, bold: int = 0) -> None:
        """Channels in ranking order with their means (and their means inside the mask)."""
        masked = scores is not None
        self.ranking.setColumnCount(4 if masked else 3)
        self.ranking.setHorizontalHeaderLabels(["#", "Channel", "Mean"] + (["Mean in mask"] if masked else []))
        rows = min(len(order), 512)
        self.ranking.setRowCount(rows)
        for r in range(rows):
            c = int(order[r])
            cells = [str(r + 1), str(c), _fmt(float(means[c]))]
            if masked:
                cells.append(_fmt(float(scores[c])))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, c)
                if r < bold:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.ranking.setItem(r, col, item)

    def clear_ranking(self) -> None:
        self.ranking.setRowCount(0)

    # -- internals ----------------------------------------------------------------------------

    def _ranking_clicked(self, row: int, _col: int) -> None:
        item = self.ranking.item(row, 1)
        if item is not None:
            self.channel_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    def _update_enabled(self) -> None:
        m = self.current_method()
        self.k.setVisible(m == "topk")
        self.channel.setVisible(m in ("channel", "grid"))
        cam = m in CAM_METHODS
        self.output.setEnabled(cam)
        self.class_index.setEnabled(cam)
        self.rank_in_mask.setEnabled(m in ("topk", "grid", "mean", "max", "channel"))

    def _emit_request(self, *_args) -> None:
        if not self._updating:
            self.request_changed.emit()

    def _emit_display(self, *_args) -> None:
        if not self._updating:
            self.display_changed.emit()
