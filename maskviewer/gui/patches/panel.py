"""The Patches dock's widgets, bound to a :class:`~maskviewer.gui.patches.model.PatchModel`.

The panel turns edits into model actions and shows the model's state; runs, playing, exports
and the canvas are the tool's (:mod:`maskviewer.gui.patches.tool`), which connects to the
buttons the panel exposes.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.patches import COMBINE_LABELS, COMBINE_METHODS, PADDINGS, Combined, PatchSpec
from maskviewer.gui.patches.model import PRESET_TIPS, PRESETS, ROW_STEP, CurrentView, PatchModel
from maskviewer.gui.patches.results import ENTRY_WORD, MAP_TEXT, MAPS, TableData
from maskviewer.gui.patches.table import PatchTableModel


def arrow_step(key: int) -> int | None:
    """+-1 for Right/Left, +-``ROW_STEP`` (a row: resolved by the model) for Down/Up."""
    return {
        Qt.Key.Key_Right: 1,
        Qt.Key.Key_Left: -1,
        Qt.Key.Key_Down: ROW_STEP,
        Qt.Key.Key_Up: -ROW_STEP,
    }.get(Qt.Key(key))


def _label(wrap: bool = True, style: str = "") -> QLabel:
    label = QLabel("")
    label.setWordWrap(wrap)
    if style:
        label.setStyleSheet(style)
    return label


class PatchPanel(QWidget):
    """The Patches dock: settings, the current patch, runs and results, the map, exports."""

    step_requested = Signal(int)  # +-1 patch, +-ROW_STEP (a row)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model: PatchModel | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        # the combined vote and its map come right after the settings: the answer stays in view
        for build in (_settings_box, _run_box, _map_box, _current_box, _export_box):
            lay.addWidget(build(self))
        lay.addStretch(1)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        step = arrow_step(event.key())
        if step is not None:
            self.step_requested.emit(step)
            event.accept()
            return
        super().keyPressEvent(event)

    # -- binding ---------------------------------------------------------------------------------

    def bind(self, model: PatchModel) -> None:
        """Turn edits into ``model`` actions and show its state from now on."""
        self.model = model
        res = model.results
        for edit in (self.size_edit, self.stride_edit, self.rate_edit):
            edit.returnPressed.connect(self.apply_settings)
        self.apply_button.clicked.connect(self.apply_settings)
        self.padding.activated.connect(lambda _i: self.apply_settings())
        self.preset_button.clicked.connect(self.apply_preset)
        self.grid_edit.returnPressed.connect(self.apply_preset)
        self.slider.valueChanged.connect(model.set_index)
        self.prev_button.clicked.connect(lambda: model.step(-1))
        self.next_button.clicked.connect(lambda: model.step(1))
        self.step_requested.connect(model.step)
        self.table.clicked.connect(lambda idx: model.set_index(idx.row()))
        self.method.currentIndexChanged.connect(lambda _i: res.set_method(self.method.currentData()))
        self.output_combo.currentIndexChanged.connect(lambda _i: model.set_output(self.output_combo.currentData()))
        self.map_kind.currentIndexChanged.connect(lambda _i: res.set_map_kind(self.map_kind.currentData()))
        self.map_class.currentIndexChanged.connect(lambda _i: res.set_map_class(self.map_class.currentData()))
        model.spec_changed.connect(self.write_spec)
        model.message_changed.connect(self.show_message)
        model.grid_changed.connect(lambda _g: self._show_grid())
        model.current_changed.connect(self.sync_slider)
        res.choices_changed.connect(self.fill_outputs)
        res.note_changed.connect(self.run_note.setText)
        res.map_kind_changed.connect(self.show_map_kind)
        res.family_changed.connect(lambda _f: self.show_family())
        res.changed.connect(self.show_results)
        self.show_family()

    def apply_settings(self) -> bool:
        """Use the settings typed in (see :meth:`PatchModel.apply_texts`)."""
        return self.model.apply_texts(
            self.size_edit.text(), self.stride_edit.text(), self.rate_edit.text(), self.padding.currentText()
        )

    def apply_preset(self) -> bool:
        """Apply the chosen preset to the current image."""
        return self.model.apply_preset(
            self.preset.currentData(), self.size_edit.text(), self.stride_edit.text(), self.grid_edit.text()
        )

    # -- showing the model -----------------------------------------------------------------------

    def write_spec(self, spec: PatchSpec) -> None:
        for edit, pair in ((self.size_edit, spec.size), (self.stride_edit, spec.stride), (self.rate_edit, spec.rate)):
            edit.setText(str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}, {pair[1]}")
        self.padding.setCurrentText(spec.padding)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _show_grid(self) -> None:
        g = self.model.grid
        self.count_label.setText(self.model.count_text())
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, (g.count if g else 1) - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)

    def sync_slider(self, index: int) -> None:
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)

    def show_current(self, view: CurrentView | None) -> None:
        """Show the current patch enlarged, with its place and caption."""
        if view is None:
            self.patch_item.clear()
            for label in (self.index_label, self.patch_caption, self.patch_prediction):
                label.setText("")
            return
        self.index_label.setText(view.label)
        if view.caption is not None:
            self.patch_caption.setText(view.caption)
        arr = view.array
        img = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] in (1, 2) else arr
        lo, hi = view.levels
        self.patch_item.setImage(img, levels=(lo, hi if hi > lo else lo + 1), autoLevels=False)
        self.patch_item.setRect(0, 0, img.shape[1], img.shape[0])
        self.patch_viewbox.autoRange(padding=0.0)

    def show_playing(self, playing: bool, uncheck: bool) -> None:
        """Say Pause while playing, else Play; ``uncheck`` the button without a signal."""
        self.play_button.setText("Pause" if playing else "Play")
        if uncheck and self.play_button.isChecked():
            self.play_button.blockSignals(True)
            self.play_button.setChecked(False)
            self.play_button.blockSignals(False)

    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)

    def start_progress(self, text: str, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.progress.setFormat(f"{text} %v / %m")

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def fill_outputs(self, choices: list[tuple[str, str]]) -> None:
        combo = self.output_combo
        combo.blockSignals(True)
        combo.clear()
        for name, text in choices:
            combo.addItem(text, name)
        combo.blockSignals(False)

    def show_map_kind(self, kind: str) -> None:
        i = self.map_kind.findData(kind)
        if i != self.map_kind.currentIndex():
            self.map_kind.blockSignals(True)
            self.map_kind.setCurrentIndex(i)
            self.map_kind.blockSignals(False)

    def show_family(self) -> None:
        """Offer the combinations and map names of the output's kind (classes, labels, values)."""
        res = self.model.results
        combo = self.method
        combo.blockSignals(True)
        combo.clear()
        for key, text in res.methods():
            combo.addItem(text, key)
        combo.setCurrentIndex(max(0, combo.findData(res.method)))
        combo.blockSignals(False)
        for i, text in enumerate(MAP_TEXT[res.family].values()):
            self.map_kind.setItemText(i, text)
        label = self.map_box_form.labelForField(self.map_class)
        if label is not None:
            label.setText(ENTRY_WORD[res.family])
        self.bars.setLabel("bottom", ENTRY_WORD[res.family].lower())
        self.bars.setLabel("left", "value" if res.family == "values" else "probability")

    def show_results(self) -> None:
        """The final class, the map's class choices, the table and the bars."""
        model, res = self.model, self.model.results
        self.result_label.setText(res.result_text(model.state.model_info is not None))
        self.show_classes(res.class_names(), res.map_class)
        self.show_table(res.table_data(model.grid))
        self.draw_bars(res.combined, res.probs, model.index)

    def show_classes(self, names: list[str], current: int | None) -> None:
        combo = self.map_class
        combo.blockSignals(True)
        if combo.count() != len(names) or not names:
            combo.clear()
            for i, name in enumerate(names):
                combo.addItem(name, i)
        if current is not None:
            combo.setCurrentIndex(current)
        combo.blockSignals(False)

    def show_table(self, data: TableData | None) -> None:
        if data is None:
            self.table_model.clear()
        else:
            self.table_model.set_table(data.rects, data.cols, data.probs, data.classes, data.names, data.drop,
                                       data.family)

    def draw_bars(self, combined: Combined | None, probs: np.ndarray | None, index: int) -> None:
        """The combination's scores beside the current patch's."""
        plot = self.bars
        plot.clear()
        if combined is None:
            return
        k = len(combined.scores)
        x = np.arange(k)
        plot.addItem(pg.BarGraphItem(x=x - 0.2, height=combined.scores, width=0.4, brush=(70, 130, 220),
                                     name=f"{combined.method} of all patches"))
        if probs is not None:
            plot.addItem(pg.BarGraphItem(x=x + 0.2, height=probs[index], width=0.4, brush=(255, 140, 0),
                                         name=f"patch {index + 1}"))
        plot.setXRange(-0.7, k - 0.3, padding=0)
        axis = plot.getAxis("bottom")
        axis.enableAutoSIPrefix(False)
        names = self.model.results.class_names() if self.model is not None else []
        axis.setTicks([list(enumerate(names))] if combined.family != "classes" and len(names) == k <= 12 else None)
        if combined.family == "values":  # values: their own range (and 0)
            heights = np.concatenate([combined.scores, probs[index] if probs is not None else []])
            lo, hi = min(0.0, float(np.nanmin(heights))), max(0.0, float(np.nanmax(heights)))
            plot.setYRange(lo, hi if hi > lo else lo + 1.0, padding=0.05)
        else:
            plot.setYRange(0, 1.05, padding=0)


