"""The Kernels dock: layer choice, the kernel grid, the NxN mask editor and Apply / Reset.

Bound to a :class:`~maskviewer.gui.kernels.model.KernelsModel`: a click on a cell or a button
changes the model; the model's events redraw the widgets. Apply and Reset are jobs, which the
tool wires (:attr:`KernelPanel.apply`, :attr:`KernelPanel.reset`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
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

from maskviewer.gui.kernels.model import KernelsModel, kernel_grid, kernel_note

GRID_NOTE = "Rows: input channels · columns: filters · blue < 0 < red"
CELL_STYLE = (
    "QToolButton { background: #404040; border: 1px solid #202020; }"
    "QToolButton:checked { background: #f0f0f0; }"
)


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
        self.grid_view = pg.GraphicsLayoutWidget()
        self.grid_view.setBackground("#303030")
        self.grid_view.setMinimumHeight(160)
        self.view = self.grid_view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        lay.addWidget(self.grid_view, 1)
        self.grid_note = QLabel(GRID_NOTE)
        self.grid_note.setWordWrap(True)
        lay.addWidget(self.grid_note)
        box = QGroupBox("Kernel mask (click cells to switch them off)")
        self.mask_layout = QGridLayout(box)
        self.mask_layout.setSpacing(2)
        self.mask_layout.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        lay.addWidget(box)
        row = QHBoxLayout()
        self.all_on = QPushButton("All on")
        self.invert = QPushButton("Invert")
        self.apply = QPushButton("Apply to a copy")
        self.apply.setToolTip("Multiply this layer's kernels by the mask in a copy of the model; "
                              "the file is not changed")
        self.reset = QPushButton("Reset")
        self.reset.setToolTip("Run the model as loaded again")
        for b in (self.all_on, self.invert, self.apply, self.reset):
            row.addWidget(b)
        lay.addLayout(row)
        self.status = QLabel(model.status)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.cells: list[list[QToolButton]] = []
        self._bind()

    def _bind(self) -> None:
        m = self.model
        self.layer.currentIndexChanged.connect(lambda _i: self._updating or m.select_layer(self.layer.currentData()))
        self.all_on.clicked.connect(m.all_on)
        self.invert.clicked.connect(m.invert)
        m.layers_changed.connect(self._fill_layers)
        m.mask_changed.connect(self._show_mask)
        m.kernel_changed.connect(self._show_kernel)
        m.status_changed.connect(self.status.setText)

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
        for b in (self.apply, self.reset, self.all_on, self.invert):
            b.setEnabled(bool(m.layers))
        if m.kernel is None:
            self.image.clear()

    def _show_mask(self) -> None:
        mask = self.model.mask
        if mask.shape != (len(self.cells), len(self.cells[0]) if self.cells else 0):
            self._make_cells(*mask.shape)
        for i, row in enumerate(self.cells):
            for j, b in enumerate(row):
                b.setChecked(bool(mask[i, j] != 0))

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
                b.setFixedSize(22, 22)
                b.setStyleSheet(CELL_STYLE)
                b.setToolTip(f"row {i}, column {j}")
                b.toggled.connect(lambda on, i=i, j=j: self.model.set_cell(i, j, on))
                self.mask_layout.addWidget(b, i, j)
                row.append(b)
            self.cells.append(row)

    def _show_kernel(self) -> None:
        m = self.model
        self.image.setImage(kernel_grid(m.kernel), autoLevels=False, levels=(0, 255))
        self.view.autoRange(padding=0.02)
        self.grid_note.setText(kernel_note(m.layer_path, m.kernel.shape))
