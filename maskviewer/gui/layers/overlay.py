"""The heatmap over the image: the Layers tool's map, coloured through a 256-entry table."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from maskviewer.core.heatmap import colormap_lut
from maskviewer.gui.layers.drawing import Heatmap


class HeatmapOverlay(pg.ImageItem):
    """An image item showing a :class:`~maskviewer.gui.layers.model.Heatmap` over its frame.

    Recolouring only swaps the colour table: the indices are computed once per map.
    """

    def __init__(self) -> None:
        super().__init__(axisOrder="row-major")
        self.hide()

    def draw(self, heatmap: Heatmap | None, colormap: str, opacity: float) -> None:
        """Show ``heatmap`` in ``colormap`` at ``opacity`` (0..1); hide when it is None."""
        if heatmap is None:
            self.hide()
            return
        self.setImage(heatmap.indices, autoLevels=False, levels=(0, 255), lut=colormap_lut(colormap))
        f = heatmap.frame
        self.setRect(f.x, f.y, f.width, f.height)
        self.setOpacity(opacity)
        self.show()

    def displayed_rgb(self) -> np.ndarray | None:
        """The overlay as drawn (before opacity): ``lut[indices]``, ``(H, W, 3)`` uint8."""
        if not self.isVisible() or self.image is None:
            return None
        return np.asarray(self.lut)[self.image]