# -- building the boxes ----------------------------------------------------------------------------


def _settings_box(p: PatchPanel) -> QGroupBox:
    box = QGroupBox("Patches (tf.image.extract_patches)")
    form = QFormLayout(box)
    p.size_edit, p.stride_edit, p.rate_edit = QLineEdit("18"), QLineEdit("10"), QLineEdit("1")
    for edit, tip in (
        (p.size_edit, "Patch height, width in sampled pixels (one number: square)"),
        (p.stride_edit, "Step between patches: rows, cols"),
        (p.rate_edit, "Dilation: a patch samples every rate-th pixel"),
    ):
        edit.setToolTip(tip)
        edit.setPlaceholderText("e.g. 18 or 18, 20")
    p.padding = QComboBox()
    p.padding.addItems(list(PADDINGS))
    p.padding.setToolTip("VALID: patches fully inside; SAME: zero-padded, ceil(size / stride) patches")
    p.apply_button = QPushButton("Apply")
    form.addRow("Size h, w", p.size_edit)
    form.addRow("Stride", p.stride_edit)
    form.addRow("Rate", p.rate_edit)
    form.addRow("Padding", _row(p.padding, p.apply_button))
    p.preset = QComboBox()
    for key, text in PRESETS.items():
        p.preset.addItem(text, key)
        p.preset.setItemData(p.preset.count() - 1, PRESET_TIPS[key], Qt.ItemDataRole.ToolTipRole)
    p.grid_edit = QLineEdit("3, 3")
    p.grid_edit.setToolTip("Rows, cols of the grid preset")
    p.grid_edit.setPlaceholderText("rows, cols")
    p.grid_edit.setMaximumWidth(70)
    p.preset_button = QPushButton("Use")
    form.addRow("Preset", _row(p.preset, p.grid_edit, p.preset_button))
    p.count_label = _label()
    form.addRow(p.count_label)
    p.message = _label(style="color: #c03030;")
    p.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    p.message.hide()
    form.addRow(p.message)
    return box


