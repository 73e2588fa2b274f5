"""The level-of-detail view of a large image: full-resolution pixels where the view is zoomed in.

An image too large to hand to Qt whole is shown as a reduced overview (see
:func:`maskviewer.gui.image_canvas.display_array`). When the view is zoomed in past the
overview's resolution, this module reads the visible region (with a margin, so a short pan
needs no new read) from the full image at the zoom's resolution — every pixel where a screen
pixel shows at most one image pixel, else the mean of ``level``² blocks — and shows it as a
tile above the overview, in the same full-image pixel coordinates (overlays stay aligned).
The tile is read again when the view leaves it or the zoom asks for another level; zoomed
out, the tile is hidden and the overview is what shows. Tiles are read off the GUI thread.

A tile holds about the view's own pixel count (times the margin): memory follows the screen,
not the image; reading one at level ``k`` touches ``k``² times that many image pixels.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QTimer, Signal

from maskviewer.core.image import ImageData, display_range, display_uint8

#: the tile reaches this fraction of the visible width/height beyond each side of the view
MARGIN = 0.25
#: milliseconds the view must stay still before a tile is read (a drag or a wheel spin
#: reads once, when it stops)
DELAY_MS = 40


@dataclass(frozen=True)
class Tile:
    """A region of the image shown at ``level`` image pixels per tile pixel (per axis).

    ``x0, y0, x1, y1`` are full-image pixels (``x1``, ``y1`` excluded); ``x0`` and ``y0``
    are multiples of ``level``.
    """

    level: int
    x0: int
    y0: int
    x1: int
    y1: int

    def covers(self, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> bool:
        """Whether the rectangle (clipped to the image) lies inside this tile."""
        return (
            self.x0 <= max(x0, 0) and self.y0 <= max(y0, 0)
            and self.x1 >= min(x1, width) and self.y1 >= min(y1, height)
        )


def choose_level(image_px_per_screen_px: float, factor: int) -> int:
    """The tile level for a zoom, or 0 when the overview (reduced by ``factor``) is enough."""
    level = max(1, int(math.floor(image_px_per_screen_px)))
    return 0 if level >= factor else level


def plan_tile(rect: tuple[float, float, float, float], level: int, width: int, height: int) -> Tile:
    """The tile for a visible ``rect`` (x, y, w, h in image pixels): the rect grown by
    :data:`MARGIN`, clipped to the image, its start snapped down and its end up to a multiple
    of ``level``."""
    x, y, w, h = rect
    mx, my = w * MARGIN, h * MARGIN
    x0 = max(0, int(math.floor(x - mx)))
    y0 = max(0, int(math.floor(y - my)))
    x1 = min(width, int(math.ceil(x + w + mx)))
    y1 = min(height, int(math.ceil(y + h + my)))
    x0, y0 = x0 - x0 % level, y0 - y0 % level
    # whole blocks, so that only a block at the image's own edge is cut short
    x1 = min(width, -(-max(x1, x0 + 1) // level) * level)
    y1 = min(height, -(-max(y1, y0 + 1) // level) * level)
    return Tile(level, x0, y0, x1, y1)


def tile_pixels(image: ImageData, tile: Tile, lohi: tuple[float, float] | None) -> np.ndarray:
    """The tile's pixels as display uint8 (``(h, w)`` or ``(h, w, 3|4)``), as the overview
    shows them: channel 0 of a one- or two-channel image; ``lohi`` scales non-uint8 values.

    Level 1 is the image's own pixels; a higher level is the mean of each ``level``² block
    (blocks at the image's right and bottom edges cut short).
    """
    from maskviewer.gui.image_canvas import reduce_box

    region = image.array[tile.y0 : tile.y1, tile.x0 : tile.x1]
    if region.shape[2] in (1, 2):
        region = region[:, :, :1]
    if tile.level > 1:
        out = reduce_box(region, tile.level, lohi)
    elif region.dtype == np.uint8:
        out = np.ascontiguousarray(region)
    else:
        out = display_uint8(region, *lohi) if lohi is not None else region.astype(np.uint8)
    return out[:, :, 0] if out.shape[2] == 1 else out


class _Relay(QObject):
    """Carries a tile read on its thread back to the GUI thread (a queued signal)."""

    done = Signal(object, object)  # (generation, tile, display range), pixels or None


class ImageTiles:
    """The full-resolution tile over a reduced overview, kept in step with a view.

    The tile is read on a short-lived thread (numpy releases the GIL; the GUI thread only
    hands the pixels to the item): one read at a time, and when it ends the view is asked
    again what it needs, so a view that moved on during the read gets its own tile next.

    Parameters
    ----------
    view : pyqtgraph.ViewBox
        The canvas's view; the tile item is added to it just above the overview.
    """

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(0.5)  # above the overview, below every overlay
        self.item.setVisible(False)
        view.addItem(self.item)
        self.image: ImageData | None = None
        self.factor = 1
        self.tile: Tile | None = None
        self._lohi: tuple[float, float] | None = None
        self._lohi_known = False
        self._generation = 0  # a new image: reads of the old one are dropped
        self._reading: Tile | None = None
        self._failed: Tile | None = None  # out of memory: not read again for the same view
        self._relay = _Relay(view)
        self._relay.done.connect(self._deliver)
        self._timer = QTimer(view)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DELAY_MS)
        self._timer.timeout.connect(self.update_now)
        view.sigRangeChanged.connect(lambda *_: self._timer.start())
        view.sigResized.connect(lambda *_: self._timer.start())

    @property
    def pending(self) -> bool:
        """Whether a tile is being read (or the view waits for its pause to ask for one)."""
        return self._reading is not None or self._timer.isActive()

    def set_image(self, image: ImageData | None, factor: int) -> None:
        """A new image shown through an overview reduced by ``factor`` (1: no tiles needed)."""
        self.image = image if factor > 1 else None
        self.factor = factor
        self._lohi, self._lohi_known = None, False
        self._generation += 1
        self._failed = None
        self._hide()
        if self.image is not None:
            self._timer.start()

    def _hide(self) -> None:
        self.tile = None
        self.item.setVisible(False)
        self.item.clear()

    def wanted(self) -> Tile | None:
        """The tile the current view needs (None: the overview is enough or nothing is shown)."""
        image = self.image
        if image is None or self.view.width() < 1 or self.view.height() < 1:
            return None
        px, py = self.view.viewPixelSize()
        level = choose_level(min(abs(px), abs(py)), self.factor)
        if level == 0:
            return None
        r = self.view.viewRect()
        x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
        if x1 <= 0 or y1 <= 0 or x0 >= image.width or y0 >= image.height:
            return None  # the view is off the image
        t = self.tile
        if t is not None and t.level == level and t.covers(x0, y0, x1, y1, image.width, image.height):
            return t
        return plan_tile((x0, y0, x1 - x0, y1 - y0), level, image.width, image.height)

    def update_now(self) -> None:
        """Start reading the tile the view needs now, unless it is shown, being read or failed."""
        self._timer.stop()
        want = self.wanted()
        if want is None:
            if self.tile is not None:
                self._hide()
            return
        if want == self.tile or want == self._failed or self._reading is not None:
            return  # a read in progress asks again when it ends
        self._reading = want
        key = (self._generation, want, self._lohi if self._lohi_known else False)
        threading.Thread(target=self._read, args=(self.image, key), name="maskviewer-tile", daemon=True).start()

    def _read(self, image: ImageData, key: tuple) -> None:
        """On the reading thread: the tile's pixels (None when memory runs out)."""
        generation, tile, lohi = key
        try:
            if lohi is False:  # the overview's range (the whole image's), found once
                a = image.array
                lohi = None if a.dtype == np.uint8 else display_range(a, image.value_max)
            pixels = tile_pixels(image, tile, lohi)
        except MemoryError:
            pixels = None
        try:
            self._relay.done.emit((generation, tile, lohi), pixels)
        except RuntimeError:  # the canvas is gone
            pass

    def _deliver(self, key: tuple, pixels: np.ndarray | None) -> None:
        generation, tile, lohi = key
        self._reading = None
        if generation == self._generation:
            self._lohi, self._lohi_known = lohi, True
            if pixels is None:
                self._failed = tile
            elif self.wanted() == tile:
                self._show(tile, pixels)
        self.update_now()  # the view may have moved on while this tile was read

    def _show(self, tile: Tile, pixels: np.ndarray) -> None:
        self.item.setImage(pixels, autoLevels=False, levels=None)  # uint8 as it is: no rescaled copy
        rows, cols = pixels.shape[:2]
        # level-sized tile pixels from the snapped start: the last block may reach a little
        # past the image's edge (less than one tile pixel)
        self.item.setRect(tile.x0, tile.y0, cols * tile.level, rows * tile.level)
        self.item.setVisible(True)
        self.tile = tile
