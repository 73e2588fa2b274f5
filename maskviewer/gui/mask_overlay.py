"""A mask drawn over the image, updated per mouse event in the changed rectangle only.

The item keeps a premultiplied RGBA buffer the size of the image, wrapped (not copied) by a
``QImage``. A brush dab rewrites the buffer inside its box and asks Qt to repaint that box;
``paint`` draws only the exposed part of the image. pyqtgraph's ``ImageItem.setImage`` /
``drawAt`` would re-render the whole 4096² image on every event instead (10-16 ms).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from maskviewer.core.masks import Box, Mask


def outline(binary: np.ndarray) -> np.ndarray:
    """Pixels of ``binary`` with a 4-neighbour outside it (the array's border counts as outside)."""
    padded = np.pad(binary, 1, constant_values=False)
    inner = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return binary & ~inner


class MaskOverlayItem(QGraphicsItem):
    """Draws one :class:`Mask` in its colour; call :meth:`update_box` after each edit."""

    def __init__(self, mask: Mask, outline_mode: bool = False) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.mask = mask
        self.outline_mode = outline_mode
        h, w = mask.shape
        self._buffer = np.zeros((h, w, 4), dtype=np.uint8)
        self._qimage = pg.functions.ndarray_to_qimage(
            self._buffer, QImage.Format.Format_RGBA8888_Premultiplied
        )
        self._bounds = QRectF(0.0, 0.0, float(w), float(h))
        self.render_all()

    # -- rendering into the buffer -------------------------------------------------------------

    def sync_color(self) -> None:
        """Re-render if the mask's colour changed since it was drawn."""
        if self._color != self.mask.color:
            self.render_all()

    def render_all(self) -> None:
        self._color = self.mask.color
        h, w = self.mask.shape
        self._render((0, h, 0, w))
        self.update()

    def update_box(self, box: Box | None) -> None:
        """Re-render ``box`` (``y0, y1, x0, x1``; None: everything) and schedule its repaint."""
        if box is None:
            self.render_all()
            return
        h, w = self.mask.shape
        y0, y1, x0, x1 = box
        if self.outline_mode:  # an edge pixel depends on its neighbours
            y0, y1, x0, x1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
        if y0 >= y1 or x0 >= x1:
            return
        self._render((y0, y1, x0, x1))
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def _render(self, box: Box) -> None:
        y0, y1, x0, x1 = box
        data = self.mask.data
        if self.outline_mode:
            h, w = data.shape
            ey0, ey1, ex0, ex1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
            # neighbours come from the 1-pixel margin; beyond the image counts as outside
            edge = outline(data[ey0:ey1, ex0:ex1] >= 0.5)
            alpha = edge[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
            a = alpha.astype(np.float32)
        else:
            a = data[y0:y1, x0:x1]
        r, g, b = self.mask.color
        a255 = np.clip(a, 0.0, 1.0) * np.float32(255.0)
        out = self._buffer[y0:y1, x0:x1]
        out[:, :, 3] = (a255 + 0.5).astype(np.uint8)
        # premultiplied colour: value * alpha / 255
        out[:, :, 0] = (a255 * np.float32(r / 255.0) + 0.5).astype(np.uint8)
        out[:, :, 1] = (a255 * np.float32(g / 255.0) + 0.5).astype(np.uint8)
        out[:, :, 2] = (a255 * np.float32(b / 255.0) + 0.5).astype(np.uint8)

    def set_outline(self, on: bool) -> None:
        if on != self.outline_mode:
            self.outline_mode = on
            self.render_all()

    def buffer(self) -> np.ndarray:
        """The RGBA (premultiplied) buffer drawn, for tests and exports."""
        return self._buffer

    # -- QGraphicsItem ---------------------------------------------------------------------

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._bounds

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        exposed = option.exposedRect.intersected(self._bounds)
        if exposed.isEmpty():
            return
        # whole source pixels covering the exposed area
        src = exposed.toAlignedRect().intersected(self._bounds.toRect())
        painter.drawImage(QRectF(src), self._qimage, QRectF(src))