def _row(first: QWidget, *rest: QWidget) -> QHBoxLayout:
    """``first`` stretching, then ``rest`` at their own widths."""
    row = QHBoxLayout()
    row.addWidget(first, 1)
    for w in rest:
        row.addWidget(w)
    return row


def _current_box(p: PatchPanel) -> QGroupBox:
    nav = QGroupBox("Current patch")
    nav_lay = QVBoxLayout(nav)
    p.prev_button, p.next_button = QPushButton("◀"), QPushButton("▶")
    p.play_button = QPushButton("Play")
    p.play_button.setCheckable(True)
    for b in (p.prev_button, p.next_button):
        b.setMaximumWidth(36)
    p.slider = QSlider(Qt.Orientation.Horizontal)
    p.slider.setMinimum(0)
    row = QHBoxLayout()
    row.addWidget(p.prev_button)
    row.addWidget(p.slider, 1)
    row.addWidget(p.next_button)
    row.addWidget(p.play_button)
    nav_lay.addLayout(row)
    p.index_label = QLabel("")
    nav_lay.addWidget(p.index_label)
    p.patch_view = pg.GraphicsLayoutWidget()
    p.patch_view.setMinimumHeight(170)
    p.patch_view.setMaximumHeight(240)  # the patch is a preview: the results keep the room
    p.patch_view.setBackground("#202020")
    vb = p.patch_view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
    vb.setMouseEnabled(False, False)
    p.patch_item = pg.ImageItem(axisOrder="row-major")
    vb.addItem(p.patch_item)
    p.patch_viewbox = vb
    nav_lay.addWidget(p.patch_view)
    p.patch_caption = _label(style="color: gray;")
    nav_lay.addWidget(p.patch_caption)
    p.patch_prediction = _label()
    nav_lay.addWidget(p.patch_prediction)
    return nav


