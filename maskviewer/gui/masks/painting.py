"""Painting masks with the mouse: an event filter on the canvas viewport.

Presses, drags and releases of the left button become brush strokes, fills, rectangles,
ellipses and lassos on the model's active mask, in the canvas's editing modes only; other
buttons, the pan/zoom mode and a drag begun with Space held leave the events to the canvas (pan
and zoom). The brush outline and the shape preview follow the mouse.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt

from maskviewer.gui.masks.model import PAINT_TOOLS, MasksModel
from maskviewer.gui.masks.overlay import BrushCursor, ShapePreview

_MOUSE_EVENTS = (
    QEvent.Type.MouseButtonPress,
    QEvent.Type.MouseMove,
    QEvent.Type.MouseButtonRelease,
    QEvent.Type.MouseButtonDblClick,
)


class CanvasPainter(QObject):
    """Turns mouse events on ``canvas`` into edits of ``model``'s active mask.

    Holds the gesture under way: a rectangle or ellipse being dragged, a lasso's points (the
    brush stroke itself is the model's, since edits are fed only once it ends).
    """

    def __init__(self, model: MasksModel, canvas: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.canvas = canvas
        self.cursor = BrushCursor()
        canvas.add_overlay(self.cursor, 40.0)
        self.preview = ShapePreview()
        canvas.add_overlay(self.preview, 41.0)
        self._shape_start: tuple[float, float] | None = None
        self._lasso: list[tuple[float, float]] = []
        self._lasso_dragged = False
        self._erase_modifier = False
        self._passing = False  # a press went to the canvas (a pan): so do its moves and release
        model.paint.tool_changed.connect(self._tool_changed)
        canvas.modes.held_changed.connect(lambda _held: self.update_cursor_shape())
        model.paint.brush_changed.connect(self.update_cursor_shape)
        model.maskset_changed.connect(self.cancel_shape)
        canvas.viewport().installEventFilter(self)
        canvas.viewport().setMouseTracking(True)

    def _tool_changed(self, _tool: str) -> None:
        self.cancel_shape()
        self.update_cursor_shape()

    # -- events ----------------------------------------------------------------------------------

    def _image_pos(self, event) -> tuple[float, float]:
        """Pixel-centre coordinates (pixel (r, c) is centred on (c, r)) of a viewport event."""
        scene = self.canvas.mapToScene(event.position().toPoint())
        p = self.canvas.view.mapSceneToView(scene)
        return p.x() - 0.5, p.y() - 0.5

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        et = event.type()
        if et == QEvent.Type.Leave:
            self.cursor.hide()
            return False
        if et not in _MOUSE_EVENTS:
            return False
        if self._passing:  # a pan under way goes on, Space held or not
            self._passing = et != QEvent.Type.MouseButtonRelease or bool(event.buttons())
            return False
        ms = self.model.maskset
        busy = self.model.stroke is not None or self._shape_start is not None
        if ms is None or ms.active is None or self.model.paint.tool not in PAINT_TOOLS or (
            self.canvas.modes.held and not busy
        ):
            self.cursor.hide()
            self._passing = et == QEvent.Type.MouseButtonPress
            return False
        x, y = self._image_pos(event)
        self._move_cursor(x, y)
        left = event.button() == Qt.MouseButton.LeftButton
        if et == QEvent.Type.MouseButtonPress:
            if left:
                self._press(x, y, bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
            return left
        if et == QEvent.Type.MouseButtonDblClick:
            if left and self.model.paint.tool == "lasso" and len(self._lasso) >= 3:
                self._finish_lasso()
            return left
        if et == QEvent.Type.MouseMove:
            if event.buttons() & Qt.MouseButton.LeftButton:
                self._drag(x, y)
                return True
            if self.model.paint.tool == "lasso" and self._lasso and not self._lasso_dragged:
                self.preview.show_polyline(self._lasso + [(x, y)])
            return False
        if left:
            self._release(x, y)
        return left

    # -- gestures ----------------------------------------------------------------------------------

    def _press(self, x: float, y: float, shift: bool) -> None:
        tool = self.model.paint.tool
        self._erase_modifier = shift
        if tool in ("brush", "eraser"):
            self.model.begin_stroke(x, y, erase=tool == "eraser" or shift)
        elif tool == "fill":
            self.model.fill(x, y, erase=shift)
        elif tool in ("rectangle", "ellipse"):
            self._shape_start = (x, y)
            self.preview.show_shape(tool, self._corners(x, y))
        elif tool == "lasso":
            if not self._lasso:
                self._lasso_dragged = False
            elif self._near_first(x, y):
                self._finish_lasso()
                return
            self._lasso.append((x, y))
            self.preview.show_polyline(self._lasso)

    def _drag(self, x: float, y: float) -> None:
        if self.model.stroke is not None:
            self.model.stroke_to(x, y)
        elif self._shape_start is not None:
            self.preview.show_shape(self.model.paint.tool, self._corners(x, y))
        elif self.model.paint.tool == "lasso" and self._lasso:
            last = self._lasso[-1]
            if abs(x - last[0]) + abs(y - last[1]) >= 1.0:
                self._lasso.append((x, y))
                self._lasso_dragged = True
                self.preview.show_polyline(self._lasso)

    def _release(self, x: float, y: float) -> None:
        if self.model.stroke is not None:
            self.model.end_stroke()
        elif self._shape_start is not None:
            # corners are the pixels under the press and the release
            corners = self._corners(x, y)
            self._shape_start = None
            self.preview.clear()
            self.model.shape(self.model.paint.tool, corners, self._erase_modifier)
        elif self.model.paint.tool == "lasso" and self._lasso_dragged:
            self._finish_lasso()

    def _corners(self, x: float, y: float) -> tuple[int, int, int, int]:
        assert self._shape_start is not None
        x0, y0 = self._shape_start
        return round(x0), round(y0), round(x), round(y)

    def _near_first(self, x: float, y: float) -> bool:
        if len(self._lasso) < 3:
            return False
        fx, fy = self._lasso[0]
        scale = self.canvas.view.viewPixelSize()[0] or 1.0
        return abs(x - fx) + abs(y - fy) <= 6 * scale

    def _finish_lasso(self) -> None:
        points, self._lasso = self._lasso, []
        self._lasso_dragged = False
        self.preview.clear()
        self.model.polygon(points, self._erase_modifier)

    def cancel_shape(self) -> None:
        """Drop a rectangle, ellipse or lasso under way."""
        self._shape_start = None
        self._lasso = []
        self._lasso_dragged = False
        self.preview.clear()

    # -- the cursor --------------------------------------------------------------------------------

    def _move_cursor(self, x: float, y: float) -> None:
        if self.canvas.modes.shows_brush and self.model.paint.tool in ("brush", "eraser"):
            self.cursor.place(round(x) + 0.5, round(y) + 0.5, self.model.paint.brush.radius)
            self.cursor.show()
        else:
            self.cursor.hide()

    def update_cursor_shape(self) -> None:
        """Size the brush outline; hide it where a drag would not paint (the canvas picks the
        mouse pointer)."""
        if self.canvas.modes.shows_brush and self.model.paint.tool in ("brush", "eraser"):
            self.cursor.set_radius(self.model.paint.brush.radius)
        else:
            self.cursor.hide()
