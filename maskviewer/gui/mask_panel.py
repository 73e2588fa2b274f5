"""The Masks dock (mask list, display, tools, brush, feeding) and the ablation table.

Widgets only: :mod:`maskviewer.gui.mask_tool` connects them to the masks and the model.
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
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.mask_feed import ABLATION_LABELS, ABLATIONS, AblationRow

#: (tool id, label, shortcut, tooltip)
TOOLS = (
    ("pan", "Pan", "H", "Pan and zoom the image (H)"),
    ("brush", "Brush", "B", "Paint with a round brush (B); Shift: erase"),
    ("eraser", "Eraser", "E", "Erase with a round brush (E)"),
    ("fill", "Fill", "F", "Flood-fill the connected region (F); Shift: fill with 0"),
    ("rectangle", "Rect", "R", "Drag a rectangle (R); Shift: erase"),
    ("ellipse", "Ellipse", "O", "Drag an ellipse (O); Shift: erase"),
    ("lasso", "Lasso", "L", "Drag a freehand lasso, or click polygon corners and double-click "
     "to close (L); Shift: erase"),
)


def color_icon(rgb: tuple[int, int, int], size: int = 14) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class MasksPanel(QWidget):
    """Controls for the masks; the tool reads and connects the public widgets."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        # masks of this image
        masks_box = QGroupBox("Masks of this image")
        mb = QVBoxLayout(masks_box)
        self.mask_list = QListWidget()
        self.mask_list.setMaximumHeight(96)
        self.mask_list.setToolTip("Tick to show; select to paint on it")
        mb.addWidget(self.mask_list)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.color_button = QPushButton("Colour…")
        for b in (self.add_button, self.rename_button, self.delete_button, self.color_button):
            row.addWidget(b)
        mb.addLayout(row)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("Load a PNG or NPY mask into the selected mask (undoable)")
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save the selected mask as PNG or NPY")
        row.addWidget(self.load_button)
        row.addWidget(self.save_button)
        mb.addLayout(row)
        view = QFormLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.outline = QCheckBox("Outline only")
        view.addRow("Opacity", self.opacity)
        view.addRow("", self.outline)
        mb.addLayout(view)
        lay.addWidget(masks_box)

        # tools
        tools_box = QGroupBox("Paint")
        tb = QVBoxLayout(tools_box)
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
        self.hardness = QDoubleSpinBox()
        self.hardness.setRange(0.0, 1.0)
        self.hardness.setSingleStep(0.1)
        self.hardness.setValue(1.0)
        self.hardness.setToolTip("1: hard edge; lower: a soft edge over the outer part")
        self.intensity = QDoubleSpinBox()
        self.intensity.setRange(0.0, 1.0)
        self.intensity.setSingleStep(0.1)
        self.intensity.setValue(1.0)
        self.intensity.setToolTip("Value painted (weighted masks), or how much the eraser removes")
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.0, 1.0)
        self.tolerance.setSingleStep(0.05)
        self.tolerance.setToolTip("Fill: include neighbours whose value differs by at most this")
        form.addRow("Size", self.size)
        form.addRow("Hardness", self.hardness)
        form.addRow("Intensity", self.intensity)
        form.addRow("Fill tolerance", self.tolerance)
        tb.addLayout(form)
        row = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last stroke or edit (Ctrl+Z)")
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.invert_button = QPushButton("Invert")
        self.clear_button = QPushButton("Clear")
        for b in (self.undo_button, self.redo_button, self.invert_button, self.clear_button):
            row.addWidget(b)
        tb.addLayout(row)
        lay.addWidget(tools_box)

        # feeding the model
        feed_box = QGroupBox("Mask → model")
        fb = QFormLayout(feed_box)
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
        lay.addWidget(feed_box)
        lay.addStretch(1)


class AblationPanel(QWidget):
    """The ablation table: outputs per mask variant, with the difference to the painted run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.summary = QLabel("Run Mask → Mask Ablation to compare the model with and without the mask.")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        self.rows: list[AblationRow] = []

    def show_rows(self, rows: list[AblationRow], summary: str) -> None:
        self.rows = rows
        self.summary.setText(summary)
        variants = [v for v in ABLATIONS if rows and v in rows[0].values]
        headers = ["Output", "Entry"] + [ABLATION_LABELS[v] for v in variants]
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        biggest = max((abs(r.delta(v)) for r in rows for v in variants), default=0.0) or 1.0
        for i, r in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(r.output))
            self.table.setItem(i, 1, QTableWidgetItem(r.entry))
            for j, v in enumerate(variants):
                value = r.values[v]
                if v == "painted":
                    text = f"{value:.4g}"
                else:
                    text = f"{value:.4g}  (Δ {r.delta(v):+.3g})"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if v != "painted":
                    t = float(np.clip(abs(r.delta(v)) / biggest, 0.0, 1.0))
                    # stronger tint for larger differences: red where the output drops, green up
                    base = (220, 60, 60) if r.delta(v) < 0 else (60, 170, 80)
                    color = QColor(*base)
                    color.setAlpha(int(30 + 140 * t) if abs(r.delta(v)) > 0 else 0)
                    item.setBackground(QBrush(color))
                self.table.setItem(i, 2 + j, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