def _run_box(p: PatchPanel) -> QGroupBox:
    box = QGroupBox("All patches")
    lay = QVBoxLayout(box)
    p.run_button = QPushButton("Run all patches")
    p.occlusion_button = QPushButton("Occlusion")
    p.occlusion_button.setToolTip("Run the whole image with each patch greyed out: how much the output drops")
    p.cancel_button = QPushButton("Cancel")
    p.cancel_button.setEnabled(False)
    row = QHBoxLayout()
    for b in (p.run_button, p.occlusion_button, p.cancel_button):
        row.addWidget(b)
    lay.addLayout(row)
    p.progress = QProgressBar()
    p.progress.setTextVisible(True)
    p.progress.hide()
    lay.addWidget(p.progress)
    form = QFormLayout()
    p.output_combo = QComboBox()
    p.output_combo.setToolTip("The model output the patches are read from (by its kind: see Predictions)")
    form.addRow("Output", p.output_combo)
    p.method = QComboBox()
    for key in COMBINE_METHODS:
        p.method.addItem(COMBINE_LABELS[key], key)
    form.addRow("Combine", p.method)
    lay.addLayout(form)
    p.result_label = _label(style="font-weight: bold;")
    p.result_label.setText("Not run yet.")
    lay.addWidget(p.result_label)
    p.run_note = _label(style="color: gray;")
    lay.addWidget(p.run_note)
    _add_result_views(p, lay)
    return box


def _add_result_views(p: PatchPanel, lay: QVBoxLayout) -> None:
    """The bar chart and the per-patch table."""
    p.bars = pg.PlotWidget()
    p.bars.setMinimumHeight(150)
    p.bars.setLabel("bottom", "class")
    p.bars.setLabel("left", "score")
    p.bars.addLegend(offset=(-5, 5))
    p.bars.setMouseEnabled(False, False)
    p.bars.hideButtons()
    lay.addWidget(p.bars)
    p.table = QTableView()
    p.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    p.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    p.table.verticalHeader().hide()
    p.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    p.table.setMinimumHeight(160)
    p.table_model = PatchTableModel()
    p.table.setModel(p.table_model)
    lay.addWidget(p.table)


def _map_box(p: PatchPanel) -> QGroupBox:
    box = QGroupBox("Map over the image")
    form = QFormLayout(box)
    p.map_box_form = form
    p.map_kind = QComboBox()
    for key, text in MAPS.items():
        p.map_kind.addItem(text, key)
    p.map_class = QComboBox()
    p.map_opacity = QSlider(Qt.Orientation.Horizontal)
    p.map_opacity.setRange(0, 100)
    p.map_opacity.setValue(60)
    p.show_rects = QPushButton("Rectangles")
    p.show_rects.setCheckable(True)
    p.show_rects.setChecked(True)
    form.addRow("Show", p.map_kind)
    form.addRow("Class", p.map_class)
    form.addRow("Opacity", _row(p.map_opacity, p.show_rects))
    p.map_legend = _label()
    form.addRow(p.map_legend)
    return box


def _export_box(p: PatchPanel) -> QGroupBox:
    box = QGroupBox("Export")
    lay = QGridLayout(box)
    p.export_png_button = QPushButton("Patches PNG…")
    p.export_npy_button = QPushButton("Patches NPY…")
    p.export_inputs_button = QPushButton("Model inputs NPY…")
    p.export_csv_button = QPushButton("Table CSV…")
    buttons = (p.export_png_button, p.export_npy_button, p.export_csv_button, p.export_inputs_button)
    for i, b in enumerate(buttons):
        lay.addWidget(b, i // 2, i % 2)
    return box
