"""The Patches tool: cut the image into patches, step through them, run them all, combine.

Settings follow ``tf.image.extract_patches`` (size, stride, rate, VALID/SAME). All patch
rectangles are drawn over the image with the current one highlighted; the current patch is
shown as it enters the model. Running all patches (and occlusion on the same grid) is a worker
job; the per-patch probabilities feed a table, a bar chart, the combination, and maps over the
image. Invalid settings leave the last valid ones in place and say what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGraphicsRectItem,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import InputMapping
from maskviewer.core.patches import (
    COMBINE_LABELS,
    COMBINE_METHODS,
    PADDINGS,
    Combined,
    PatchGrid,
    PatchSettingsError,
    PatchSpec,
    as_probabilities,
    combine,
    coverage_map,
    extract_patches,
    grey_value,
    make_grid,
    parse_pair,
    patch_input,
    patch_table,
    preset_corners,
    preset_grid,
    preset_sliding,
)

KIND = "patches"
KIND_OCCLUSION = "patches_occlusion"
KIND_CURRENT = "patch_current"
PRESETS = {
    "corners": "Four corners",
    "grid": "Grid",
    "sliding": "Sliding window",
}
PRESET_TIPS = {
    "corners": "The four corner patches of the Size above (18 on a 28-pixel image: stride 10)",
    "grid": "Rows × cols non-overlapping patches (the field beside)",
    "sliding": "Patches of the Size above every Stride pixels, inside the image, rate 1",
}
MAPS = {"none": "No map", "score": "Class score per patch", "occlusion": "Occlusion: score drop"}
MAP_MAX_SIDE = 512  # maps are evaluated at most this finely along the image's longer side
MAX_TABLE_CLASSES = 10  # probability columns in the table (the CSV has them all)


@dataclass
class _Snapshot:
    """What a run was made from, to drop results that no longer match the settings."""

    epoch: int
    grid: PatchGrid


class PatchTableModel(QAbstractTableModel):
    """Rows: patches; columns: position, top class and the probabilities of the shown classes.

    Cells are formatted when Qt asks for them, so a run of many thousands of patches does not
    build a table of Python objects on the GUI thread.
    """

    FIXED = ("patch", "row", "col", "x", "y", "top class", "p(top)")

    def __init__(self) -> None:
        super().__init__()
        self.rects = np.zeros((0, 4), dtype=np.int64)
        self.cols = 1
        self.probs = np.zeros((0, 0))
        self.classes: list[int] = []
        self.drop: np.ndarray | None = None
        self.names: list[str] = []

    def set_table(
        self,
        rects: np.ndarray,
        cols: int,
        probs: np.ndarray,
        classes: list[int],
        names: list[str],
        drop: tuple[str, np.ndarray] | None = None,
    ) -> None:
        """Show ``probs[:, classes]`` per patch (and one occlusion-drop column)."""
        self.beginResetModel()
        self.rects, self.cols, self.probs, self.classes = rects, max(cols, 1), probs, classes
        self.header = list(self.FIXED) + [f"p({names[i]})" for i in classes]
        self.names = names
        self.drop = None
        if drop is not None:
            self.header.append(drop[0])
            self.drop = drop[1]
        self.endResetModel()

    def clear(self) -> None:
        self.set_table(np.zeros((0, 4), dtype=np.int64), 1, np.zeros((0, 0)), [], [])

    def rowCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.probs)

    def columnCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(getattr(self, "header", []))

    def value(self, row: int, col: int) -> Any:
        """The cell's value (int, str or float)."""
        fixed = len(self.FIXED)
        if col < fixed:
            if col == 0:
                return row
            if col in (1, 2):
                return divmod(row, self.cols)[col - 1]
            if col in (3, 4):
                return int(self.rects[row, col - 3])
            top = int(np.argmax(self.probs[row]))
            return self.names[top] if col == 5 else float(self.probs[row, top])
        col -= fixed
        if col < len(self.classes):
            return float(self.probs[row, self.classes[col]])
        return float(self.drop[row])

    def data(self, index, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.value(index.row(), index.column())
            return f"{value:.4f}" if isinstance(value, float) else str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() != 5:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        header = getattr(self, "header", [])
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return header[section] if section < len(header) else None
        return None


class PatchPanel(QWidget):
    """The Patches dock's widgets; the :class:`PatchTool` fills and reads them."""

    step_requested = Signal(int)  # +-1 patch, +-cols (a row)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        # settings
        box = QGroupBox("Patches (tf.image.extract_patches)")
        form = QFormLayout(box)
        self.size_edit = QLineEdit("18")
        self.stride_edit = QLineEdit("10")
        self.rate_edit = QLineEdit("1")
        for edit, tip in (
            (self.size_edit, "Patch height, width in sampled pixels (one number: square)"),
            (self.stride_edit, "Step between patches: rows, cols"),
            (self.rate_edit, "Dilation: a patch samples every rate-th pixel"),
        ):
            edit.setToolTip(tip)
            edit.setPlaceholderText("e.g. 18 or 18, 20")
        self.padding = QComboBox()
        self.padding.addItems(list(PADDINGS))
        self.padding.setToolTip("VALID: patches fully inside; SAME: zero-padded, ceil(size / stride) patches")
        self.apply_button = QPushButton("Apply")
        form.addRow("Size h, w", self.size_edit)
        form.addRow("Stride", self.stride_edit)
        form.addRow("Rate", self.rate_edit)
        pad_row = QHBoxLayout()
        pad_row.addWidget(self.padding, 1)
        pad_row.addWidget(self.apply_button)
        form.addRow("Padding", pad_row)
        self.preset = QComboBox()
        for key, text in PRESETS.items():
            self.preset.addItem(text, key)
            self.preset.setItemData(self.preset.count() - 1, PRESET_TIPS[key], Qt.ItemDataRole.ToolTipRole)
        self.grid_edit = QLineEdit("3, 3")
        self.grid_edit.setToolTip("Rows, cols of the grid preset")
        self.grid_edit.setPlaceholderText("rows, cols")
        self.grid_edit.setMaximumWidth(70)
        self.preset_button = QPushButton("Use")
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(self.grid_edit)
        preset_row.addWidget(self.preset_button)
        form.addRow("Preset", preset_row)
        self.count_label = QLabel("")
        self.count_label.setWordWrap(True)
        form.addRow(self.count_label)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #c03030;")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        form.addRow(self.message)
        lay.addWidget(box)

        # stepping and the current patch
        nav = QGroupBox("Current patch")
        nav_lay = QVBoxLayout(nav)
        row = QHBoxLayout()
        self.prev_button = QPushButton("◀")
        self.next_button = QPushButton("▶")
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        for b in (self.prev_button, self.next_button):
            b.setMaximumWidth(36)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        row.addWidget(self.prev_button)
        row.addWidget(self.slider, 1)
        row.addWidget(self.next_button)
        row.addWidget(self.play_button)
        nav_lay.addLayout(row)
        self.index_label = QLabel("")
        nav_lay.addWidget(self.index_label)
        self.patch_view = pg.GraphicsLayoutWidget()
        self.patch_view.setMinimumHeight(170)
        self.patch_view.setBackground("#202020")
        vb = self.patch_view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        vb.setMouseEnabled(False, False)
        self.patch_item = pg.ImageItem(axisOrder="row-major")
        vb.addItem(self.patch_item)
        self.patch_viewbox = vb
        nav_lay.addWidget(self.patch_view)
        self.patch_caption = QLabel("")
        self.patch_caption.setStyleSheet("color: gray;")
        self.patch_caption.setWordWrap(True)
        nav_lay.addWidget(self.patch_caption)
        self.patch_prediction = QLabel("")
        self.patch_prediction.setWordWrap(True)
        nav_lay.addWidget(self.patch_prediction)
        lay.addWidget(nav)

        # running
        run_box = QGroupBox("All patches")
        run_lay = QVBoxLayout(run_box)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run all patches")
        self.occlusion_button = QPushButton("Occlusion")
        self.occlusion_button.setToolTip(
            "Run the whole image with each patch greyed out: the drop in the class score"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.occlusion_button)
        row.addWidget(self.cancel_button)
        run_lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        run_lay.addWidget(self.progress)
        form2 = QFormLayout()
        self.output_combo = QComboBox()
        self.output_combo.setToolTip("The model output read as class scores")
        form2.addRow("Output", self.output_combo)
        self.method = QComboBox()
        for key in COMBINE_METHODS:
            self.method.addItem(COMBINE_LABELS[key], key)
        form2.addRow("Combine", self.method)
        run_lay.addLayout(form2)
        self.result_label = QLabel("Not run yet.")
        self.result_label.setWordWrap(True)
        self.result_label.setStyleSheet("font-weight: bold;")
        run_lay.addWidget(self.result_label)
        self.run_note = QLabel("")
        self.run_note.setStyleSheet("color: gray;")
        self.run_note.setWordWrap(True)
        run_lay.addWidget(self.run_note)
        self.bars = pg.PlotWidget()
        self.bars.setMinimumHeight(150)
        self.bars.setLabel("bottom", "class")
        self.bars.setLabel("left", "score")
        self.bars.addLegend(offset=(-5, 5))
        self.bars.setMouseEnabled(False, False)
        self.bars.hideButtons()
        run_lay.addWidget(self.bars)
        self.table = QTableView()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(160)
        self.table_model = PatchTableModel()
        self.table.setModel(self.table_model)
        run_lay.addWidget(self.table)
        lay.addWidget(run_box)

        # maps
        map_box = QGroupBox("Map over the image")
        map_form = QFormLayout(map_box)
        self.map_kind = QComboBox()
        for key, text in MAPS.items():
            self.map_kind.addItem(text, key)
        self.map_class = QComboBox()
        self.map_opacity = QSlider(Qt.Orientation.Horizontal)
        self.map_opacity.setRange(0, 100)
        self.map_opacity.setValue(60)
        self.show_rects = QPushButton("Rectangles")
        self.show_rects.setCheckable(True)
        self.show_rects.setChecked(True)
        map_form.addRow("Show", self.map_kind)
        map_form.addRow("Class", self.map_class)
        op_row = QHBoxLayout()
        op_row.addWidget(self.map_opacity, 1)
        op_row.addWidget(self.show_rects)
        map_form.addRow("Opacity", op_row)
        self.map_legend = QLabel("")
        self.map_legend.setWordWrap(True)
        map_form.addRow(self.map_legend)
        lay.addWidget(map_box)

        # exports
        exp = QGroupBox("Export")
        exp_lay = QGridLayout(exp)
        self.export_png_button = QPushButton("Patches PNG…")
        self.export_npy_button = QPushButton("Patches NPY…")
        self.export_inputs_button = QPushButton("Model inputs NPY…")
        self.export_csv_button = QPushButton("Table CSV…")
        buttons = (self.export_png_button, self.export_npy_button, self.export_csv_button, self.export_inputs_button)
        for i, b in enumerate(buttons):
            exp_lay.addWidget(b, i // 2, i % 2)
        lay.addWidget(exp)
        lay.addStretch(1)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        step = _arrow_step(event.key())
        if step is not None:
            self.step_requested.emit(step)
            event.accept()
            return
        super().keyPressEvent(event)


def _arrow_step(key: int) -> int | None:
    """+-1 for Right/Left, +-2**30 (a row: resolved by the tool) for Down/Up."""
    return {
        Qt.Key.Key_Right: 1,
        Qt.Key.Key_Left: -1,
        Qt.Key.Key_Down: ROW_STEP,
        Qt.Key.Key_Up: -ROW_STEP,
    }.get(Qt.Key(key))


ROW_STEP = 1 << 30


class PatchTool(QObject):
    """Patch settings, stepping, runs, maps and exports, wired to the window and the worker.

    Attributes
    ----------
    spec : PatchSpec
        The last valid settings.
    grid : PatchGrid or None
        ``spec`` on the current image (None without an image or when ``spec`` does not fit it).
    index : int
        The current patch.
    probs : ndarray or None
        ``(N, K)`` per-patch probabilities of the last run for the current settings.
    """

    current_patch_changed = Signal(object)  # dict of batched inputs for the current patch, or None

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.panel = PatchPanel()
        # the window makes it a tab on the right and scrolls it
        self.dock = window.add_panel("Patches", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.spec = PatchSpec()
        self.grid: PatchGrid | None = None
        self.index = 0
        self.message = ""
        self.outputs: dict[str, np.ndarray] | None = None
        self.probs: np.ndarray | None = None
        self.prob_note = ""
        self.occlusion: Any = None  # OcclusionRun for the current settings
        self.combined: Combined | None = None
        self.run_seconds = 0.0
        self._epoch = 0
        self._fit_error = ""
        self._messages = {"settings": "", "fit": "", "run": ""}
        self._running: set[str] = set()
        self._current_cache: dict[int, dict[str, np.ndarray]] = {}
        self._shown_input: np.ndarray | None = None

        # canvas overlays: the map under the rectangles, the current one on top
        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.map_item.setVisible(False)
        window.add_panel_overlay("Patches", self.map_item, 5)
        self.rects_item = pg.PlotCurveItem(pen=pg.mkPen((255, 220, 0, 150), width=1), connect="finite")
        window.add_panel_overlay("Patches", self.rects_item, 20)
        self.current_item = QGraphicsRectItem()
        pen = QPen(QColor(255, 90, 0))
        pen.setWidthF(2.5)
        pen.setCosmetic(True)
        self.current_item.setPen(pen)
        self.current_item.setVisible(False)
        window.add_panel_overlay("Patches", self.current_item, 21)

        self.play_timer = QTimer(self)
        self.play_timer.setInterval(500)
        self.play_timer.timeout.connect(lambda: self.step(1, wrap=True))

        p = self.panel
        for edit in (p.size_edit, p.stride_edit, p.rate_edit):
            edit.returnPressed.connect(self.apply_settings)
        p.apply_button.clicked.connect(self.apply_settings)
        p.padding.activated.connect(lambda _i: self.apply_settings())
        p.preset_button.clicked.connect(self.apply_preset)
        p.grid_edit.returnPressed.connect(self.apply_preset)
        p.slider.valueChanged.connect(self.set_index)
        p.prev_button.clicked.connect(lambda: self.step(-1))
        p.next_button.clicked.connect(lambda: self.step(1))
        p.play_button.toggled.connect(self.set_playing)
        p.step_requested.connect(self._arrow)
        p.run_button.clicked.connect(self.run_all)
        p.occlusion_button.clicked.connect(self.run_occlusion)
        p.cancel_button.clicked.connect(self.cancel)
        p.method.currentIndexChanged.connect(lambda _i: self._refresh_results())
        p.output_combo.currentIndexChanged.connect(lambda _i: self._output_changed())
        p.map_kind.currentIndexChanged.connect(lambda _i: self._update_map())
        p.map_class.currentIndexChanged.connect(lambda _i: (self._update_map(), self._fill_table()))
        p.map_opacity.valueChanged.connect(lambda _v: self._update_map())
        p.show_rects.toggled.connect(self.rects_item.setVisible)
        p.table.clicked.connect(lambda idx: self.set_index(idx.row()))
        p.export_png_button.clicked.connect(self.export_png_dialog)
        p.export_npy_button.clicked.connect(lambda: self.export_npy_dialog(inputs=False))
        p.export_inputs_button.clicked.connect(lambda: self.export_npy_dialog(inputs=True))
        p.export_csv_button.clicked.connect(self.export_csv_dialog)
        window.canvas.installEventFilter(self)

        menu = QMenu("Export &Patches", window)
        menu.addAction("Patches as &PNG Files…", self.export_png_dialog)
        menu.addAction("Patches as one &NPY Batch…", lambda: self.export_npy_dialog(inputs=False))
        menu.addAction("Patches as &Model Inputs (NPY)…", lambda: self.export_npy_dialog(inputs=True))
        menu.addAction("Patch &Table (CSV)…", self.export_csv_dialog)
        seps = [a for a in window.file_menu.actions() if a.isSeparator()]
        if seps:  # above Quit
            window.file_menu.insertMenu(seps[-1], menu)
        else:
            window.file_menu.addMenu(menu)
        act = window.model_menu.addAction("Run All &Patches", self.run_all)
        act.setShortcut("Ctrl+Shift+P")

        w = self.controller.worker
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        w.job_cancelled.connect(self._job_cancelled)
        w.job_progress.connect(self._job_progress)
        self.state.image_changed.connect(lambda _i: self._image_changed())
        self.state.model_changed.connect(lambda _i: self._model_changed())
        self.state.mapping_changed.connect(lambda _m: self._inputs_changed())
        self.state.labels_changed.connect(lambda _l: self._refresh_results())
        self._image_changed()

    # -- settings -------------------------------------------------------------------------------


    def _show_message(self, text: str, source: str = "settings") -> None:
        """Set the panel's message from ``source`` (settings, fit or run); all non-empty ones show."""
        self._messages[source] = text
        self.message = "\n".join(m for m in self._messages.values() if m)
        self.panel.message.setText(self.message)
        self.panel.message.setVisible(bool(self.message))

    def _read_spec(self) -> PatchSpec:
        p = self.panel
        return PatchSpec(
            parse_pair(p.size_edit.text(), "Patch size"),
            parse_pair(p.stride_edit.text(), "Stride"),
            parse_pair(p.rate_edit.text(), "Rate"),
            p.padding.currentText(),
        )

    def _write_spec(self, spec: PatchSpec) -> None:
        p = self.panel
        for edit, pair in ((p.size_edit, spec.size), (p.stride_edit, spec.stride), (p.rate_edit, spec.rate)):
            edit.setText(str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}, {pair[1]}")
        p.padding.setCurrentText(spec.padding)

    def apply_settings(self) -> bool:
        """Read the fields and use them; on bad input say why and keep the last valid settings."""
        try:
            spec = self._read_spec()
        except PatchSettingsError as exc:
            self._show_message(f"{exc} The previous settings ({self.spec.describe()}) stay.")
            return False
        return self.set_spec(spec)

    def set_spec(self, spec: PatchSpec) -> bool:
        """Use ``spec`` if it fits the current image; otherwise report it and keep the last valid one."""
        image = self.state.image
        if image is not None:
            try:
                grid = make_grid(spec, image.height, image.width)
            except PatchSettingsError as exc:
                keep = f" The previous settings ({self.spec.describe()}) stay." if self.grid else ""
                self._show_message(f"{exc}{keep}")
                return False
            self.grid = grid
        self.spec = spec
        self._write_spec(spec)
        self._show_message("")
        self._settings_changed()
        return True

    def apply_preset(self) -> bool:
        """Apply the chosen preset to the current image."""
        image = self.state.image
        if image is None:
            self._show_message("Open an image first: presets are computed from its size.")
            return False
        p = self.panel
        key = p.preset.currentData()
        try:
            if key == "corners":
                size = parse_pair(p.size_edit.text(), "Patch size")
                spec = preset_corners(image.height, image.width, size)
            elif key == "grid":
                rows, cols = parse_pair(p.grid_edit.text(), "Grid rows, cols")
                spec = preset_grid(image.height, image.width, rows, cols)
            else:
                spec = preset_sliding(
                    parse_pair(p.size_edit.text(), "Patch size"), parse_pair(p.stride_edit.text(), "Stride")
                )
        except PatchSettingsError as exc:
            self._show_message(f"{exc} The previous settings ({self.spec.describe()}) stay.")
            return False
        return self.set_spec(spec)

    # -- state changes --------------------------------------------------------------------------

    def _invalidate(self) -> None:
        """Results no longer match: forget them and stop runs made for the old settings."""
        self._epoch += 1
        for kind in (KIND, KIND_OCCLUSION, KIND_CURRENT):
            self.controller.worker.cancel(kind)
        self.outputs = self.probs = self.occlusion = self.combined = None
        self._current_cache.clear()
        self.set_playing(False)
        self.panel.play_button.setChecked(False)
        self._set_running(False)

    def _image_changed(self) -> None:
        image = self.state.image
        if image is None:
            self.grid = None
        else:
            try:
                self.grid = make_grid(self.spec, image.height, image.width)
                self._show_message("")
            except PatchSettingsError as exc:
                self.grid = None
                self._show_message(f"{exc} Choose settings that fit this image.")
        self._settings_changed()

    def _model_changed(self) -> None:
        self._fill_outputs()
        self._settings_changed()

    def _inputs_changed(self) -> None:
        self._settings_changed()

    def _settings_changed(self) -> None:
        self._invalidate()
        self._show_message("", "run")
        self._check_fit()
        g = self.grid
        p = self.panel
        if g is None:
            p.count_label.setText("No patches." if self.state.image is not None else "Open an image to cut it into patches.")
        else:
            eh, ew = g.spec.span
            extra = f" · each covers {eh}×{ew} pixels" if g.spec.rate != (1, 1) else ""
            p.count_label.setText(f"{g.describe()} · {g.spec.describe()}{extra}")
        p.slider.blockSignals(True)
        p.slider.setMaximum(max(0, (g.count if g else 1) - 1))
        p.slider.setValue(0)
        p.slider.blockSignals(False)
        self.index = 0
        self._draw_rects()
        self._refresh_results()
        self._show_current()

    def _check_fit(self) -> None:
        """Can the current patch size feed the model? (numpy only: one small patch)"""
        self._fit_error = ""
        info, image, grid = self.state.model_info, self.state.image, self.grid
        if info is None or image is None or grid is None:
            self._show_message("", "fit")
            return
        from maskviewer.inference.patch_runner import check_patch_fits, plan_feed

        try:
            check_patch_fits(image, grid, plan_feed(info, self._mappings()))
        except MaskviewerError as exc:
            self._fit_error = str(exc)
        self._show_message(self._fit_error, "fit")

    def _mappings(self) -> dict[str, InputMapping]:
        return {k: InputMapping.from_dict(v.to_dict()) for k, v in self.state.mappings.items()}

    def _fill_outputs(self) -> None:
        combo = self.panel.output_combo
        combo.blockSignals(True)
        combo.clear()
        info = self.state.model_info
        if info is not None:
            for out in info.outputs:
                if len(out.shape) == 2:  # (batch, classes): one score vector per patch
                    combo.addItem(f"{out.name} {out.shape_text()}", out.name)
        combo.blockSignals(False)

    # -- stepping -------------------------------------------------------------------------------

    def set_index(self, index: int) -> None:
        """Make patch ``index`` the current one (clamped to the grid)."""
        if self.grid is None:
            return
        index = int(min(max(index, 0), self.grid.count - 1))
        self.index = index
        if self.panel.slider.value() != index:
            self.panel.slider.blockSignals(True)
            self.panel.slider.setValue(index)
            self.panel.slider.blockSignals(False)
        self._draw_current()
        self._show_current()

    def step(self, delta: int, wrap: bool = False) -> None:
        """Move ``delta`` patches (``ROW_STEP`` multiples move by rows)."""
        if self.grid is None:
            return
        if abs(delta) >= ROW_STEP:
            delta = self.grid.cols * (1 if delta > 0 else -1)
        n = self.grid.count
        target = self.index + delta
        self.set_index(target % n if wrap else target)

    def _arrow(self, delta: int) -> None:
        self.step(delta)

    def set_playing(self, playing: bool) -> None:
        if playing and self.grid is not None and self.grid.count > 1:
            self.play_timer.start()
            self.panel.play_button.setText("Pause")
        else:
            self.play_timer.stop()
            self.panel.play_button.setText("Play")
            if self.panel.play_button.isChecked() and not playing:
                self.panel.play_button.blockSignals(True)
                self.panel.play_button.setChecked(False)
                self.panel.play_button.blockSignals(False)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        # arrow keys over the image step through the patches
        if obj is self.window.canvas and event.type() == QEvent.Type.KeyPress and self.grid is not None:
            step = _arrow_step(event.key())
            if step is not None:
                self.step(step)
                return True
        return False

    # -- drawing --------------------------------------------------------------------------------

    def rects_drawn(self) -> np.ndarray:
        """The rectangles on the canvas as ``(N, 4)`` ``x, y, width, height`` (read back from the item)."""
        x, y = self.rects_item.getData()
        if x is None or len(x) == 0:
            return np.zeros((0, 4))
        x = np.asarray(x).reshape(-1, 6)
        y = np.asarray(y).reshape(-1, 6)
        return np.stack([x[:, 0], y[:, 0], x[:, 1] - x[:, 0], y[:, 2] - y[:, 1]], axis=1)

    def _draw_rects(self) -> None:
        g = self.grid
        if g is None:
            self.rects_item.setData([], [])
            self.current_item.setVisible(False)
            return
        r = g.rects().astype(np.float64)
        x0, y0 = r[:, 0], r[:, 1]
        x1, y1 = x0 + r[:, 2], y0 + r[:, 3]
        nan = np.full_like(x0, np.nan)
        # one closed outline per patch, NaN-separated: a single item however many patches
        xs = np.stack([x0, x1, x1, x0, x0, nan], axis=1).reshape(-1)
        ys = np.stack([y0, y0, y1, y1, y0, nan], axis=1).reshape(-1)
        self.rects_item.setData(xs, ys)
        self._draw_current()

    def _draw_current(self) -> None:
        g = self.grid
        if g is None:
            self.current_item.setVisible(False)
            return
        x, y, w, h = (float(v) for v in g.rects()[self.index])
        self.current_item.setRect(x, y, w, h)
        self.current_item.setVisible(True)

    def current_patch(self) -> np.ndarray | None:
        """The current patch as cut (``(kh, kw, C)``, the image's dtype)."""
        if self.grid is None or self.state.image is None:
            return None
        return extract_patches(self.state.image.array, self.grid, [self.index])[0]

    def current_inputs(self) -> dict[str, np.ndarray] | None:
        """The current patch as batched model inputs (``{name: (1, ...)}``), or None.

        Inputs fed from other files get their usual arrays; another view (the layers) can run
        exactly what the patch run feeds for this patch.
        """
        info, image, patch = self.state.model_info, self.state.image, self.current_patch()
        if info is None or image is None or patch is None or self._fit_error:
            return None
        from maskviewer.inference.patch_runner import plan_feed

        feed = plan_feed(info, self._mappings())
        if feed.other_inputs:
            return None  # needs other files loaded: the worker job builds those
        return {
            name: patch_input(patch, image.value_max, m, shape)[None]
            for name, (m, shape) in feed.patch_inputs.items()
        }

    def _show_current(self) -> None:
        p = self.panel
        g, image = self.grid, self.state.image
        if g is None or image is None:
            p.patch_item.clear()
            self._shown_input = None
            p.index_label.setText("")
            p.patch_caption.setText("")
            p.patch_prediction.setText("")
            self.current_patch_changed.emit(None)
            return
        r, c = g.position(self.index)
        y, x = g.origin(self.index)
        p.index_label.setText(f"Patch {self.index + 1} / {g.count} · row {r}, col {c} · at x {x}, y {y}")
        inputs = None
        try:
            inputs = self.current_inputs()
        except MaskviewerError as exc:
            p.patch_caption.setText(str(exc))
        if inputs:
            name, arr = next(iter(inputs.items()))
            mapping = self._mappings().get(name) or InputMapping()
            shown = arr[0]
            self._set_patch_image(shown, _levels(shown, mapping.scale))
            p.patch_caption.setText(
                f"As it enters the model: input {name!r} {tuple(shown.shape)}, "
                f"{mapping.resize}, scaled {mapping.scale}."
            )
        else:
            patch = self.current_patch()
            shown = patch[:, :, 0] if patch.shape[2] in (1, 2) else patch
            self._set_patch_image(shown, (0.0, float(image.value_max)))
            if not self._fit_error and self.state.model_info is None:
                p.patch_caption.setText("As cut from the image (open a model to see it as the model sees it).")
        self.current_patch_changed.emit(inputs)
        self._show_current_prediction()

    def _set_patch_image(self, arr: np.ndarray, levels: tuple[float, float]) -> None:
        self._shown_input = arr
        img = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] in (1, 2) else arr
        lo, hi = levels
        self.panel.patch_item.setImage(img, levels=(lo, hi if hi > lo else lo + 1), autoLevels=False)
        self.panel.patch_item.setRect(0, 0, img.shape[1], img.shape[0])
        self.panel.patch_viewbox.autoRange(padding=0.0)

    @property
    def shown_patch(self) -> np.ndarray | None:
        """The array shown enlarged: the model input for the current patch (or the raw patch)."""
        return self._shown_input

    def _show_current_prediction(self) -> None:
        label = self.panel.patch_prediction
        probs = None
        if self.probs is not None:
            probs = self.probs[self.index]
        elif self.index in self._current_cache:
            scores = self._output_of(self._current_cache[self.index])
            if scores is not None:
                probs = as_probabilities(scores[None])[0][0]
        elif self._can_run(quiet=True):
            self._predict_current()
        if probs is None:
            label.setText("")
        else:
            order = np.argsort(-probs, kind="stable")[:3]
            label.setText("This patch: " + ", ".join(f"{self._label(i)} {probs[i]:.3f}" for i in order))
        self._draw_bars()

    def _label(self, i: int) -> str:
        labels = self.state.labels
        return f"{i} ({labels[i]})" if labels and i < len(labels) else str(i)

    # -- running --------------------------------------------------------------------------------

    def _output_name(self) -> str | None:
        return self.panel.output_combo.currentData()

    def _output_of(self, outputs: dict[str, np.ndarray]) -> np.ndarray | None:
        name = self._output_name()
        if name is None:
            return None
        if name in outputs:
            return outputs[name]
        return next(iter(outputs.values())) if len(outputs) == 1 else None

    def _can_run(self, quiet: bool = False) -> bool:
        why = ""
        if self.state.image is None or self.state.model_info is None:
            why = "Open an image and a model first."
        elif self.grid is None:
            why = self.message or "The patch settings do not fit this image."
        elif self._fit_error:
            why = self._fit_error
        if why and not quiet and why not in self.message:
            self._show_message(why, "run")
        return not why

    def _job_parts(self):
        from maskviewer.inference.patch_runner import plan_feed

        info, image, grid = self.state.model_info, self.state.image, self.grid
        feed = plan_feed(info, self._mappings())
        extra = dict(getattr(self.controller, "_extra_images", {}))
        return image, grid, feed, extra, _Snapshot(self._epoch, grid)

    def _predict_current(self) -> None:
        image, grid, feed, extra, snap = self._job_parts()
        index = self.index

        def job(ctx):
            from maskviewer.inference.patch_runner import run_patches
            from maskviewer.io.images import load_image

            run = run_patches(
                ctx.host.predict,
                image,
                grid,
                feed,
                batch_size=1,
                other_images=extra,
                load=load_image,
                indices=[index],
            )
            return snap, index, {k: v[0] for k, v in run.outputs.items()}

        self.controller.submit(KIND_CURRENT, job)

    def run_all(self) -> int | None:
        """Run every patch through the model in batches (a worker job); returns its generation."""
        if not self._can_run():
            return None
        image, grid, feed, extra, snap = self._job_parts()

        def job(ctx):
            from maskviewer.inference.patch_runner import run_patches
            from maskviewer.io.images import load_image

            ctx.progress(0, grid.count)
            run = run_patches(
                ctx.host.predict, image, grid, feed, progress=ctx.progress, other_images=extra, load=load_image
            )
            return snap, run

        self._set_running(True, "Running patches…", grid.count, KIND)
        return self.controller.submit(KIND, job)

    def run_occlusion(self) -> int | None:
        """Grey out each patch in turn and run the whole image (a worker job)."""
        if not self._can_run():
            return None
        image, grid, feed, extra, snap = self._job_parts()
        fill = grey_value(image)

        def job(ctx):
            from maskviewer.inference.patch_runner import run_occlusion
            from maskviewer.io.images import load_image

            ctx.progress(0, grid.count + 1)
            run = run_occlusion(
                ctx.host.predict, image, grid, feed, fill, progress=ctx.progress,
                other_images=extra, load=load_image,
            )
            return snap, run

        self._set_running(True, "Occlusion…", grid.count + 1, KIND_OCCLUSION)
        return self.controller.submit(KIND_OCCLUSION, job)

    def cancel(self) -> None:
        for kind in (KIND, KIND_OCCLUSION):
            self.controller.worker.cancel(kind)
        self._set_running(False)
        self.panel.run_note.setText("Cancelled.")

    def _set_running(self, running: bool, text: str = "", total: int = 0, kind: str = "") -> None:
        """Show (or, when no run of ours is left, hide) the progress bar and Cancel."""
        if running:
            self._running.add(kind)
        elif kind:
            self._running.discard(kind)
        else:
            self._running.clear()
        p = self.panel
        busy = bool(self._running)
        p.cancel_button.setEnabled(busy)
        p.progress.setVisible(busy)
        if running:
            self._show_message("", "run")
            p.progress.setRange(0, max(total, 1))
            p.progress.setValue(0)
            p.progress.setFormat(f"{text} %v / %m")

    def _mine(self, kind: str, gen: int) -> bool:
        return kind in (KIND, KIND_OCCLUSION, KIND_CURRENT) and self.controller.is_latest(kind, gen)

    def _job_progress(self, kind: str, gen: int, done: int, total: int) -> None:
        if kind in (KIND, KIND_OCCLUSION) and self.controller.is_latest(kind, gen):
            self.panel.progress.setRange(0, max(total, 1))
            self.panel.progress.setValue(done)

    def _job_finished(self, kind: str, gen: int, result: Any) -> None:
        if not self._mine(kind, gen):
            return
        snap = result[0]
        if snap.epoch != self._epoch:
            return  # made for settings that changed since
        if kind != KIND_CURRENT:
            self._set_running(False, kind=kind)
        if kind == KIND_CURRENT:
            _snap, index, outputs = result
            self._current_cache[index] = outputs
            if index == self.index:
                self._show_current_prediction()
            return
        run = result[1]
        if kind == KIND:
            self.outputs = run.outputs
            self.run_seconds = run.seconds
            self.panel.run_note.setText(
                f"{run.grid.count} patches in {run.seconds * 1000:.0f} ms (batches of {run.batch_size})."
            )
            self._output_changed()
        else:
            self.occlusion = run
            if self.panel.map_kind.currentData() != "occlusion":
                self.panel.map_kind.setCurrentIndex(list(MAPS).index("occlusion"))
            self.panel.run_note.setText(
                f"Occlusion: {run.grid.count} greyed images in {run.seconds * 1000:.0f} ms (grey = {run.fill:g})."
            )
            self._refresh_results()
        self._set_running(False, kind=kind)

    def _job_failed(self, kind: str, gen: int, message: str, exc: Any) -> None:
        if not self._mine(kind, gen):
            return
        self._set_running(False, kind=kind)
        self._show_message(message, "run")

    def _job_cancelled(self, kind: str, gen: int) -> None:
        if kind in (KIND, KIND_OCCLUSION) and self.controller.is_latest(kind, gen):
            self._set_running(False, kind=kind)

    # -- results --------------------------------------------------------------------------------

    def _output_changed(self) -> None:
        self.probs = None
        if self.outputs is not None:
            scores = self._output_of(self.outputs)
            if scores is None:
                self.prob_note = ""
                self._show_message(
                    "The model has no class-score output (one vector per image), so patches "
                    "cannot be combined into a class."
                )
            else:
                self.probs, self.prob_note = as_probabilities(scores)
        self._refresh_results()
        self._show_current_prediction()

    def _refresh_results(self) -> None:
        p = self.panel
        self.combined = None
        if self.probs is not None:
            self.combined = combine(self.probs, p.method.currentData())
            c = self.combined
            p.result_label.setText(
                f"Final: class {self._label(c.label)} · {c.probability:.4f} "
                f"({COMBINE_LABELS[c.method].lower()} of {len(self.probs)} patches)"
            )
            note = p.run_note.text().split(" Outputs:")[0]
            p.run_note.setText(f"{note} Outputs: {self.prob_note}.")
        else:
            p.result_label.setText("Not run yet." if self.state.model_info is not None else "Open a model to run the patches.")
        self._fill_classes()
        self._fill_table()
        self._draw_bars()
        self._update_map()

    def _num_classes(self) -> int:
        if self.probs is not None:
            return self.probs.shape[1]
        if self.occlusion is not None:
            scores = self._output_of({k: v[None] for k, v in self.occlusion.base.items()})
            if scores is not None:
                return as_probabilities(scores)[0].shape[1]
        return 0

    def _fill_classes(self) -> None:
        combo = self.panel.map_class
        k = self._num_classes()
        if combo.count() == k and k:
            if self.combined is not None and combo.property("auto"):
                combo.setCurrentIndex(self.combined.label)
            return
        combo.blockSignals(True)
        combo.clear()
        for i in range(k):
            combo.addItem(self._label(i), i)
        if self.combined is not None:
            combo.setCurrentIndex(self.combined.label)
        combo.setProperty("auto", True)
        combo.blockSignals(False)

    def occlusion_drop(self) -> np.ndarray | None:
        """``(N, K)``: how much each class's probability drops with each patch greyed out."""
        run = self.occlusion
        if run is None:
            return None
        base = self._output_of({k: v[None] for k, v in run.base.items()})
        occl = self._output_of(run.occluded)
        if base is None or occl is None:
            return None
        return as_probabilities(base)[0] - as_probabilities(occl)[0]

    def table(self) -> tuple[list[str], list[list]] | None:
        """The full per-patch table (as exported to CSV)."""
        if self.probs is None or self.grid is None:
            return None
        return patch_table(self.grid, self.probs, self.state.labels, self.occlusion_drop())

    def _fill_table(self) -> None:
        model = self.panel.table_model
        if self.probs is None or self.grid is None or self.combined is None:
            model.clear()
            return
        k = self.probs.shape[1]
        shown = list(range(k))
        if k > MAX_TABLE_CLASSES:  # the classes the combination ranks highest
            order = np.argsort(-self.combined.scores, kind="stable")[:MAX_TABLE_CLASSES]
            shown = sorted(int(i) for i in order)
        names = [self._label(i) for i in range(k)]
        drop = self.occlusion_drop()
        column = None
        if drop is not None:
            cls = self.panel.map_class.currentData()
            cls = self.combined.label if cls is None else cls
            column = (f"occlusion drop ({names[cls]})", drop[:, cls])
        model.set_table(self.grid.rects(), self.grid.cols, self.probs, shown, names, column)

    def _draw_bars(self) -> None:
        plot = self.panel.bars
        plot.clear()
        if self.combined is None:
            return
        k = len(self.combined.scores)
        x = np.arange(k)
        plot.addItem(
            pg.BarGraphItem(x=x - 0.2, height=self.combined.scores, width=0.4, brush=(70, 130, 220),
                            name=f"{self.combined.method} of all patches")
        )
        if self.probs is not None:
            plot.addItem(
                pg.BarGraphItem(x=x + 0.2, height=self.probs[self.index], width=0.4, brush=(255, 140, 0),
                                name=f"patch {self.index + 1}")
            )
        plot.setXRange(-0.7, k - 0.3, padding=0)
        plot.setYRange(0, 1.05, padding=0)

    def map_values(self) -> tuple[np.ndarray, str] | None:
        """``(N,)`` per-patch values of the map shown and its kind, or None."""
        kind = self.panel.map_kind.currentData()
        cls = self.panel.map_class.currentData()
        if kind == "score" and self.probs is not None and cls is not None:
            return self.probs[:, cls], kind
        if kind == "occlusion" and cls is not None:
            drop = self.occlusion_drop()
            if drop is not None:
                return drop[:, cls], kind
        return None

    def _update_map(self) -> None:
        p = self.panel
        values = self.map_values() if self.grid is not None else None
        if values is None:
            self.map_item.setVisible(False)
            p.map_legend.setText("" if p.map_kind.currentData() == "none" else "Run the patches (or occlusion) first.")
            return
        vals, kind = values
        grid = self.grid
        m = coverage_map(grid, vals, MAP_MAX_SIDE)
        if kind == "score":
            lo, hi, cmap = 0.0, 1.0, "viridis"
        else:
            finite = m[np.isfinite(m)]
            top = float(np.abs(finite).max()) if finite.size else 1.0
            lo, hi, cmap = -max(top, 1e-6), max(top, 1e-6), "CET-D1"
        lut = pg.colormap.get(cmap).getLookupTable(0.0, 1.0, 256, alpha=True)
        t = np.clip((np.nan_to_num(m, nan=lo) - lo) / (hi - lo), 0, 1)
        rgba = lut[(t * 255 + 0.5).astype(np.intp)]
        rgba[..., 3] = np.where(np.isfinite(m), int(p.map_opacity.value() * 2.55), 0)
        self.map_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.map_item.setRect(0, 0, grid.width, grid.height)
        self.map_item.setVisible(True)
        cls = self._label(p.map_class.currentData())
        if kind == "score":
            p.map_legend.setText(f"p(class {cls}) per pixel, mean over the patches covering it: 0 (purple) … 1 (yellow).")
        else:
            p.map_legend.setText(
                f"Drop in p(class {cls}) when the patch is greyed out: −{hi:.3g} (blue, the patch "
                f"hurts the class) … +{hi:.3g} (red, the class depends on it)."
            )

    # -- exports --------------------------------------------------------------------------------

    def _all_patches(self) -> np.ndarray:
        if self.grid is None or self.state.image is None:
            raise PatchSettingsError("There are no patches: open an image and choose valid settings.")
        return extract_patches(self.state.image.array, self.grid)

    def export_pngs(self, folder: str | Path) -> list[Path]:
        """Write every patch as a PNG file into ``folder``."""
        from maskviewer.io.patch_export import export_patch_pngs

        return export_patch_pngs(folder, self._all_patches(), self.grid, self.state.image.value_max)

    def export_npy(self, path: str | Path, inputs: bool = False) -> np.ndarray:
        """Write all patches as one ``(N, kh, kw, C)`` NPY (``inputs``: as the model's batch)."""
        from maskviewer.core.patches import prepare_patches
        from maskviewer.inference.patch_runner import plan_feed
        from maskviewer.io.patch_export import export_npy

        batch = self._all_patches()
        if inputs:
            if self.state.model_info is None:
                raise PatchSettingsError("Open a model first: model inputs depend on its input mapping.")
            if self._fit_error:
                raise PatchSettingsError(self._fit_error)
            feed = plan_feed(self.state.model_info, self._mappings())
            m, shape = next(iter(feed.patch_inputs.values()))
            batch = prepare_patches(batch, self.state.image.value_max, m, shape)
        export_npy(path, batch)
        return batch

    def export_csv(self, path: str | Path) -> None:
        """Write the per-patch table (probabilities, occlusion drops) as CSV."""
        from maskviewer.io.patch_export import export_table_csv

        table = self.table()
        if table is None:
            raise PatchSettingsError("Run all patches first: the table holds their predictions.")
        export_table_csv(path, *table)

    def _export(self, title: str, fn, *args) -> None:
        try:
            fn(*args)
        except (MaskviewerError, OSError, ValueError) as exc:
            self.window.show_error(title, str(exc))
            return
        self.window.statusBar().showMessage(f"{title}: written to {args[0]}", 8000)

    def export_png_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Folder for the patch PNGs", self.controller.last_dir())
        if folder:
            self._export("Export patches", self.export_pngs, folder)

    def export_npy_dialog(self, inputs: bool = False) -> None:
        title = "Save model inputs" if inputs else "Save patches"
        path, _ = QFileDialog.getSaveFileName(
            self.window, title, str(Path(self.controller.last_dir()) / ("patch_inputs.npy" if inputs else "patches.npy")),
            "NumPy (*.npy)",
        )
        if path:
            self._export(title, self.export_npy, path, inputs)

    def export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save patch table", str(Path(self.controller.last_dir()) / "patches.csv"), "CSV (*.csv)"
        )
        if path:
            self._export("Export patch table", self.export_csv, path)

    def export_items(self) -> list:
        """The patch map shown and the run's numbers, for File → Export."""
        from maskviewer.gui.export_tool import patch_items

        return patch_items(self)


def _levels(arr: np.ndarray, scale: str) -> tuple[float, float]:
    """Display levels for a model input: the scaling's own range, the data's for mean/std and raw."""
    fixed = {"0..1": (0.0, 1.0), "0..255": (0.0, 255.0), "-1..1": (-1.0, 1.0)}
    if scale in fixed:
        return fixed[scale]
    finite = arr[np.isfinite(arr)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def install(window) -> PatchTool:
    """Add the Patches dock, its canvas overlays and menu actions to ``window``."""
    return PatchTool(window)

