"""The kernels tool: view a Conv2D layer's kernels and mask them with an NxN pattern.

The mask is applied to a copy of the loaded model (see ``maskviewer.inference.kernel_mask``);
the model runs the copy, so predictions and activations show the effect, until Reset. The
file and the loaded model are never changed.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
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

WEIGHTS_KIND = "kernel-weights"
APPLY_KIND = "kernel-apply"
RESET_KIND = "kernel-reset"
CONV_CLASSES = ("Conv2D", "MaskedConv2D")
#: Most input/output channels drawn in the grid (the rest are named in the note).
MAX_GRID = 16


def _diverging_lut() -> np.ndarray:
    """256 RGB entries: blue (negative) - white (0) - red (positive)."""
    t = np.linspace(-1.0, 1.0, 256)
    r = np.where(t < 0, 1.0 + t, 1.0)
    b = np.where(t > 0, 1.0 - t, 1.0)
    g = 1.0 - np.abs(t)
    lut = np.stack([r * 0.85 + 0.15 * (t > 0), g, b * 0.85 + 0.15 * (t < 0)], axis=1)
    return (np.clip(lut, 0, 1) * 255).astype(np.uint8)


LUT = _diverging_lut()


def kernel_grid(kernel: np.ndarray, max_grid: int = MAX_GRID, cell: int = 0) -> np.ndarray:
    """The kernels as one RGB image: rows = input channels, columns = output channels.

    Each ``kh x kw`` kernel is drawn with a blue-white-red scale symmetric around 0 (shared by
    all kernels of the layer), one grey pixel between kernels.
    """
    kh, kw, cin, cout = kernel.shape
    ni, no = min(cin, max_grid), min(cout, max_grid)
    k = kernel[:, :, :ni, :no].astype(np.float64)
    scale = float(np.max(np.abs(kernel))) or 1.0
    idx = np.clip(np.round((k / scale + 1.0) * 127.5), 0, 255).astype(np.intp)
    gap = 1
    h = ni * (kh + gap) - gap
    w = no * (kw + gap) - gap
    out = np.full((h, w, 3), 70, dtype=np.uint8)
    for i in range(ni):
        for o in range(no):
            y, x = i * (kh + gap), o * (kw + gap)
            out[y : y + kh, x : x + kw] = LUT[idx[:, :, i, o]]
    return out


class KernelPanel(QWidget):
    """Layer choice, the kernel grid, the NxN mask editor and Apply / Reset."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        self.grid_note = QLabel("Rows: input channels · columns: filters · blue < 0 < red")
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
        self.status = QLabel("Model as loaded.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.cells: list[list[QToolButton]] = []

    def set_mask_size(self, kh: int, kw: int) -> None:
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
                b.setStyleSheet(
                    "QToolButton { background: #404040; border: 1px solid #202020; }"
                    "QToolButton:checked { background: #f0f0f0; }"
                )
                b.setToolTip(f"row {i}, column {j}")
                self.mask_layout.addWidget(b, i, j)
                row.append(b)
            self.cells.append(row)

    def mask(self) -> np.ndarray:
        return np.array([[1.0 if b.isChecked() else 0.0 for b in row] for row in self.cells],
                        dtype=np.float32)

    def set_mask(self, mask: np.ndarray) -> None:
        for i, row in enumerate(self.cells):
            for j, b in enumerate(row):
                b.setChecked(bool(mask[i, j] != 0))


class KernelTool(QObject):
    """Wires the kernel panel to the model host (jobs on the inference thread)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.panel = KernelPanel()
        self.dock = window.add_panel("Kernels", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        masks_dock = window.docks.get("Masks")
        if masks_dock is not None:  # share the right column with the masks, as tabs
            window.tabifyDockWidget(masks_dock, self.dock)
            masks_dock.raise_()
        self.kernel: np.ndarray | None = None
        self.layer_path: str | None = None
        self.applied: tuple[str, np.ndarray] | None = None
        p = self.panel
        p.layer.currentIndexChanged.connect(lambda _i: self.show_layer(p.layer.currentData()))
        p.all_on.clicked.connect(lambda: p.set_mask(np.ones((len(p.cells), len(p.cells[0]) if p.cells else 0))))
        p.invert.clicked.connect(lambda: p.set_mask(1.0 - p.mask()) if p.cells else None)
        p.apply.clicked.connect(lambda: self.apply_mask())
        p.reset.clicked.connect(self.reset)
        self.state.model_changed.connect(self._model_changed)
        w = self.controller.worker
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        self._model_changed(self.state.model_info)

    def conv_layers(self) -> list[str]:
        info = self.state.model_info
        if info is None or not info.probe_supported:
            return []
        return [layer.path for layer in info.iter_layers() if layer.class_name in CONV_CLASSES]

    def _model_changed(self, info) -> None:
        p = self.panel
        self.kernel, self.layer_path, self.applied = None, None, None
        p.image.clear()
        p.set_mask_size(0, 0)
        p.layer.blockSignals(True)
        p.layer.clear()
        paths = self.conv_layers()
        for path in paths:
            p.layer.addItem(path, path)
        p.layer.blockSignals(False)
        enabled = bool(paths)
        for b in (p.apply, p.reset, p.all_on, p.invert):
            b.setEnabled(enabled)
        if info is None:
            p.status.setText("Open a model to see its Conv2D kernels.")
        elif not paths:
            p.status.setText("This model has no Conv2D layer to mask (or its layers cannot be read).")
        else:
            p.status.setText("Model as loaded.")
            self.show_layer(paths[0])

    def show_layer(self, path: str | None) -> int | None:
        """Fetch and draw the kernels of ``path`` (a job)."""
        if not path:
            return None

        def job(ctx):
            from maskviewer.inference.kernel_mask import applied_kernel_mask, kernel_weights

            return path, kernel_weights(ctx.host.model, path), applied_kernel_mask(ctx.host)

        return self.controller.submit(WEIGHTS_KIND, job)

    def apply_mask(self, mask: np.ndarray | None = None) -> int | None:
        """Mask the selected layer's kernels in a copy of the model (a job); then re-predict."""
        path = self.panel.layer.currentData()
        if not path:
            self.window.show_error("Kernel mask", "Pick a Conv2D layer first.")
            return None
        if mask is None:
            mask = self.panel.mask()
        else:  # given by a caller: show it in the editor too
            mask = np.asarray(mask, np.float32)
            cells = self.panel.cells
            if cells and mask.shape == (len(cells), len(cells[0])):
                self.panel.set_mask(mask)

        def job(ctx):
            from maskviewer.inference.kernel_mask import apply_kernel_mask

            return path, apply_kernel_mask(ctx.host, path, mask), (path, mask)

        self.panel.status.setText("Applying the kernel mask to a copy of the model…")
        return self.controller.submit(APPLY_KIND, job)

    def reset(self) -> int | None:
        """Run the model as loaded again (a job)."""
        path = self.panel.layer.currentData()

        def job(ctx):
            from maskviewer.inference.kernel_mask import kernel_weights, reset_kernel_mask

            reset_kernel_mask(ctx.host)
            return path, (kernel_weights(ctx.host.model, path) if path else None), None

        return self.controller.submit(RESET_KIND, job)

    def _job_finished(self, kind: str, generation: int, result) -> None:
        if kind not in (WEIGHTS_KIND, APPLY_KIND, RESET_KIND):
            return
        if not self.controller.is_latest(kind, generation):
            return
        path, kernel, applied = result
        self.applied = applied
        if kernel is not None and path == self.panel.layer.currentData():
            self._draw(path, kernel)
        p = self.panel
        if applied is None:
            p.status.setText("Model as loaded.")
        else:
            apath, amask = applied
            off = int(np.sum(amask == 0))
            p.status.setText(
                f"Running a copy of the model with layer {apath!r} masked ({off} of {amask.size} "
                "kernel positions off). The model file is unchanged; Reset to undo."
            )
            if apath == path and p.cells and amask.shape == (len(p.cells), len(p.cells[0])):
                p.set_mask(amask)
        if kind in (APPLY_KIND, RESET_KIND):
            self.controller.schedule_prediction()

    def _job_failed(self, kind: str, generation: int, message: str, _exc) -> None:
        if kind in (WEIGHTS_KIND, APPLY_KIND, RESET_KIND) and self.controller.is_latest(kind, generation):
            self.panel.status.setText(message)
            if kind != WEIGHTS_KIND:
                self.window.show_error("Kernel mask", message)

    def _draw(self, path: str, kernel: np.ndarray) -> None:
        p = self.panel
        kh, kw, cin, cout = kernel.shape
        if path != self.layer_path or len(p.cells) != kh or (p.cells and len(p.cells[0]) != kw):
            p.set_mask_size(kh, kw)
        self.kernel, self.layer_path = kernel, path
        p.image.setImage(kernel_grid(kernel), autoLevels=False, levels=(0, 255))
        p.view.autoRange(padding=0.02)
        more = []
        if cin > MAX_GRID:
            more.append(f"first {MAX_GRID} of {cin} input channels")
        if cout > MAX_GRID:
            more.append(f"first {MAX_GRID} of {cout} filters")
        p.grid_note.setText(
            f"{path}: {kh}×{kw} kernels, {cin} input channels × {cout} filters. Rows: input "
            "channels · columns: filters · blue < 0 < red (white = 0)"
            + (f" · showing {', '.join(more)}" if more else "")
        )


def install(window) -> KernelTool:
    """Add the Kernels dock."""
    return KernelTool(window)
