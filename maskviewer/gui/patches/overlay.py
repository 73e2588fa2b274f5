"""The Patches tool's canvas overlays: the map under the rectangles, the current patch on top."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from maskviewer.core.patches import PatchGrid
from maskviewer.gui.patches.results import MapLayer

PANEL = "Patches"  # the overlays are drawn while this panel's tab is in front


#: grids of more patches than this are not outlined one by one: millions of outlines (a small
#: patch on a 14,000² image) would take hundreds of MB and show as a solid colour anyway
MAX_OUTLINED = 20_000

class PatchOverlay:
    """The canvas items of the Patches tool, added to ``window`` under its panel.

    Attributes
    ----------
    map_item : pg.ImageItem
        The per-pixel map (class score or occlusion drop), z 5.
    rects_item : pg.PlotCurveItem
        Every patch's outline as one NaN-separated curve, z 20.
    current_item : QGraphicsRectItem
        The current patch, z 21.
    """

    def __init__(self, window) -> None:
        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.map_item.setVisible(False)
        window.add_panel_overlay(PANEL, self.map_item, 5)
        self.rects_item = pg.PlotCurveItem(pen=pg.mkPen((255, 220, 0, 150), width=1), connect="finite")
        window.add_panel_overlay(PANEL, self.rects_item, 20)
        self.current_item = QGraphicsRectItem()
        pen = QPen(QColor(255, 90, 0))
        pen.setWidthF(2.5)
        pen.setCosmetic(True)
        self.current_item.setPen(pen)
        self.current_item.setVisible(False)
        window.add_panel_overlay(PANEL, self.current_item, 21)

    def draw_rects(self, grid: PatchGrid | None, index: int) -> None:
        """Outline every patch of ``grid`` and mark patch ``index``."""
        if grid is None:
            self.rects_item.setData([], [])
            self.current_item.setVisible(False)
            return
        if grid.count > MAX_OUTLINED:  # only the current patch is outlined
            self.rects_item.setData([], [])
            self.draw_current(grid, index)
            return
        r = grid.rects().astype(np.float64)
        x0, y0 = r[:, 0], r[:, 1]
        x1, y1 = x0 + r[:, 2], y0 + r[:, 3]
        nan = np.full_like(x0, np.nan)
        # one closed outline per patch, NaN-separated: a single item however many patches
        xs = np.stack([x0, x1, x1, x0, x0, nan], axis=1).reshape(-1)
        ys = np.stack([y0, y0, y1, y1, y0, nan], axis=1).reshape(-1)
        self.rects_item.setData(xs, ys)
        self.draw_current(grid, index)

    def draw_current(self, grid: PatchGrid | None, index: int) -> None:
        if grid is None:
            self.current_item.setVisible(False)
            return
        x, y, w, h = (float(v) for v in grid.rects()[index])
        self.current_item.setRect(x, y, w, h)
        self.current_item.setVisible(True)

    def rects_drawn(self) -> np.ndarray:
        """The rectangles drawn as ``(N, 4)`` ``x, y, width, height`` (read back from the item)."""
        x, y = self.rects_item.getData()
        if x is None or len(x) == 0:
            return np.zeros((0, 4))
        x = np.asarray(x).reshape(-1, 6)
        y = np.asarray(y).reshape(-1, 6)
        return np.stack([x[:, 0], y[:, 0], x[:, 1] - x[:, 0], y[:, 2] - y[:, 1]], axis=1)

    def draw_map(self, layer: MapLayer | None, grid: PatchGrid | None, opacity: int) -> None:
        """Colour ``layer`` over the image at ``opacity`` percent (hide it when None)."""
        if layer is None or grid is None:
            self.map_item.setVisible(False)
            return
        lut = pg.colormap.get(layer.cmap).getLookupTable(0.0, 1.0, 256, alpha=True)
        rgba = lut[(layer.level * 255 + 0.5).astype(np.intp)]
        rgba[..., 3] = np.where(np.isfinite(layer.values), int(opacity * 2.55), 0)
        self.map_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.map_item.setRect(0, 0, grid.width, grid.height)
        self.map_item.setVisible(True)
