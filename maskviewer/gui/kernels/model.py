"""The Kernels tool's state, Qt-free: a Conv2D layer's kernels and the NxN mask over them.

:class:`KernelsModel` holds the model's Conv2D layers, the one chosen, its kernels (as the
last job read them), the kernel-cell mask being edited and the mask applied to the running
copy of the model, if any. The jobs that read, apply and reset the mask are plain functions
here too; :mod:`maskviewer.gui.kernels.tool` submits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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


#: Pixels per kernel tap at most (enough to draw a cross on a tap that is off).
TAP_PIXELS = 8
#: Largest side of the grid picture, in pixels.
MAX_PIXELS = 2048
GAP = (48, 48, 48)  # between kernels, and the box around them
OFF_CROSS = (235, 235, 235)  # the cross on a tap that is off
OFF_DIM = 0.3  # an off tap keeps a dimmed colour of its weight


@dataclass
class KernelGrid:
    """The kernels drawn as one picture: one tile per filter, tiles in a near-square grid.

    Attributes
    ----------
    rgb : ndarray
        ``(H, W, 3)`` uint8 picture.
    rows, cols : int
        How the filter tiles are laid out.
    scale : float
        ``max |w|`` over the whole layer: colours run from ``-scale`` (blue) to ``+scale`` (red).
    tap : int
        Pixels per kernel tap.
    shown : tuple of int
        ``(input channels, filters)`` drawn.
    origins : dict
        ``(input channel, filter) -> (y, x)``: where each kernel's top-left tap is.
    """

    rgb: np.ndarray
    rows: int
    cols: int
    scale: float
    tap: int
    shown: tuple[int, int]
    origins: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)


def grid_shape(n: int, tile_h: float, tile_w: float, aspect: float = 1.0) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` tiles of ``tile_h x tile_w`` that fill a box of ``aspect``
    (width / height) best: the largest tiles, then the fewest empty places."""
    best, pick = None, (1, max(n, 1))
    for cols in range(1, max(n, 1) + 1):
        rows = math.ceil(n / cols)
        fill = min(aspect / (cols * tile_w), 1.0 / (rows * tile_h))
        key = (round(fill, 12), -(rows * cols - n))
        if best is None or key > best:
            best, pick = key, (rows, cols)
    return pick


