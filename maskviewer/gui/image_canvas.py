"""The central image view: pan, zoom, the pixel under the cursor, and the hint shown without an image.

Other tools (heatmaps, masks, patch rectangles) add their items on top with
:meth:`ImageCanvas.add_overlay`; they share the image's pixel coordinates (x right, y down).
What a left drag does is the canvas's mode (:attr:`ImageCanvas.modes`): pan/zoom by default,
the mask tools otherwise; Space held pans in any mode, the wheel always zooms.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QGraphicsItem, QLabel

from maskviewer.core.image import ImageData, display_range, display_uint8
from maskviewer.gui.image_tiles import ImageTiles
from maskviewer.gui.mode_state import CanvasModes

#: larger images are shown through a reduced display copy (the overview), stretched over the
#: image's pixel rectangle (overlays stay aligned, the cursor reads the full image), with
#: full-resolution tiles where the view is zoomed in (gui/image_tiles.py): Qt's own copies of a
#: 14,000² image would take gigabytes. About a screen's worth: a larger overview only costs
#: memory (it, pyqtgraph's and Qt's copies of it), the tiles give the detail
DISPLAY_MAX_PIXELS = 2048 * 2048


def display_factor(height: int, width: int, max_pixels: int | None = None) -> int:
    """The integer factor an image is reduced by for display (1: shown as it is); the
    default ``max_pixels`` is :data:`DISPLAY_MAX_PIXELS`, read at call time."""
    max_pixels = DISPLAY_MAX_PIXELS if max_pixels is None else max_pixels
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


def display_array(image: ImageData, max_pixels: int | None = None) -> np.ndarray:
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


def empty_hint_html() -> str:
    """What the canvas says before an image is open: how to start."""
    open_key = QKeySequence(QKeySequence.StandardKey.Open).toString(QKeySequence.SequenceFormat.NativeText)
    return (
        "<div style='font-size:15pt; color:#e0e0e0'>No image open</div>"
        "<p style='font-size:11pt; color:#b4b4b4; line-height:140%'>"
        f"Open an image: <b>File → Open Image…</b> ({open_key})<br>"
        "or drop an image or a model file here<br>"
        "or try a demo: <b>Help → Demos…</b></p>"
    )


class ImageCanvas(pg.GraphicsLayoutWidget):
    """A pyqtgraph view of one image with cursor readout.

    :attr:`modes` holds the canvas's mode; the canvas keeps Space (held: pan) and the mouse
    pointer in step with it. Tools that edit on a drag (the masks tool) read it.
    """

    #: x, y (pixel, may be outside), and a text describing the value there ("" outside)
    cursor_moved = Signal(int, int, str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.view: pg.ViewBox = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        #: full-resolution tiles over a reduced overview, where the view is zoomed in
        self.tiles = ImageTiles(self.view)
        self.image: ImageData | None = None
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.setAcceptDrops(False)  # the main window takes drops
        self.modes = CanvasModes()
        self.modes.changed.connect(lambda _mode: self.show_mode())
        self.modes.held_changed.connect(lambda _held: self.show_mode())
        self.empty_hint = QLabel(empty_hint_html(), self)
        self.empty_hint.setObjectName("canvas_empty_hint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.empty_hint.setStyleSheet("background: transparent;")
        # Space held pans while the pointer is over the image whichever widget has the keys (a
        # panel's button, the layer list): a window shortcut, on while the pointer is here; a
        # text field keeps its spaces (it claims the key first); the release comes here
        self._space = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        self._space.setContext(Qt.ShortcutContext.WindowShortcut)
        self._space.setAutoRepeat(False)
        self._space.setEnabled(False)
        self._space.activated.connect(self._space_from_elsewhere)
        self._grabbed = False
        self.show_mode()

    def set_image(self, image: ImageData | None) -> None:
        self.image = image
        self.empty_hint.setVisible(image is None)
        if image is None:
            self.tiles.set_image(None, 1)
            self.image_item.clear()
            return
        arr = display_array(image)
        # uint8 without levels: pyqtgraph draws it as it is (levels would make it a rescaled copy)
        self.image_item.setImage(arr, autoLevels=False, levels=None)
        self.image_item.setRect(0, 0, image.width, image.height)
        self.tiles.set_image(image, display_factor(image.height, image.width))
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

    # -- modes: the pointer, Space held ----------------------------------------------------------

    def show_mode(self) -> None:
        """The pointer: an open hand while a drag pans, a cross in the editing modes."""
        shape = Qt.CursorShape.OpenHandCursor if self.modes.panning else Qt.CursorShape.CrossCursor
        self.viewport().setCursor(shape)

    def event(self, ev: QEvent) -> bool:
        # Space before the window's shortcuts and the view's own key handling; its auto-repeat
        # while held changes nothing
        et = ev.type()
        if not hasattr(self, "modes"):
            return super().event(ev)
        if et in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease, QEvent.Type.ShortcutOverride):
            if ev.key() == Qt.Key.Key_Space and not ev.modifiers():
                if not ev.isAutoRepeat():
                    if et == QEvent.Type.KeyPress:
                        self.modes.hold(True)
                    elif et == QEvent.Type.KeyRelease:
                        self._let_go()
                ev.accept()
                return True
        elif (et == QEvent.Type.FocusOut and not self._grabbed) or et == QEvent.Type.WindowDeactivate:
            self._let_go()  # a release the canvas will not hear
        elif et == QEvent.Type.Enter:
            self._space.setEnabled(True)
        elif et == QEvent.Type.Leave:
            self._space.setEnabled(False)
        return super().event(ev)

    def _space_from_elsewhere(self) -> None:
        """Space pressed while another widget has the keys and the pointer is here: hold, and
        take the keys until it is released."""
        if not self.modes.held:
            self.modes.hold(True)
            self.grabKeyboard()
            self._grabbed = True

    def _let_go(self) -> None:
        self.modes.hold(False)
        if self._grabbed:
            self._grabbed = False
            self.releaseKeyboard()

    def mousePressEvent(self, ev) -> None:  # noqa: N802
        # reached only by presses the editing tools left to the view: a pan grabs the image
        if ev.button() == Qt.MouseButton.LeftButton and self.modes.panning:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        super().mousePressEvent(ev)

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        super().mouseReleaseEvent(ev)
        self.show_mode()

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        hint = getattr(self, "empty_hint", None)  # pyqtgraph resizes during __init__
        if hint is not None:
            hint.setGeometry(self.rect().adjusted(24, 24, -24, -24))

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
