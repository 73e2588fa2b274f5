"""The Kernels tool's state, Qt-free: a Conv2D layer's kernels and the NxN mask over them.

:class:`KernelsModel` holds the model's Conv2D layers, the one chosen, its kernels (as the
last job read them), the kernel-cell mask being edited and the mask applied to the running
copy of the model, if any. The jobs that read, apply and reset the mask are plain functions
here too; :mod:`maskviewer.gui.kernels.tool` submits them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskviewer.core.events import Event

WEIGHTS_KIND = "kernel-weights"
APPLY_KIND = "kernel-apply"
RESET_KIND = "kernel-reset"
KINDS = (WEIGHTS_KIND, APPLY_KIND, RESET_KIND)
CONV_CLASSES = ("Conv2D", "MaskedConv2D")
#: Most input/output channels drawn in the grid (the rest are named in the note).
MAX_GRID = 16
AS_LOADED = "Model as loaded."


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


def kernel_note(path: str, shape: tuple[int, ...]) -> str:
    """The caption under a layer's kernel grid."""
    kh, kw, cin, cout = shape
    more = []
    if cin > MAX_GRID:
        more.append(f"first {MAX_GRID} of {cin} input channels")
    if cout > MAX_GRID:
        more.append(f"first {MAX_GRID} of {cout} filters")
    return (
        f"{path}: {kh}×{kw} kernels, {cin} input channels × {cout} filters. Rows: input "
        "channels · columns: filters · blue < 0 < red (white = 0)"
        + (f" · showing {', '.join(more)}" if more else "")
    )


# -- the jobs (inference thread) -------------------------------------------------------------------


def weights_job(path: str):
    """A job reading ``path``'s kernels and the mask applied now: ``(path, kernel, applied)``."""

    def job(ctx: Any) -> tuple:
        from maskviewer.inference.kernel_mask import applied_kernel_mask, kernel_weights

        return path, kernel_weights(ctx.host.model, path), applied_kernel_mask(ctx.host)

    return job


def apply_job(path: str, mask: np.ndarray):
    """A job masking ``path``'s kernels in a copy of the model: ``(path, kernel, (path, mask))``."""

    def job(ctx: Any) -> tuple:
        from maskviewer.inference.kernel_mask import apply_kernel_mask

        return path, apply_kernel_mask(ctx.host, path, mask), (path, mask)

    return job


def reset_job(path: str | None):
    """A job running the model as loaded again: ``(path, kernel or None, None)``."""

    def job(ctx: Any) -> tuple:
        from maskviewer.inference.kernel_mask import kernel_weights, reset_kernel_mask

        reset_kernel_mask(ctx.host)
        return path, (kernel_weights(ctx.host.model, path) if path else None), None

    return job


class KernelsModel:
    """The Kernels tool's state and actions.

    Events
    ------
    layers_changed()
        The list of Conv2D layers was replaced (a model was loaded or closed).
    selection_changed(path)
        Another layer was chosen: its kernels are to be read.
    kernel_changed()
        New kernels to draw (:attr:`kernel` of :attr:`layer_path`).
    mask_changed()
        The mask being edited changed (its size too, for a layer of another kernel size).
    status_changed(text)
        The line saying which model runs.
    """

    def __init__(self) -> None:
        self.layers: list[str] = []
        self.selected: str | None = None
        self.kernel: np.ndarray | None = None
        self.layer_path: str | None = None  # the layer whose kernels are drawn
        self.mask = np.ones((0, 0), np.float32)
        self.applied: tuple[str, np.ndarray] | None = None
        self.status = AS_LOADED
        self.layers_changed = Event()
        self.selection_changed = Event()
        self.kernel_changed = Event()
        self.mask_changed = Event()
        self.status_changed = Event()

    # -- layers ------------------------------------------------------------------------------------

    @staticmethod
    def conv_layers(info: Any) -> list[str]:
        """The paths of ``info``'s Conv2D layers (none when its layers cannot be read)."""
        if info is None or not info.probe_supported:
            return []
        return [layer.path for layer in info.iter_layers() if layer.class_name in CONV_CLASSES]

    def set_model(self, info: Any) -> str | None:
        """Forget the model before; returns the first Conv2D layer of ``info`` (selected), if any."""
        self.kernel, self.layer_path, self.applied = None, None, None
        self.layers = self.conv_layers(info)
        self.selected = self.layers[0] if self.layers else None
        self.mask = np.ones((0, 0), np.float32)
        self.layers_changed.emit()
        self.mask_changed.emit()
        if info is None:
            self.set_status("Open a model to see its Conv2D kernels.")
        elif not self.layers:
            self.set_status("This model has no Conv2D layer to mask (or its layers cannot be read).")
        else:
            self.set_status(AS_LOADED)
        return self.selected

    def select_layer(self, path: str | None) -> bool:
        """Choose a listed layer; True when the choice changed (its kernels are to be read)."""
        if path == self.selected or (path is not None and path not in self.layers):
            return False
        self.selected = path
        self.selection_changed.emit(path)
        return True

    # -- the mask ----------------------------------------------------------------------------------

    def set_mask(self, mask: np.ndarray) -> None:
        """Put ``mask`` (the size of the kernels, nonzero = on) in the editor."""
        mask = np.asarray(mask)
        if mask.shape != self.mask.shape:
            raise ValueError(f"the mask is {self.mask.shape}, not {mask.shape}")
        self.mask = (mask != 0).astype(np.float32)
        self.mask_changed.emit()

    def set_cell(self, row: int, col: int, on: bool) -> None:
        """Switch one kernel position on or off."""
        if bool(self.mask[row, col]) != bool(on):
            self.mask[row, col] = 1.0 if on else 0.0
            self.mask_changed.emit()

    def all_on(self) -> None:
        self.set_mask(np.ones_like(self.mask))

    def invert(self) -> None:
        if self.mask.size:
            self.set_mask(1.0 - self.mask)

    def mask_to_apply(self, mask: np.ndarray | None = None) -> np.ndarray:
        """The mask an Apply sends: the editor's, or ``mask`` (then shown in the editor)."""
        if mask is None:
            return self.mask.copy()
        mask = np.asarray(mask, np.float32)
        if self.mask.size and mask.shape == self.mask.shape:
            self.set_mask(mask)
        return mask

    # -- job results -------------------------------------------------------------------------------

    def job_done(self, result: tuple) -> None:
        """Take a job's ``(path, kernel, applied)``: draw the kernels, say what runs now."""
        path, kernel, applied = result
        self.applied = applied
        if kernel is not None and path == self.selected:
            self._show_kernel(path, kernel)
        if applied is None:
            self.set_status(AS_LOADED)
            return
        apath, amask = applied
        off = int(np.sum(amask == 0))
        self.set_status(
            f"Running a copy of the model with layer {apath!r} masked ({off} of {amask.size} "
            "kernel positions off). The model file is unchanged; Reset to undo."
        )
        if apath == path and self.mask.size and amask.shape == self.mask.shape:
            self.set_mask(amask)

    def _show_kernel(self, path: str, kernel: np.ndarray) -> None:
        kh, kw = kernel.shape[:2]
        new_mask = path != self.layer_path or self.mask.shape != (kh, kw)
        self.kernel, self.layer_path = kernel, path
        if new_mask:  # another layer: every position on again
            self.mask = np.ones((kh, kw), np.float32)
            self.mask_changed.emit()
        self.kernel_changed.emit()

    def set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)
