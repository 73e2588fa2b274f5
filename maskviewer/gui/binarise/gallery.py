"""The side-by-side window: the input, each output, its binary mask, the reconstruction and the
difference, as image tiles that fill the window, each showing the whole picture, with pan and
zoom linked (the binary tiles follow the threshold).

It is a window of its own, sized from the main window (not a dock squeezed under the image):
Binarise → Side by side… and View → Side by Side open it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.threshold import ThresholdCache
from maskviewer.gui.binarise.model import BinariseModel
from maskviewer.gui.binarise.overlay import BLACK, MAGENTA, WHITE, colormap_lut
from maskviewer.gui.binarise.side_by_side import SideBySide, display_uint8, tile_columns

TILE_MIN = 140  # smallest picture side, in pixels
FIT_PADDING = 0.02


def _line(text: str, style: str = "") -> QLabel:
    """A one-line label that never widens its tile (the full text is its tooltip)."""
    label = QLabel(text)
    label.setToolTip(text.replace("<b>", "").replace("</b>", ""))
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    if style:
        label.setStyleSheet(style)
    return label


class Tile(QWidget):
    """A titled image view of the side-by-side window; its picture spans the shared frame."""

    def __init__(self, title: str, caption: str = "", frame: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.title = _line(f"<b>{title}</b>")
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumSize(TILE_MIN, TILE_MIN)
        self.view.setBackground("#202020")
        self.vb = self.view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.item)
        self.caption = _line(caption, "color: gray;")
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.caption)
        self.frame = frame  # (width, height) every tile's picture is drawn over
        self.cache: ThresholdCache | None = None  # binary tiles follow the threshold

    def show_image(self, image: np.ndarray, lut: np.ndarray | None = None) -> Tile:
        self.item.setImage(image, autoLevels=False, levels=(0, 255), lut=lut)
        self.item.setRect(0, 0, *self.frame)
        return self

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.setToolTip(text)

    def fit(self) -> None:
        """Show the whole picture."""
        self.vb.setRange(QRectF(0, 0, *self.frame), padding=FIT_PADDING)


class GalleryPanel(QWidget):
    """Maps side by side: the input, each output, its binary, reconstruction and difference."""

    def __init__(self, model: BinariseModel) -> None:
        super().__init__()
        self.model = model
        self.all_outputs = QCheckBox("All outputs")
        self.all_outputs.setToolTip("Every image-shaped output side by side, not only the one binarised")
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show every picture whole (pan: drag, zoom: wheel; the tiles move together)")
        self.note = QLabel("")
        self.note.setStyleSheet("color: gray;")
        self.note.setWordWrap(True)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.grid_host)
        self.scroll.viewport().installEventFilter(self)
        top = QHBoxLayout()
        top.addWidget(self.all_outputs)
        top.addWidget(self.note, 1)
        top.addWidget(self.fit_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.scroll, 1)
        self.tiles: dict[str, Tile] = {}
        self.columns = 1
        self.frame = (1.0, 1.0)
        self.zoomed = False  # the user panned or zoomed: a resize keeps their view
        self._linking = False
        self.all_outputs.toggled.connect(model.set_all_outputs)
        self.fit_button.clicked.connect(self.fit)
        model.refreshed.connect(self._changed)
        model.gallery_changed.connect(self._changed)
        model.threshold_changed.connect(lambda _skip: self.refresh_luts())

    def _changed(self) -> None:
        if self.isVisible():  # a hidden window is rebuilt when it opens
            self.rebuild()

    def clear(self) -> None:
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.hide()  # at once: deleteLater runs only after this rebuild
            tile.deleteLater()
        self.tiles = {}

    def add(self, key: str, tile: Tile) -> None:
        self.tiles[key] = tile
        tile.vb.sigRangeChangedManually.connect(lambda *_a, vb=tile.vb: self._follow(vb))

    def rebuild(self) -> None:
        """Make the tiles afresh from the model's :meth:`~BinariseModel.side_by_side`."""
        self.clear()
        plan = self.model.side_by_side()
        if plan.shown:
            self.frame = self._frame_of(plan)
            self._add_input_tiles(plan)
            self._add_map_tiles(plan)
            self._add_difference_tile(plan)
        self.note.setText(plan.note)
        self.refresh_luts()
        self.columns = 0
        self.arrange()
        self.fit()
        QTimer.singleShot(0, lambda: None if self.zoomed else self.fit())  # once laid out

    def _frame_of(self, plan: SideBySide) -> tuple[float, float]:
        """The picture frame all tiles share: the input's size (else the first map's)."""
        if plan.fed is not None:
            shape = plan.fed[1].shape
        else:
            shape = self.model.caches[plan.names[0]].codes.shape if plan.names else (1, 1)
        return float(shape[1]), float(shape[0])

    def _tile(self, title: str, caption: str = "") -> Tile:
        return Tile(title, caption, self.frame)

    def _add_input_tiles(self, plan: SideBySide) -> None:
        if plan.fed is None:
            return
        lo, hi = plan.lo, plan.hi
        name, fed = plan.fed
        t = self._tile(f"Input “{name}”", f"as fed to the model, {lo:.3g} … {hi:.3g}")
        self.add("input", t.show_image(display_uint8(fed, lo, hi)))
        if plan.reconstruction is not None:
            name, recon = plan.reconstruction
            t = self._tile(f"Reconstruction “{name}”", "same scale as the input")
            self.add("reconstruction", t.show_image(display_uint8(recon, lo, hi)))

    def _add_map_tiles(self, plan: SideBySide) -> None:
        for name in plan.names:
            c = self.model.caches[name]
            t = self._tile(name, f"{c.lo:.3g} … {c.hi:.3g} (viridis)")
            self.add(f"map:{name}", t.show_image(c.codes, c.continuous_lut(colormap_lut("viridis"))))
            t = self._tile(f"{name}: binary", "")
            t.cache = c
            self.add(f"binary:{name}", t)

    def _add_difference_tile(self, plan: SideBySide) -> None:
        diff = plan.difference
        if diff is None:
            return
        top = float(np.nanmax(diff)) if np.isfinite(diff).any() else 1.0
        t = self._tile("Difference |input − reconstruction|", f"0 … {top:.3g}, mean {float(np.nanmean(diff)):.3g}")
        self.add("difference", t.show_image(colormap_lut("inferno")[display_uint8(diff, 0.0, top)]))

    # -- layout, fit and linked views -------------------------------------------------------------

    def arrange(self) -> None:
        """Lay the tiles out in the columns that give the largest pictures."""
        area = self.scroll.viewport().size()
        w, h = self.frame
        cols = tile_columns(len(self.tiles), area.width(), area.height(), w / h if h else 1.0)
        if cols == self.columns:
            return
        self.columns = cols
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
        for n, tile in enumerate(self.tiles.values()):
            self.grid.addWidget(tile, n // cols, n % cols)
        for c in range(cols):
            self.grid.setColumnStretch(c, 1)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.scroll.viewport() and event.type() == event.Type.Resize and self.tiles:
            self.arrange()
            if not self.zoomed:
                QTimer.singleShot(0, lambda: None if self.zoomed else self.fit())
        return False

    def fit(self) -> None:
        """Show every picture whole."""
        self.zoomed = False
        self._linking = True
        try:
            for tile in self.tiles.values():
                tile.fit()
        finally:
            self._linking = False

    def _follow(self, source: pg.ViewBox) -> None:
        """The user panned or zoomed ``source``: the other tiles show the same part."""
        if self._linking:
            return
        self.zoomed = True
        self._linking = True
        try:
            rect = source.viewRect()
            for tile in self.tiles.values():
                if tile.vb is not source:
                    tile.vb.setRange(rect, padding=0)
        finally:
            self._linking = False

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
                tile.set_caption(f"{op} {t:.4g}: {frac:.1%} foreground (white)")


class SideBySideWindow(QWidget):
    """The side-by-side panel in a window of its own, sized from the main window."""

    def __init__(self, panel: GalleryPanel, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Side by side — maskviewer")
        self.panel = panel
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(panel)

    def open(self) -> None:
        """Show the window (the first time sized to most of the main window) with fresh tiles."""
        main = self.parentWidget()
        if not self.isVisible() and main is not None:
            geo = main.geometry()
            w, h = max(480, int(geo.width() * 0.9)), max(360, int(geo.height() * 0.85))
            self.setGeometry(geo.x() + (geo.width() - w) // 2, geo.y() + (geo.height() - h) // 2, w, h)
        self.show()
        self.raise_()
        self.activateWindow()
        self.panel.rebuild()
