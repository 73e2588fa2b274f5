"""The Kernels dock: layer choice, the kernel grid with its colour bar, the NxN mask editor and
Apply / Reset.

Bound to a :class:`~maskviewer.gui.kernels.model.KernelsModel`: a click on a cell or a button
changes the model; the model's events redraw the widgets. Apply and Reset are jobs, which the
tool wires (:attr:`KernelPanel.apply`, :attr:`KernelPanel.reset`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.gui.empty_state import EmptyState
from maskviewer.gui.kernels.model import (
    GAP,
    LUT,
    KernelGrid,
    KernelsModel,
    grid_layout,
    kernel_grid,
    kernel_note,
)

GRID_NOTE = "Each tile is one filter · blue < 0 < red (white = 0)"
CELL = 26  # pixels per cell of the mask editor
ON_COLOUR, OFF_COLOUR = "#f2f2f2", "#2a2a2a"
CELL_STYLE = (
    f"QToolButton {{ background: {OFF_COLOUR}; color: #ff6060; border: 1px solid #101010; "
    "font-weight: bold; }"
    f"QToolButton:checked {{ background: {ON_COLOUR}; border: 1px solid #909090; }}"
)
MASK_LEGEND = (
    f'<span style="color: #606060;"><b>□</b></span> on: the tap '
    f'is used &nbsp; <span style="background: {OFF_COLOUR}; color: #ff6060;"><b>&nbsp;✕&nbsp;</b></span> off: the '
    "tap is set to 0 (dimmed and crossed out in the kernels above)"
)
MAX_BOX = 380  # most pixels the kernel box is tall
ASPECTS = (0.75, 1.34)  # the grid stays near-square whatever the box's shape
COLOUR_MAP = pg.ColorMap(np.linspace(0.0, 1.0, len(LUT)), LUT)


class KernelPanel(QWidget):
    """Layer choice, the kernel grid, the NxN mask editor and Apply / Reset."""

    def __init__(self, model: KernelsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._updating = False  # copying the model into the widgets: do not copy back
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.layer = QComboBox()
        self.layer.setToolTip("A Conv2D layer of the model")
        lay.addWidget(self.layer)
        self._make_grid_view()
        self.grid_box = EmptyState(self.grid_view, model.empty_text())
        self.grid_box.setMinimumHeight(220)
        self.grid_box.setMaximumHeight(MAX_BOX)  # a near-square grid: no large empty box around it
        lay.addWidget(self.grid_box, 1)
        self.grid_note = QLabel(GRID_NOTE)
        self.grid_note.setWordWrap(True)
        lay.addWidget(self.grid_note)
        lay.addWidget(self._make_mask_box())
        self.apply = QPushButton("Apply to a copy")
        self.apply.setToolTip("Multiply this layer's kernels by the mask in a copy of the model; "
                              "the file is not changed")
        self.reset = QPushButton("Reset")
        self.reset.setToolTip("Run the model as loaded again")
        row = QHBoxLayout()
        row.addWidget(self.apply, 1)
        row.addWidget(self.reset)
        lay.addLayout(row)
        self.status = QLabel(model.status)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)  # spare height goes below, not into the mask editor
        self.cells: list[list[QToolButton]] = []
        self.grid: KernelGrid | None = None  # the picture drawn
        self._bind()

    def _make_mask_box(self) -> QGroupBox:
        """The NxN editor of the kernel mask, its legend, All on and Invert."""
        box = QGroupBox("Kernel mask (click cells to switch taps off)")
        box_lay = QVBoxLayout(box)
        self.mask_layout = QGridLayout()
        self.mask_layout.setSpacing(2)
        self.mask_layout.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.all_on = QPushButton("All on")
        self.invert = QPushButton("Invert")
        buttons = QVBoxLayout()
        buttons.addWidget(self.all_on)
        buttons.addWidget(self.invert)
        buttons.addStretch(1)
        top = QHBoxLayout()
        top.addLayout(self.mask_layout, 1)
        top.addLayout(buttons)
        box_lay.addLayout(top)
        self.mask_legend = QLabel(MASK_LEGEND)
        self.mask_legend.setTextFormat(Qt.TextFormat.RichText)
        self.mask_legend.setWordWrap(True)
        box_lay.addWidget(self.mask_legend)
        return box

    def _make_grid_view(self) -> None:
        """The kernel picture and, beside it, a colour bar of the layer's weight range."""
        self.grid_view = pg.GraphicsLayoutWidget()
        self.grid_view.setBackground(GAP)
        self.view = self.grid_view.addViewBox(row=0, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.color_bar = pg.ColorBarItem(
            values=(-1.0, 1.0), colorMap=COLOUR_MAP, interactive=False, width=14, label="weight"
        )
        self.grid_view.addItem(self.color_bar, row=0, col=1)
        self.grid_view.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        # the tiles are laid out for the box's shape: look again when it changes
        if obj is self.grid_view and event.type() == QEvent.Type.Resize and self.model.kernel is not None:
            grid = self.grid
            if grid is None or (grid.rows, grid.cols) != self._layout_for_box():
                self._show_kernel()
        return False

    def _box_aspect(self) -> float:
        w, h = self.view.width(), self.view.height()
        return float(np.clip(w / h, *ASPECTS)) if w > 1 and h > 1 else 1.0

    def _layout_for_box(self) -> tuple[int, int]:
        return grid_layout(self.model.kernel.shape, self._box_aspect())

    def _bind(self) -> None:
        m = self.model
        self.layer.currentIndexChanged.connect(lambda _i: self._updating or m.select_layer(self.layer.currentData()))
        self.all_on.clicked.connect(m.all_on)
        self.invert.clicked.connect(m.invert)
        m.layers_changed.connect(self._fill_layers)
        m.mask_changed.connect(self._show_mask)
        m.kernel_changed.connect(self._show_kernel)
        m.status_changed.connect(self._show_status)

    def _show_status(self, text: str) -> None:
        self.status.setText(text)
        if self.model.kernel is None or self.model.problem:
            self.grid_box.set_empty(True, self.model.empty_text())

    def mask(self) -> np.ndarray:
        """The mask in the editor (1 = on, 0 = off)."""
        return self.model.mask.copy()

    def set_mask(self, mask: np.ndarray) -> None:
        self.model.set_mask(mask)

    # -- model -> widgets ------------------------------------------------------------------------

    def _fill_layers(self) -> None:
        m = self.model
        self._updating = True
        try:
            self.layer.clear()
            for path in m.layers:
                self.layer.addItem(path, path)
            self.layer.setCurrentIndex(self.layer.findData(m.selected))
        finally:
            self._updating = False
        self.layer.setEnabled(bool(m.layers))
        for b in (self.apply, self.reset, self.all_on, self.invert):
            b.setEnabled(bool(m.layers))
        if m.kernel is None:
            self.image.clear()
            self.grid = None
        self.grid_box.set_empty(m.kernel is None, m.empty_text())

    def _show_mask(self) -> None:
        mask = self.model.mask
        if mask.shape != (len(self.cells), len(self.cells[0]) if self.cells else 0):
            self._make_cells(*mask.shape)
        for i, row in enumerate(self.cells):
            for j, b in enumerate(row):
                on = bool(mask[i, j] != 0)
                b.setChecked(on)
                b.setText("" if on else "✕")
        if self.model.kernel is not None:  # the kernels show which taps are off
            self._show_kernel()

    def _make_cells(self, kh: int, kw: int) -> None:
        for row in self.cells:
            for b in row:
                self.mask_layout.removeWidget(b)
                b.deleteLater()
        self.cells = []
        for i in range(kh):
            row = []
            for j in range(kw):
                b = QToolButton()
                b.setCheckable(True)
                b.setChecked(True)
                b.setFixedSize(CELL, CELL)
                b.setStyleSheet(CELL_STYLE)
                b.setToolTip(f"row {i}, column {j}")
                b.toggled.connect(lambda on, i=i, j=j: self.model.set_cell(i, j, on))
                self.mask_layout.addWidget(b, i, j)
                row.append(b)
            self.cells.append(row)

    def _show_kernel(self) -> None:
        m = self.model
        if m.kernel is None:
            return
        self.grid = grid = kernel_grid(m.kernel, m.mask if m.mask.size else None, self._box_aspect())
        self.grid_box.set_empty(False)
        self.image.setImage(grid.rgb, autoLevels=False, levels=(0, 255))
        self.color_bar.setLevels((-grid.scale, grid.scale))
        self.view.autoRange(padding=0.02)
        self.grid_note.setText(kernel_note(m.layer_path, m.kernel.shape))

