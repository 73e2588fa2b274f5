"""The masks tool's canvas items: the mask overlays, the brush cursor and the shape preview.

A mask overlay is updated per mouse event in the changed rectangle only. The item keeps a
premultiplied RGBA buffer the size of the image, wrapped (not copied) by a ``QImage``. A brush
dab rewrites the buffer inside its box and asks Qt to repaint that box; ``paint`` draws only the
exposed part of the image. pyqtgraph's ``ImageItem.setImage`` / ``drawAt`` would re-render the
whole 4096² image on every event instead (10-16 ms).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

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
        # band by band: temporaries stay small, and a band blank in the mask and in the buffer
        # is left alone (a large image's unpainted pages are never touched)
        step = max(1, (1 << 20) // max(1, w))
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            if self.mask.data[y0:y1].any() or self._buffer[y0:y1].any():
                self._render((y0, y1, 0, w))
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


class MaskOverlays:
    """One :class:`MaskOverlayItem` per mask of the current image, kept in step with the model.

    :attr:`items` maps ``id(mask)`` to its item; the active mask is drawn on top.
    """

    def __init__(self, canvas, model) -> None:
        self.canvas = canvas
        self.model = model
        self.items: dict[int, MaskOverlayItem] = {}
        model.maskset_changed.connect(self._maskset_changed)
        model.masks_changed.connect(self.rebuild)
        model.pixels_changed.connect(self._pixels_changed)
        model.visibility_changed.connect(self._visibility_changed)
        model.paint.display_changed.connect(self._display_changed)

    def _maskset_changed(self) -> None:
        for item in self.items.values():
            self.canvas.remove_overlay(item)
        self.items = {}
        self.rebuild()

    def rebuild(self) -> None:
        """One overlay per mask, the active one on top; existing ones are kept (no re-render)."""
        ms = self.model.maskset
        present = {id(m) for m in ms.masks} if ms is not None else set()
        for key in [k for k in self.items if k not in present]:
            self.canvas.remove_overlay(self.items.pop(key))
        if ms is None:
            return
        for i, mask in enumerate(ms.masks):
            item = self.items.get(id(mask))
            if item is None:
                item = MaskOverlayItem(mask, self.model.paint.outline)
                item.setOpacity(self.model.paint.opacity)
                self.canvas.add_overlay(item, 20.0)
                self.items[id(mask)] = item
            else:
                item.sync_color()
            item.setVisible(mask.visible)
            item.setZValue(30.0 if mask is ms.active else 20.0 + i * 0.01)

    def _pixels_changed(self, mask: Mask, box: Box | None) -> None:
        item = self.items.get(id(mask))
        if item is not None:
            item.update_box(box)

    def _visibility_changed(self, mask: Mask) -> None:
        item = self.items.get(id(mask))
        if item is not None:
            item.setVisible(mask.visible)

    def _display_changed(self) -> None:
        for item in self.items.values():
            item.setOpacity(self.model.paint.opacity)
            item.set_outline(self.model.paint.outline)


class BrushCursor(QGraphicsEllipseItem):
    """The circle under the mouse showing the brush's size (image coordinates, so it scales with
    the zoom): a light line over a dark one, seen on bright and dark images alike."""

    def __init__(self) -> None:
        super().__init__()
        under = QPen(QColor(0, 0, 0, 170))  # the item's pen: its width sizes the bounding box
        under.setCosmetic(True)
        under.setWidthF(3.0)
        self.setPen(under)
        self._line = QPen(QColor(255, 255, 255, 230))
        self._line.setCosmetic(True)
        self._line.setWidthF(1.2)
        self.hide()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for pen in (self.pen(), self._line):
            painter.setPen(pen)
            painter.drawEllipse(self.rect())

    def place(self, cx: float, cy: float, radius: float) -> None:
        """Centre the circle on ``(cx, cy)`` with ``radius``."""
        self.setRect(QRectF(cx - radius, cy - radius, 2 * radius, 2 * radius))

    def set_radius(self, radius: float) -> None:
        """Keep the centre, change the radius."""
        c = self.rect().center()
        self.place(c.x(), c.y(), radius)


class ShapePreview(QGraphicsPathItem):
    """The dashed outline of a rectangle, ellipse or lasso being drawn."""

    def __init__(self) -> None:
        super().__init__()
        pen = QPen(QColor(255, 255, 0, 230))
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.setPen(pen)

    def clear(self) -> None:
        self.setPath(QPainterPath())

    def show_shape(self, kind: str, corners: tuple[int, int, int, int]) -> None:
        """Outline the pixels ``x0, y0, x1, y1`` (any order) as a rectangle or an ellipse."""
        x0, y0, x, y = corners
        rect = QRectF(QPointF(min(x0, x), min(y0, y)), QPointF(max(x0, x) + 1, max(y0, y) + 1))
        path = QPainterPath()
        if kind == "rectangle":
            path.addRect(rect)
        else:
            path.addEllipse(rect)
        self.setPath(path)

    def show_polyline(self, points: list[tuple[float, float]]) -> None:
        """Join pixel centres (pixel-centre coordinates: pixel (r, c) is centred on (c, r))."""
        path = QPainterPath()
        if points:
            path.moveTo(QPointF(points[0][0] + 0.5, points[0][1] + 0.5))
            for px, py in points[1:]:
                path.lineTo(QPointF(px + 0.5, py + 0.5))
        self.setPath(path)
