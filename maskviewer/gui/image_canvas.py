"""The central image view: pan, zoom, and the pixel under the cursor.

Other tools (heatmaps, masks, patch rectangles) add their items on top with
:meth:`ImageCanvas.add_overlay`; they share the image's pixel coordinates (x right, y down).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal
from PySide6.QtWidgets import QGraphicsItem

from maskviewer.core.image import ImageData, display_range, display_uint8

#: larger images are shown through a reduced display copy, stretched over the image's pixel
#: rectangle (overlays stay aligned, the cursor reads the full image): Qt's own copies of a
#: 14,000² image would take gigabytes
DISPLAY_MAX_PIXELS = 4096 * 4096


def display_factor(height: int, width: int, max_pixels: int = DISPLAY_MAX_PIXELS) -> int:
    """The integer factor an image is reduced by for display (1: shown as it is)."""
    factor = 1
    while -(-height // factor) * -(-width // factor) > max_pixels:
        factor += 1
    return factor


def reduce_box(array: np.ndarray, factor: int, lohi: tuple[float, float] | None = None) -> np.ndarray:
    """``(H, W, C)`` reduced by ``factor`` on both axes to uint8, each pixel the mean of its
    ``factor``² block (edge blocks cut short), scaled from ``lohi`` when given (non-uint8).

    Worked band by band: temporaries stay a few megabytes whatever the image's size.
    """
    h, w = array.shape[:2]
    out = np.empty((-(-h // factor), -(-w // factor), array.shape[2]), dtype=np.uint8)
    cols = np.arange(0, w, factor)
    cols_n = np.minimum(factor, w - cols).astype(np.float32)
    step = max(1, (1 << 20) // max(1, w * factor)) * factor
    for r0 in range(0, h, step):
        band = array[r0 : r0 + step]
        starts = np.arange(0, band.shape[0], factor)
        sums = np.add.reduceat(np.add.reduceat(band.astype(np.float32), starts, axis=0), cols, axis=1)
        rows_n = np.minimum(factor, band.shape[0] - starts).astype(np.float32)
        means = sums / (rows_n[:, None, None] * cols_n[None, :, None])
        if lohi is None:
            out[r0 // factor : r0 // factor + len(starts)] = (means + np.float32(0.5)).astype(np.uint8)
        else:
            out[r0 // factor : r0 // factor + len(starts)] = display_uint8(means, *lohi)
    return out


def display_array(image: ImageData, max_pixels: int = DISPLAY_MAX_PIXELS) -> np.ndarray:
    """The image as uint8 for display (``(H, W)`` or ``(H, W, 3|4)``): the fast pyqtgraph path.

    An image of more than ``max_pixels`` pixels comes reduced by :func:`display_factor`.
    """
    a = image.array
    factor = display_factor(image.height, image.width, max_pixels)
    if factor > 1:
        lohi = None if a.dtype == np.uint8 else display_range(a, image.value_max)
        out = reduce_box(a, factor, lohi)
    else:
        # floats outside 0..full scale (normalised model inputs) show their own range; a
        # constant one shows flat grey (display_uint8 never divides by a zero span)
        out = a if a.dtype == np.uint8 else display_uint8(a, *display_range(a, image.value_max))
    if out.shape[2] == 1:
        return out[:, :, 0]
    if out.shape[2] == 2:
        return out[:, :, 0]
    return out


class ImageCanvas(pg.GraphicsLayoutWidget):
    """A pyqtgraph view of one image with cursor readout."""

    #: x, y (pixel, may be outside), and a text describing the value there ("" outside)
    cursor_moved = Signal(int, int, str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.view: pg.ViewBox = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        self.image: ImageData | None = None
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.setAcceptDrops(False)  # the main window takes drops

    def set_image(self, image: ImageData | None) -> None:
        self.image = image
        if image is None:
            self.image_item.clear()
            return
        arr = display_array(image)
        self.image_item.setImage(arr, autoLevels=False, levels=(0, 255))
        self.image_item.setRect(0, 0, image.width, image.height)
        self.fit()

    def fit(self) -> None:
        if self.image is not None:
            self.view.autoRange(padding=0.02)

    def add_overlay(self, item: QGraphicsItem, z: float = 10.0) -> None:
        """Put ``item`` over the image in image pixel coordinates."""
        item.setZValue(z)
        self.view.addItem(item)

    def remove_overlay(self, item: QGraphicsItem) -> None:
        self.view.removeItem(item)

    def value_text(self, x: int, y: int) -> str:
        if self.image is None or not (0 <= x < self.image.width and 0 <= y < self.image.height):
            return ""
        v = self.image.array[y, x]
        if self.image.array.dtype.kind == "f":
            vals = [f"{float(c):.4g}" for c in v]
        else:
            vals = [str(int(c)) for c in v]
        return vals[0] if len(vals) == 1 else "(" + ", ".join(vals) + ")"

    def _mouse_moved(self, pos: QPointF) -> None:
        if self.image is None:
            return
        p = self.view.mapSceneToView(pos)
        x, y = int(np.floor(p.x())), int(np.floor(p.y()))
        self.cursor_moved.emit(x, y, self.value_text(x, y))
