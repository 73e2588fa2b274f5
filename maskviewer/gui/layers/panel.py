"""The Layers dock's widgets, bound to a :class:`~maskviewer.gui.layers.model.LayersModel`.

A control the user changes sets the model; a model change updates the controls. The panel
computes nothing: :meth:`LayersPanel.show_drawing` copies what the model drew.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.heatmap import COLORMAP_LABELS, COLORMAPS, NORMALISATION_LABELS, NORMALISATIONS
from maskviewer.gui.form_row import form_row
from maskviewer.gui.layers.drawing import Drawing
from maskviewer.gui.layers.model import CLASS_MAX, K_MAX, LayersModel
from maskviewer.gui.layers.params import MethodParamsRow
from maskviewer.gui.layers.probe import CAM_METHODS, METHOD_LABELS, RANKED_METHODS
from maskviewer.gui.layers.tree import LayerTree
from maskviewer.gui.layers.widgets import ColorBar, GridView, RankingTable

#: the pages of :attr:`LayersPanel.views`
VIEW_PAGES = {"grid": 0, "bars": 1, "none": 2}


def _combo(items: dict[str, str]) -> QComboBox:
    box = QComboBox()
    for key, label in items.items():
        box.addItem(label, key)
    return box


def _spin(lo: int, hi: int, value: int, prefix: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setPrefix(prefix)
    return box


def _fill(combo: QComboBox, names: list[str], current: str | None) -> None:
    combo.clear()
    for n in names:
        combo.addItem(n, n)
    combo.setCurrentIndex(combo.findData(current))


class LayersPanel(QWidget):
    """Controls of the Layers dock: layer list, method and display controls, colour bar, views."""

    def __init__(self, model: LayersModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._updating = False  # copying the model into the controls: do not copy back
        self._make_controls()
        self._make_views()
        self._lay_out()
        self._bind()
        self._sync_request()
        self._sync_display()

    # -- building ---------------------------------------------------------------------------------

    def _make_controls(self) -> None:
        m = self.model
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b06000;")
        self.message.hide()
        #: the model's layers (nested models as children): selecting a row picks the layer
        self.layer_tree = LayerTree()
        self.layer_list = self.layer_tree.tree
        self.method = _combo(METHOD_LABELS)
        self.params = MethodParamsRow(m)  # SmoothGrad's and IG's parameters, shown for them
        self.k = _spin(1, K_MAX, m.k, "k = ")
        self.channel = _spin(0, 0, 0, "channel ")
        self.output = QComboBox()
        self.class_index = _spin(-1, CLASS_MAX, m.class_index, "class ")
        self.class_index.setSpecialValueText("top class")
        self.rank_in_mask = QCheckBox("Rank inside the mask")
        self.rank_in_mask.setToolTip("Rank the channels by their mean inside the painted mask")
        self.colormap = _combo({name: COLORMAP_LABELS[name] for name in COLORMAPS})
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.normalisation = _combo({name: NORMALISATION_LABELS[name] for name in NORMALISATIONS})
        self.input = QComboBox()
        self.input_label = QLabel("Draw over")
        self.colorbar = ColorBar()
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def _make_views(self) -> None:
        self.ranking = RankingTable()
        self.grid = GridView()
        self.bars = pg.PlotWidget()
        self.bars.setBackground("#202020")
        self.bars.setMinimumHeight(160)
        self.bar_item = pg.BarGraphItem(x=[0], height=[0], width=0.8, brush="#4a90d9")
        self.bars.addItem(self.bar_item)
        self.views = QStackedWidget()
        self.views.addWidget(self.grid)
        self.views.addWidget(self.bars)
        self.views.addWidget(QLabel(""))  # nothing to show below
        self.views.setCurrentIndex(VIEW_PAGES["none"])
        self.views.hide()  # shown with a grid or bars: no empty box above the ranking

    def _lay_out(self) -> None:
        """The tree on top (a splitter gives it the room the user wants), then the controls, the
        colour bar and the result; the page scrolls when the window is short."""
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        for box in (self.method, self.output, self.colormap, self.normalisation, self.input):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(6)
        for spin in (self.k, self.channel, self.class_index):  # may shrink on a narrow page
            spin.setMinimumWidth(64)
        form.addRow("Method", form_row(self.method, self.k, self.channel))
        form.addRow("", self.params)
        form.addRow("Output", form_row(self.output, self.class_index))
        form.addRow("", self.rank_in_mask)
        form.addRow("Colours", form_row(self.colormap, QLabel("Opacity"), self.opacity))
        form.addRow("Scale", self.normalisation)
        form.addRow(self.input_label, self.input)
        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(form)
        ll.addWidget(self.colorbar)
        ll.addWidget(self.info)
        result = QSplitter(Qt.Orientation.Vertical)
        result.addWidget(self.views)
        result.addWidget(self.ranking)
        result.setChildrenCollapsible(False)
        ll.addWidget(result, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.layer_tree)
        split.addWidget(lower)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 0)  # a taller or shorter page changes the result's room
        split.setStretchFactor(1, 1)
        self.splitter = split
        self._tree_sized = True  # nothing to size before a model's layers are listed
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)

    def _bind(self) -> None:
        m = self.model
        # controls -> model
        self.layer_tree.picked.connect(self._guard(m.select_layer))
        for combo, setter in (
            (self.method, m.set_method),
            (self.output, m.set_output),
            (self.colormap, m.set_colormap),
            (self.normalisation, m.set_normalisation),
            (self.input, m.set_input),
        ):
            combo.currentIndexChanged.connect(self._guard(lambda _i, c=combo, f=setter: f(c.currentData())))
        for spin, setter in ((self.k, m.set_k), (self.channel, m.set_channel), (self.class_index, m.set_class_index)):
            spin.valueChanged.connect(self._guard(setter))
        self.rank_in_mask.toggled.connect(self._guard(m.set_rank_in_mask))
        self.opacity.valueChanged.connect(self._guard(m.set_opacity))
        self.grid.clicked.connect(m.click_tile)
        self.ranking.channel_clicked.connect(m.select_channel)
        # model -> controls
        m.layers_changed.connect(self._fill_layers)
        m.choices_changed.connect(self._sync_choices)
        m.request_changed.connect(self._sync_request)
        m.display_changed.connect(self._sync_display)
        m.message_changed.connect(self.show_message)
        m.info_changed.connect(self.info.setText)
        m.cleared.connect(self._clear)

    def _guard(self, fn):
        """``fn`` for a control's signal, skipped while the model is being copied into the controls."""

        def call(*args) -> None:
            if not self._updating:
                fn(*args)

        return call

    # -- reading ---------------------------------------------------------------------------------

    def current_method(self) -> str:
        return self.model.method

    def current_path(self) -> str | None:
        return self.model.selected

    def current_entry(self):
        return self.model.entry

    def _selected_path(self) -> str | None:
        return self.layer_tree.selected_path()

    # -- setting (through the model) -------------------------------------------------------------

    def set_method(self, method: str) -> None:
        self.model.set_method(method)

    def set_colormap(self, name: str) -> None:
        self.model.set_colormap(name)

    def set_normalisation(self, name: str) -> None:
        self.model.set_normalisation(name)

    def select_layer(self, path: str) -> bool:
        return self.model.select_layer(path)

    # -- showing ---------------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def show_drawing(self, drawing: Drawing) -> None:
        """Show the colour bar's range, the grid or bars, and the ranking of ``drawing``."""
        heat = drawing.heatmap
        if heat is None:
            self.colorbar.set_range(None, None)
        else:
            self.colorbar.set_range(heat.lo, heat.hi, heat.caption)
        if drawing.view == "bars":
            vec = drawing.bars
            self.bar_item.setOpts(x=np.arange(len(vec)), height=vec, width=0.8)
            self.bars.autoRange()
        elif drawing.view == "grid":
            self.grid.show_grid(drawing.grid_rgba, drawing.highlight, drawing.grid_layout, drawing.grid_channels)
        self.views.setCurrentIndex(VIEW_PAGES[drawing.view])
        self.views.setVisible(drawing.view != "none")
        self.ranking.show_ranking(drawing.ranking)

    def _clear(self) -> None:
        self.colorbar.set_range(None, None)
        self.ranking.show_ranking(None)
        self.views.setCurrentIndex(VIEW_PAGES["none"])
        self.views.hide()

    def _fill_layers(self) -> None:
        """Fill the tree from the model's :class:`~maskviewer.inference.probe.LayerEntry` rows."""
        self.layer_tree.fill(self.model.entries, self.model.layer_infos)
        self.layer_tree.select(self.model.selected)
        self._tree_sized = False
        self._size_tree()

    def _size_tree(self) -> None:
        """Give the tree the height of its rows, at most 45 % of the page (once per model, once
        the page has a height), so a short model leaves the room to the result."""
        total = sum(self.splitter.sizes())
        if self._tree_sized or total <= 0 or not self.isVisible():
            return
        self._tree_sized = True
        height = min(max(self.layer_tree.wanted_height(), 120), int(0.45 * total))
        self.splitter.setSizes([height, total - height])

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._size_tree()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._size_tree()

    def _sync_choices(self) -> None:
        m = self.model
        self._updating = True
        try:
            _fill(self.output, m.outputs, m.output)
            _fill(self.input, m.inputs, m.input)
            if m.selected is not None:  # the limits are the chosen layer's channels
                self.channel.setMaximum(max(0, m.channel_count - 1))
                self.k.setMaximum(max(1, m.channel_count))
        finally:
            self._updating = False
        self.input.setVisible(len(m.inputs) > 1)
        self.input_label.setVisible(len(m.inputs) > 1)

    def _sync_request(self) -> None:
        m = self.model
        self._updating = True
        try:
            if self._selected_path() != m.selected:
                self._select_item(m.selected)
            self.method.setCurrentIndex(self.method.findData(m.method))
            self.k.setValue(m.k)
            self.channel.setValue(m.channel)
            self.output.setCurrentIndex(self.output.findData(m.output))
            self.class_index.setValue(m.class_index)
            self.rank_in_mask.setChecked(m.rank_in_mask)
        finally:
            self._updating = False
        self.k.setVisible(m.method == "topk")
        self.channel.setVisible(m.method in ("channel", "grid"))
        cam = m.method in CAM_METHODS
        self.output.setEnabled(cam)
        self.class_index.setEnabled(cam)
        self.class_index.setVisible(m.output not in m.value_outputs)  # a count has no class
        self.rank_in_mask.setEnabled(m.method in RANKED_METHODS)

    def _select_item(self, path: str | None) -> None:
        self.layer_tree.select(path)

    def _sync_display(self) -> None:
        m = self.model
        self._updating = True
        try:
            self.colormap.setCurrentIndex(self.colormap.findData(m.colormap))
            self.opacity.setValue(m.opacity)
            self.normalisation.setCurrentIndex(self.normalisation.findData(m.normalisation))
            self.input.setCurrentIndex(self.input.findData(m.input))
        finally:
            self._updating = False
