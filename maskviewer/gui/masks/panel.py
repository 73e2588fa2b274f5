"""The Masks dock (mask list, display, paint tools, brush, feeding) and the ablation table.

Widgets only: :meth:`MasksPanel.bind` ties them to a :class:`~maskviewer.gui.masks.model.MasksModel`
(both ways); the buttons that need a dialog (add, rename, delete, colour, load, save, ablation)
are connected by the tool.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.mask_feed import ABLATION_LABELS, ABLATIONS, AblationRow, MaskFeed
from maskviewer.gui.masks.model import TOOLS, MasksModel, mask_label

_NAME_ROLE = Qt.ItemDataRole.UserRole
_SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the ablation table's sort keys


def color_icon(rgb: tuple[int, int, int], size: int = 14) -> QIcon:
    """A square swatch of ``rgb``, for the mask list."""
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


def _spin(low: float, high: float, step: float, value: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _buttons(layout: QVBoxLayout, *buttons: QPushButton) -> None:
    row = QHBoxLayout()
    for b in buttons:
        row.addWidget(b)
    layout.addLayout(row)


class MasksPanel(QWidget):
    """Controls for the masks; :meth:`bind` connects them to the model."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model: MasksModel | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self._masks_box())
        lay.addWidget(self._tools_box())
        lay.addWidget(self._feed_box())
        lay.addStretch(1)

    def _masks_box(self) -> QGroupBox:
        box = QGroupBox("Masks of this image")
        mb = QVBoxLayout(box)
        self.mask_list = QListWidget()
        self.mask_list.setMaximumHeight(96)
        self.mask_list.setToolTip("Tick to show; select to paint on it")
        mb.addWidget(self.mask_list)
        self.add_button = QPushButton("Add")
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.color_button = QPushButton("Colour…")
        _buttons(mb, self.add_button, self.rename_button, self.delete_button, self.color_button)
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("Load a PNG or NPY mask into the selected mask (undoable)")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the selected mask as PNG or NPY")
        _buttons(mb, self.load_button, self.save_button)
        view = QFormLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.outline = QCheckBox("Outline only")
        view.addRow("Opacity", self.opacity)
        view.addRow("", self.outline)
        mb.addLayout(view)
        return box

    def _tools_box(self) -> QGroupBox:
        box = QGroupBox("Paint")
        tb = QVBoxLayout(box)
        grid = QGridLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QToolButton] = {}
        for i, (tool, label, key, tip) in enumerate(TOOLS):
            b = QToolButton()
            b.setText(f"{label} ({key})")
            b.setToolTip(tip)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setSizePolicy(b.sizePolicy().horizontalPolicy().Expanding, b.sizePolicy().verticalPolicy())
            self.tool_group.addButton(b)
            self.tool_buttons[tool] = b
            grid.addWidget(b, i // 4, i % 4)
        tb.addLayout(grid)
        form = QFormLayout()
        self.size = QSpinBox()
        self.size.setRange(1, 1000)
        self.size.setValue(20)
        self.size.setSuffix(" px")
        self.size.setToolTip("Brush diameter ([ and ] change it)")
        self.hardness = _spin(0.0, 1.0, 0.1, 1.0, "1: hard edge; lower: a soft edge over the outer part")
        self.intensity = _spin(0.0, 1.0, 0.1, 1.0, "Value painted (weighted masks), or how much the eraser removes")
        self.tolerance = _spin(0.0, 1.0, 0.05, 0.0, "Fill: include neighbours whose value differs by at most this")
        form.addRow("Size", self.size)
        form.addRow("Hardness", self.hardness)
        form.addRow("Intensity", self.intensity)
        form.addRow("Fill tolerance", self.tolerance)
        tb.addLayout(form)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last stroke or edit (Ctrl+Z)")
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.invert_button = QPushButton("Invert")
        self.clear_button = QPushButton("Clear")
        _buttons(tb, self.undo_button, self.redo_button, self.invert_button, self.clear_button)
        return box

    def _feed_box(self) -> QGroupBox:
        box = QGroupBox("Mask → model")
        fb = QFormLayout(box)
        self.feed_mode = QComboBox()
        self.feed_mode.setToolTip(
            "How the mask reaches the model: an extra channel, multiplied into the image, or a "
            "separate input. Remembered per model."
        )
        self.feed_mask = QComboBox()
        self.feed_mask.setToolTip("Which mask is fed")
        self.feed_note = QLabel("Open a model to feed the mask to it.")
        self.feed_note.setWordWrap(True)
        self.ablation_button = QPushButton("Run mask ablation")
        self.ablation_button.setToolTip(
            "Run the model with the painted mask, no mask, all ones, a random and the inverted "
            "mask, and compare"
        )
        fb.addRow("Feed", self.feed_mode)
        fb.addRow("Mask", self.feed_mask)
        fb.addRow(self.feed_note)
        fb.addRow(self.ablation_button)
        return box

    # -- binding -----------------------------------------------------------------------------------

    def bind(self, model: MasksModel) -> None:
        """Show ``model`` and send the user's changes to it."""
        self.model = m = model
        for tool, button in self.tool_buttons.items():
            button.clicked.connect(lambda _c=False, t=tool: m.paint.set_tool(t))
        self.mask_list.currentItemChanged.connect(self._list_selected)
        self.mask_list.itemChanged.connect(self._list_item_changed)
        self.opacity.valueChanged.connect(lambda v: m.paint.set_opacity(v / 100.0))
        self.outline.toggled.connect(m.paint.set_outline)
        self.size.valueChanged.connect(lambda v: m.paint.set_brush(size=v))
        self.hardness.valueChanged.connect(lambda v: m.paint.set_brush(hardness=v))
        self.intensity.valueChanged.connect(lambda v: m.paint.set_brush(intensity=v))
        self.tolerance.valueChanged.connect(lambda v: m.paint.set_brush(tolerance=v))
        self.undo_button.clicked.connect(m.undo)
        self.redo_button.clicked.connect(m.redo)
        self.invert_button.clicked.connect(m.invert)
        self.clear_button.clicked.connect(m.clear)
        self.feed_mode.currentIndexChanged.connect(self._feed_mode_picked)
        self.feed_mask.currentIndexChanged.connect(
            lambda _i: m.feeding.mask_picked(self.feed_mask.currentText()))
        m.maskset_changed.connect(self.show_all)
        m.masks_changed.connect(self.show_all)
        m.flags_changed.connect(self.show_labels)
        m.visibility_changed.connect(lambda _mask: self.show_labels())
        m.paint.tool_changed.connect(self.show_tool)
        m.paint.brush_changed.connect(self.show_brush)
        m.paint.display_changed.connect(self.show_display)
        m.feed_changed.connect(self.show_feed)
        self.show_all()

    def show_all(self) -> None:
        self.show_masks()
        self.show_feed()

    def show_masks(self) -> None:
        """Rebuild the list of the current image's masks."""
        ms = self.model.maskset if self.model is not None else None
        lw = self.mask_list
        lw.blockSignals(True)
        lw.clear()
        for mask in ms.masks if ms is not None else []:
            item = QListWidgetItem(color_icon(mask.color), mask_label(mask))
            item.setData(_NAME_ROLE, mask.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if mask.visible else Qt.CheckState.Unchecked)
            lw.addItem(item)
            if mask is ms.active:
                lw.setCurrentItem(item)
        lw.blockSignals(False)
        for b in (self.add_button, self.rename_button, self.delete_button,
                  self.color_button, self.load_button, self.save_button):
            b.setEnabled(ms is not None)
        self.show_feed_masks()

    def show_labels(self) -> None:
        """Mark the masks with unsaved painting, and tick the visible ones."""
        ms = self.model.maskset if self.model is not None else None
        if ms is None:
            return
        lw = self.mask_list
        lw.blockSignals(True)
        for i in range(lw.count()):
            item = lw.item(i)
            mask = ms.get(item.data(_NAME_ROLE))
            if mask is None:
                continue
            if item.text() != mask_label(mask):
                item.setText(mask_label(mask))
            check = Qt.CheckState.Checked if mask.visible else Qt.CheckState.Unchecked
            if item.checkState() != check:
                item.setCheckState(check)
        lw.blockSignals(False)

    def show_tool(self, tool: str) -> None:
        button = self.tool_buttons[tool]
        if not button.isChecked():
            button.setChecked(True)

    def show_brush(self) -> None:
        m = self.model.paint
        for spin, value in ((self.size, m.size), (self.hardness, m.hardness),
                            (self.intensity, m.intensity), (self.tolerance, m.tolerance)):
            if spin.value() != value:
                spin.setValue(value)

    def show_display(self) -> None:
        """The overlay opacity and outline setting (without sending them back)."""
        self.opacity.blockSignals(True)
        self.opacity.setValue(int(round(self.model.paint.opacity * 100)))
        self.opacity.blockSignals(False)
        self.outline.blockSignals(True)
        self.outline.setChecked(self.model.paint.outline)
        self.outline.blockSignals(False)

    def show_feed(self) -> None:
        """The ways to feed the model, the note about the current one and the masks to feed."""
        feeding = self.model.feeding
        choices, index, note = feeding.mode_choices()
        self.feed_mode.blockSignals(True)
        self.feed_mode.clear()
        for text, option in choices:
            self.feed_mode.addItem(text, option)
        self.feed_mode.setCurrentIndex(index)
        self.feed_note.setText(note)
        self.feed_mode.blockSignals(False)
        self.show_feed_masks()
        self.ablation_button.setEnabled(feeding.feed().mode != "none")

    def show_feed_masks(self) -> None:
        names, fed, enabled = self.model.feeding.mask_choices()
        fm = self.feed_mask
        fm.blockSignals(True)
        fm.clear()
        fm.addItems(names)
        if fed:
            fm.setCurrentText(fed)
        fm.setEnabled(enabled)
        fm.blockSignals(False)

    def _list_selected(self, current: QListWidgetItem | None, _prev=None) -> None:
        if current is not None:
            self.model.select(current.data(_NAME_ROLE))

    def _list_item_changed(self, item: QListWidgetItem) -> None:
        self.model.set_visible(item.data(_NAME_ROLE), item.checkState() == Qt.CheckState.Checked)

    def _feed_mode_picked(self, _index: int) -> None:
        option = self.feed_mode.currentData()
        if isinstance(option, MaskFeed):
            self.model.feeding.mode_picked(option, self.feed_mask.currentText())


def effect(row: AblationRow) -> float:
    """How much a row's output moves without the painted mask: the largest ``|Δ|`` of the variants."""
    return max((abs(row.delta(v)) for v in row.values if v != "painted"), default=0.0)


def _natural(text: str) -> tuple:
    """Sort key putting numeric entries ("2" before "10") in number order, before words."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text.lower())


class _SortItem(QTableWidgetItem):
    """A cell sorted by the key in its ``_SORT_ROLE`` (a number or a tuple), not by its text."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(_SORT_ROLE), other.data(_SORT_ROLE)
        if a is None or b is None or type(a) is not type(b):
            return super().__lt__(other)
        return a < b


class AblationPanel(QWidget):
    """The ablation table: outputs per mask variant, with the difference to the painted run.

    Rows come largest effect first (the entry the mask matters most for); a click on a column
    header sorts by it (entries by number, variants by their Δ, the painted run by its value).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.summary = QLabel("Run Mask → Mask Ablation to compare the model with and without the mask.")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSortIndicatorClearable(True)
        header.setToolTip("Rows: the largest change first. Click a column to sort by it.")
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        self.rows: list[AblationRow] = []

    def show_rows(self, rows: list[AblationRow], summary: str) -> None:
        """Fill the table: one row per output entry (largest effect first), one column per variant."""
        rows = sorted(rows, key=effect, reverse=True)  # stable: ties keep the model's order
        self.rows = rows
        self.summary.setText(summary)
        variants = [v for v in ABLATIONS if rows and v in rows[0].values]
        headers = ["Output", "Entry"] + [ABLATION_LABELS[v] for v in variants]
        t = self.table
        t.setSortingEnabled(False)  # filling a sorted table would move rows under our feet
        t.clear()
        t.setColumnCount(len(headers))
        t.setHorizontalHeaderLabels(headers)
        t.setRowCount(len(rows))
        biggest = max((effect(r) for r in rows), default=0.0) or 1.0
        for i, r in enumerate(rows):
            for col, text in ((0, r.output), (1, r.entry)):
                item = _SortItem(text)
                item.setData(_SORT_ROLE, _natural(text))
                t.setItem(i, col, item)
            for j, v in enumerate(variants):
                t.setItem(i, 2 + j, self._cell(r, v, biggest))
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.DescendingOrder)  # no column: by effect
        t.setSortingEnabled(True)

    @staticmethod
    def _cell(r: AblationRow, v: str, biggest: float) -> QTableWidgetItem:
        value = r.values[v]
        text = f"{value:.4g}" if v == "painted" else f"{value:.4g}  (Δ {r.delta(v):+.3g})"
        item = _SortItem(text)
        item.setData(_SORT_ROLE, float(value if v == "painted" else r.delta(v)))
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if v != "painted":
            t = float(np.clip(abs(r.delta(v)) / biggest, 0.0, 1.0))
            # stronger tint for larger differences: red where the output drops, green up
            base = (220, 60, 60) if r.delta(v) < 0 else (60, 170, 80)
            color = QColor(*base)
            color.setAlpha(int(30 + 140 * t) if abs(r.delta(v)) > 0 else 0)
            item.setBackground(QBrush(color))
        return item
