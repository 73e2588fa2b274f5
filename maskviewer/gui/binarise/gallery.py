"""The side-by-side dock: the input, each output, its binary mask, the reconstruction and the
difference, as small image tiles (the binary ones follow the threshold)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from maskviewer.core.threshold import ThresholdCache
from maskviewer.gui.binarise.model import BinariseModel
from maskviewer.gui.binarise.overlay import BLACK, MAGENTA, WHITE, colormap_lut
from maskviewer.gui.binarise.side_by_side import SideBySide, display_uint8


class Tile(QWidget):
    """A small titled image view for the side-by-side dock."""

    def __init__(self, title: str, caption: str = "") -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel(f"<b>{title}</b>")
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumSize(160, 160)
        self.view.setBackground("#202020")
        vb = self.view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        vb.addItem(self.item)
        self.caption = QLabel(caption)
        self.caption.setStyleSheet("color: gray;")
        self.caption.setWordWrap(True)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.cache: ThresholdCache | None = None  # binary tiles follow the threshold

    def show_image(self, image: np.ndarray, lut: np.ndarray | None = None) -> Tile:
        self.item.setImage(image, autoLevels=False, levels=(0, 255), lut=lut)
        return self


class GalleryPanel(QWidget):
    """Maps side by side: the input, each output, its binary, reconstruction and difference."""

    def __init__(self, model: BinariseModel) -> None:
        super().__init__()
        self.model = model
        self.all_outputs = QCheckBox("All outputs side by side")
        self.note = QLabel("")
        self.note.setStyleSheet("color: gray;")
        self.note.setWordWrap(True)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.all_outputs)
        lay.addWidget(self.note)
        lay.addWidget(scroll, 1)
        self.setMinimumHeight(280)
        self.tiles: dict[str, Tile] = {}
        self.all_outputs.toggled.connect(model.set_all_outputs)
        model.refreshed.connect(self.rebuild)
        model.gallery_changed.connect(self.rebuild)
        model.threshold_changed.connect(lambda _skip: self.refresh_luts())

    def clear(self) -> None:
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.hide()  # at once: deleteLater runs only after this rebuild
            tile.deleteLater()
        self.tiles = {}

    def add(self, key: str, tile: Tile, columns: int = 4) -> None:
        n = len(self.tiles)
        self.grid.addWidget(tile, n // columns, n % columns)
        self.tiles[key] = tile

    def rebuild(self) -> None:
        """Make the tiles afresh from the model's :meth:`~BinariseModel.side_by_side`."""
        self.clear()
        plan = self.model.side_by_side()
        if plan.shown:
            self._add_input_tiles(plan)
            self._add_map_tiles(plan)
            self._add_difference_tile(plan)
        self.note.setText(plan.note)
        self.refresh_luts()

    def _add_input_tiles(self, plan: SideBySide) -> None:
        if plan.fed is None:
            return
        lo, hi = plan.lo, plan.hi
        name, fed = plan.fed
        t = Tile(f"Input “{name}”", f"as fed to the model, {lo:.3g} … {hi:.3g}")
        self.add("input", t.show_image(display_uint8(fed, lo, hi)))
        if plan.reconstruction is not None:
            name, recon = plan.reconstruction
            t = Tile(f"Reconstruction “{name}”", "same scale as the input")
            self.add("reconstruction", t.show_image(display_uint8(recon, lo, hi)))

    def _add_map_tiles(self, plan: SideBySide) -> None:
        for name in plan.names:
            c = self.model.caches[name]
            t = Tile(name, f"{c.lo:.3g} … {c.hi:.3g}")
            self.add(f"map:{name}", t.show_image(c.codes, c.continuous_lut(colormap_lut("viridis"))))
            t = Tile(f"{name}: binary", "")
            t.cache = c
            self.add(f"binary:{name}", t)

    def _add_difference_tile(self, plan: SideBySide) -> None:
        diff = plan.difference
        if diff is None:
            return
        top = float(np.nanmax(diff)) if np.isfinite(diff).any() else 1.0
        t = Tile("Difference |input − reconstruction|", f"0 … {top:.3g}, mean {float(np.nanmean(diff)):.3g}")
        self.add("difference", t.show_image(colormap_lut("inferno")[display_uint8(diff, 0.0, top)]))

    def refresh_luts(self) -> None:
        """Recolour the binary tiles for the model's threshold and polarity."""
        t, invert = self.model.threshold, self.model.invert
        for key, tile in self.tiles.items():
            if tile.cache is not None and key.startswith("binary:"):
                c = tile.cache
                above = c._bin_min > t
                tile.show_image(c.codes, c.binary_lut(t, invert, WHITE, BLACK, MAGENTA, above))
                frac = int(c.counts.count_positive(t, invert)) / c.values.size
                op = "≤" if invert else ">"
                tile.caption.setText(f"{op} {t:.4g}: {frac:.1%} foreground")