def _tile_size(ni: int, kh: int, kw: int, tap: int) -> tuple[int, int, int, int]:
    # gaps between a filter's input channels, and between filters (wider when tiles are tall)
    inner, outer = max(1, tap // 4), (max(2, tap // 2) if ni == 1 else max(3, tap))
    return ni * kh * tap + (ni - 1) * inner, kw * tap, inner, outer


def _plan(shape: tuple[int, ...], aspect: float, max_grid: int) -> tuple[int, int, int]:
    """``(rows, cols, pixels per tap)`` of the grid of kernels of ``shape``."""
    kh, kw, cin, cout = shape
    ni, no = min(cin, max_grid), min(cout, max_grid)
    th, tw, _inner, outer = _tile_size(ni, kh, kw, TAP_PIXELS)
    rows, cols = grid_shape(no, th + outer, tw + outer, aspect)
    longest = max(rows * (th + outer), cols * (tw + outer))
    tap = TAP_PIXELS if longest <= MAX_PIXELS else max(1, int(TAP_PIXELS * MAX_PIXELS / longest))
    return rows, cols, tap


def grid_layout(shape: tuple[int, ...], aspect: float = 1.0, max_grid: int = MAX_GRID) -> tuple[int, int]:
    """``(rows, cols)`` of filter tiles :func:`kernel_grid` lays out for kernels of ``shape``."""
    return _plan(shape, aspect, max_grid)[:2]


def _off_pixels(mask: np.ndarray | None, kh: int, kw: int, tap: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixels of one kernel that are off, and those that draw their cross (None: all on)."""
    if mask is None or mask.shape != (kh, kw) or not np.any(mask == 0):
        return None
    off = np.kron(mask == 0, np.ones((tap, tap), bool))
    eye = np.eye(tap, dtype=bool)
    cross = np.tile(eye | eye[::-1], (kh, kw)) & off if tap >= 5 else np.zeros_like(off)
    return off, cross


def kernel_grid(kernel: np.ndarray, mask: np.ndarray | None = None, aspect: float = 1.0,
                max_grid: int = MAX_GRID) -> KernelGrid:
    """The kernels ``(kh, kw, cin, cout)`` as a :class:`KernelGrid`.

    Each filter is a tile holding its input channels' kernels top to bottom; the tiles are laid
    out to fill a box of ``aspect`` (width / height). Colours: blue-white-red, symmetric around 0
    with one scale for the layer. Taps that are off in ``mask`` (``(kh, kw)``, 0 = off) are dimmed
    and crossed out.
    """
    kh, kw, cin, cout = kernel.shape
    ni, no = min(cin, max_grid), min(cout, max_grid)
    finite = np.abs(kernel[np.isfinite(kernel)])
    scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    rows, cols, tap = _plan(kernel.shape, aspect, max_grid)
    th, tw, inner, outer = _tile_size(ni, kh, kw, tap)
    k = np.nan_to_num(kernel[:, :, :ni, :no].astype(np.float64), nan=0.0)
    idx = np.clip(np.round((k / scale + 1.0) * 127.5), 0, 255).astype(np.intp)
    out = np.empty((rows * (th + outer) - outer, cols * (tw + outer) - outer, 3), np.uint8)
    out[:] = GAP
    off = _off_pixels(None if mask is None else np.asarray(mask), kh, kw, tap)
    origins = {}
    for o in range(no):
        r, c = divmod(o, cols)
        for i in range(ni):
            y, x = r * (th + outer) + i * (kh * tap + inner), c * (tw + outer)
            big = LUT[idx[:, :, i, o]].repeat(tap, axis=0).repeat(tap, axis=1)
            if off is not None:
                big[off[0]] = (big[off[0]] * OFF_DIM).astype(np.uint8)
                big[off[1]] = OFF_CROSS
            out[y : y + kh * tap, x : x + kw * tap] = big
            origins[(i, o)] = (y, x)
    return KernelGrid(out, rows, cols, scale, tap, (ni, no), origins)


def kernel_note(path: str, shape: tuple[int, ...]) -> str:
    """The caption under a layer's kernel grid."""
    kh, kw, cin, cout = shape
    more = []
    if cin > MAX_GRID:
        more.append(f"first {MAX_GRID} of {cin} input channels")
    if cout > MAX_GRID:
        more.append(f"first {MAX_GRID} of {cout} filters")
    tiles = "each tile is one filter" + (", its input channels top to bottom" if min(cin, MAX_GRID) > 1 else "")
    return (
        f"{path}: {kh}×{kw} kernels, {cin} input channel{'s' * (cin != 1)} × {cout} filters; "
        f"{tiles}. Colour: the weight, blue < 0 < red (white = 0)"
        + (f" · showing {', '.join(more)}" if more else "")
    )


def empty_note(has_model: bool, layers: list[str], selected: str | None, problem: str | None = None) -> str:
    """What the kernel box says while it has no kernels to draw."""
    if problem:
        return f"Could not read the kernels of {selected}: {problem}"
    if not has_model:
        return ("Open a model to see the kernels of its Conv2D layers here "
                "(Help → Demos → “Masked kernels” has one).")
    if not layers:
        return "This model has no Conv2D layer (or its layers cannot be read): no kernels to show."
    if selected is None:
        return "Pick a Conv2D layer above to see its kernels."
    return f"Reading the kernels of {selected}…"


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
        self.has_model = False
        self.problem: str | None = None  # why the chosen layer's kernels could not be read
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
        self.has_model, self.problem = info is not None, None
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

    def empty_text(self) -> str:
        """What the kernel box says while there are no kernels to draw."""
        return empty_note(self.has_model, self.layers, self.selected, self.problem)

    def select_layer(self, path: str | None) -> bool:
        """Choose a listed layer; True when the choice changed (its kernels are to be read)."""
        if path == self.selected or (path is not None and path not in self.layers):
            return False
        self.selected, self.problem = path, None
        self.selection_changed.emit(path)
        return True

    def kernels_failed(self, message: str) -> None:
        """Reading the chosen layer's kernels failed: say so where they would be drawn."""
        self.problem = message
        self.set_status(message)

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
        self.kernel, self.layer_path, self.problem = kernel, path, None
        if new_mask:  # another layer: every position on again
            self.mask = np.ones((kh, kw), np.float32)
            self.mask_changed.emit()
        self.kernel_changed.emit()

    def set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)
