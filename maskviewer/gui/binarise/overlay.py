"""The Binarise tool's canvas overlays: the map (binary or continuous) and the TP / FP / FN layers.

Each overlay is an image of the cached display codes with a lookup table, so a threshold change
recolours a table rather than re-binarising the map (see
:class:`maskviewer.core.threshold.ThresholdCache`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import FN_COLOUR, FP_COLOUR, TP_COLOUR
from maskviewer.gui.binarise.model import BinariseModel

TINT = (0, 220, 255)  # foreground colour of the "over input" view
WHITE, BLACK, MAGENTA, CLEAR = (255, 255, 255, 255), (0, 0, 0, 255), (255, 0, 255, 255), (0, 0, 0, 0)


def colormap_lut(name: str) -> np.ndarray:
    """A pyqtgraph colour map as a 256-entry RGB table."""
    return pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)


def show_codes(item: pg.ImageItem, codes: np.ndarray, lut: np.ndarray, frame: Frame) -> None:
    """Show display ``codes`` through ``lut`` on ``item``, stretched over ``frame``."""
    item.setImage(codes, autoLevels=False, levels=(0, 255), lut=lut)
    item.setRect(frame.x, frame.y, frame.width, frame.height)
    item.show()


class BinariseOverlay:
    """Three image items over the image, drawn from ``model``.

    Attributes
    ----------
    map_item
        The map in the chosen view (:data:`~maskviewer.gui.binarise.model.VIEWS`).
    err_in, err_out
        True positives and false negatives (inside the reference), false positives (outside).
    """

    def __init__(self, model: BinariseModel) -> None:
        self.model = model
        self.map_item = pg.ImageItem(axisOrder="row-major")
        self.err_in = pg.ImageItem(axisOrder="row-major")
        self.err_out = pg.ImageItem(axisOrder="row-major")
        for item in self.items():
            item.hide()  # placed over the image by install(), with the Binarise tab
        for event in (model.refreshed, model.threshold_changed, model.display_changed):
            event.connect(lambda *_a: self.refresh())

    def items(self) -> tuple[pg.ImageItem, pg.ImageItem, pg.ImageItem]:
        return self.map_item, self.err_in, self.err_out

    def refresh(self) -> None:
        """Redraw from the model's map, threshold, polarity, view and reference."""
        m = self.model
        cache, src = m.cache, m.source
        if cache is None or src is None or src.frame is None:
            for item in self.items():
                item.hide()
            return
        f = src.frame
        if m.view == "Hidden":
            self.map_item.hide()
        else:
            show_codes(self.map_item, cache.codes, self._map_lut(), f)
        if m.errors_shown():
            t, inv, above = m.threshold, m.invert, m.above
            show_codes(self.err_in, m.scoring.inside, cache.binary_lut(t, inv, TP_COLOUR, FN_COLOUR, FN_COLOUR, above), f)
            show_codes(self.err_out, m.scoring.outside, cache.binary_lut(t, inv, FP_COLOUR, CLEAR, CLEAR, above), f)
        else:
            self.err_in.hide()
            self.err_out.hide()

    def _map_lut(self) -> np.ndarray:
        m = self.model
        cache = m.cache
        alpha = int(round(m.opacity * 2.55))
        if m.view == "Continuous":
            return cache.continuous_lut(colormap_lut("viridis"), 255)
        if m.view == "Continuous over input":
            return cache.continuous_lut(colormap_lut("viridis"), alpha)
        if m.view == "Binary":
            return cache.binary_lut(m.threshold, m.invert, WHITE, BLACK, MAGENTA, m.above)
        return cache.binary_lut(m.threshold, m.invert, (*TINT, alpha), CLEAR, (255, 0, 255, alpha), m.above)
