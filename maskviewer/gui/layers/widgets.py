"""The Layers dock's display widgets: the colour bar, the channel grid and the channel ranking."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.heatmap import colormap_lut
from maskviewer.gui.layers.drawing import Ranking

#: most channels listed in the ranking table
MAX_RANKED = 512
#: a tile narrower than this on screen (pixels) gets no number: the numbers would overlap
MIN_NUMBERED_TILE = 16


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class ColorBar(QWidget):
    """A horizontal colour gradient with the value range under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QLabel()
        self.bar.setFixedHeight(14)
        self.bar.setScaledContents(True)
        self.bar.setMinimumWidth(64)  # the gradient stretches: its 256 px never widen the panel
        self.bar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.lo = QLabel("")
        self.hi = QLabel("")
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hi.setAlignment(Qt.AlignmentFlag.AlignRight)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.lo)
        row.addWidget(self.caption, 1)
        row.addWidget(self.hi)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        lay.addWidget(self.bar)
        lay.addLayout(row)
        self.range: tuple[float, float] | None = None
        self.set_colormap("viridis")

    def set_colormap(self, name: str) -> None:
        """Paint the gradient of colour map ``name``."""
        lut = np.ascontiguousarray(np.repeat(colormap_lut(name)[None], 2, axis=0))
        img = QImage(lut.data, 256, 2, 256 * 3, QImage.Format.Format_RGB888).copy()
        self.bar.setPixmap(QPixmap.fromImage(img))

    def set_range(self, lo: float | None, hi: float | None, caption: str = "") -> None:
        """Write the values at both ends (none when either is None) and what they measure."""
        if lo is None or hi is None:
            self.range = None
            self.lo.setText("")
            self.hi.setText("")
        else:
            self.range = (lo, hi)
            self.lo.setText(_fmt(lo))
            self.hi.setText(_fmt(hi))
        self.caption.setText(caption)


class TileNumbers(QGraphicsItem):
    """The channel number in the corner of each grid tile, in screen pixels at any zoom.

    ``labels`` are ``(x, y, text)`` in grid pixels (a tile's top-left corner); nothing is drawn
    while a tile is narrower than :data:`MIN_NUMBERED_TILE` screen pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[tuple[float, float, str]] = []
        self.tile_w = 0.0
        self._rect = QRectF()
        self.font = QFont()
        self.font.setPixelSize(9)

    def set_labels(self, labels: list[tuple[float, float, str]], tile_w: float, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self.labels, self.tile_w, self._rect = labels, float(tile_w), QRectF(rect)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt's name)
        return self._rect

    def drawn(self, scale: float) -> bool:
        """Whether the numbers are drawn at ``scale`` screen pixels per grid pixel."""
        return bool(self.labels) and self.tile_w * scale >= MIN_NUMBERED_TILE

    def paint(self, painter: QPainter, _option, _widget=None) -> None:
        t = painter.transform()
        if not self.drawn(abs(t.m11()) or abs(t.m12())):
            return
        pen, font = painter.pen(), painter.font()  # given back as found
        painter.resetTransform()
        painter.setFont(self.font)
        for x, y, text in self.labels:
            p = t.map(QPointF(x, y)) + QPointF(2, 10)
            painter.setPen(QColor(0, 0, 0, 200))  # a shadow keeps white digits readable on yellow
            painter.drawText(p + QPointF(1, 1), text)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(p, text)
        painter.setTransform(t)
        painter.setPen(pen)
        painter.setFont(font)


class GridView(pg.GraphicsLayoutWidget):
    """The channel grid; a click on a tile emits its position in grid pixels."""

    clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.view = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.highlight = pg.QtWidgets.QGraphicsRectItem()
        self.highlight.setPen(pg.mkPen("#ff4040", width=0))
        self.highlight.hide()
        self.view.addItem(self.highlight)
        self.numbers = TileNumbers()
        self.view.addItem(self.numbers)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.setMinimumHeight(160)

    def show_grid(
        self,
        rgba: np.ndarray,
        highlight: tuple[float, float, float, float] | None,
        layout=None,
        channels: np.ndarray | None = None,
    ) -> None:
        """Draw the tiles, frame the selected one (none when ``highlight`` is None) and write
        each tile's channel number (``channels[i]`` on tile ``i`` of ``layout``)."""
        self.item.setImage(rgba, autoLevels=False, levels=(0, 255))
        labels = []
        if layout is not None and channels is not None:
            for i, c in enumerate(np.asarray(channels).reshape(-1)[: layout.count]):
                x, y = layout.tile_origin(i)
                labels.append((float(x), float(y), str(int(c))))
        w = layout.tile_w if layout is not None else 0
        self.numbers.set_labels(labels, w, QRectF(0, 0, rgba.shape[1], rgba.shape[0]))
        if highlight is None:
            self.highlight.hide()
        else:
            self.highlight.setRect(*highlight)
            self.highlight.show()

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.item.image is None:
            return
        p = self.item.mapFromScene(event.scenePos())
        self.clicked.emit(p.x(), p.y())


class RankingTable(QTableWidget):
    """Channels in ranking order; a click on a row emits its channel."""

    channel_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 3, parent)
        self.setHorizontalHeaderLabels(["#", "Channel", "Mean"])
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)  # more rows in view
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setMinimumHeight(90)  # the header and a few channels, however short the page
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.cellClicked.connect(self._row_clicked)

    def show_ranking(self, ranking: Ranking | None) -> None:
        """List the channels best first (the first ``bold`` in bold); empty when None."""
        if ranking is None:
            self.setRowCount(0)
            return
        masked = ranking.scores is not None
        self.setColumnCount(4 if masked else 3)
        self.setHorizontalHeaderLabels(["#", "Channel", ranking.value_label] + (["Mean in mask"] if masked else []))
        rows = min(len(ranking.order), MAX_RANKED)
        self.setRowCount(rows)
        for r in range(rows):
            c = int(ranking.order[r])
            cells = [str(r + 1), str(c), _fmt(float(ranking.values[c]))]
            if masked:
                cells.append(_fmt(float(ranking.scores[c])))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, c)
                if r < ranking.bold:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.setItem(r, col, item)

    def _row_clicked(self, row: int, _col: int) -> None:
        item = self.item(row, 1)
        if item is not None:
            self.channel_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))
