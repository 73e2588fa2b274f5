"""The Data set page: which data set, Run/Cancel with progress, the filter, the table of rows
(a :class:`QTableView` over the Qt-free :class:`~maskviewer.gui.dataset.model.DatasetTable`)
and the aggregates under it."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from maskviewer.gui.dataset.jobs import THUMB_SIDE
from maskviewer.gui.dataset.model import COLUMN_KEYS, COLUMNS, FILTERS, DatasetTable, cell_text
from maskviewer.gui.dataset.plots import AggregatesView
from maskviewer.gui.run_state import show_progress, show_running

NO_DATA_TEXT = ("No data set open. File → Open Data Set… takes a folder of images (class sub-folders "
                "give the labels), a CSV or JSON list, or an .npz of arrays; with a demo open, "
                "Help → Demo's Held-out Set opens the images its score was measured on.")
WRONG = QColor(220, 60, 60, 45)
FAILED = QColor(150, 150, 150, 60)
_Index = QModelIndex | QPersistentModelIndex


def _pixmap(rgb: np.ndarray) -> QPixmap:
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = a.shape[:2]
    return QPixmap.fromImage(QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class TableAdapter(QAbstractTableModel):
    """Shows a :class:`DatasetTable`'s view; thumbnails come from ``thumbs`` (asked for the
    rows drawn, see :meth:`wanted`)."""

    def __init__(self, table: DatasetTable, thumbs: Any = None) -> None:
        super().__init__()
        self.table = table
        self.thumbs = thumbs
        self._pixmaps: dict[str, QPixmap] = {}
        self.missing: set[int] = set()  # view rows drawn without their thumbnail

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.table.view)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.table.title(COLUMN_KEYS[section])
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            key = COLUMN_KEYS[section]
            return {"correct": "correct (✓) or not (✗)", "ablation": "how the answer moves with the mask replaced",
                    "loss": "cross-entropy loss (classes) or signed error (values)"}.get(key) or self.table.tip(key) or None
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.table.view):
            return None
        row = self.table.view_row(index.row())
        column = COLUMN_KEYS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(row, column, self.table.classes)
        if role == Qt.ItemDataRole.DecorationRole and column == "thumb":
            return self._thumb(index.row(), str(row.get("key")))
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.get("error_message") or row.get("source") or None
        if role == Qt.ItemDataRole.BackgroundRole:
            if row.get("error_message"):
                return FAILED
            if row.get("correct") == 0:
                return WRONG
        if role == Qt.ItemDataRole.TextAlignmentRole and column in ("correct", "loss", "dice", "iou"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _thumb(self, view_row: int, key: str) -> QPixmap | None:
        pix = self._pixmaps.get(key)
        if pix is not None:
            return pix
        got = self.thumbs.get(key) if self.thumbs is not None else None
        if got is None:
            self.missing.add(view_row)
            return None
        pix = self._pixmaps[key] = _pixmap(got)
        return pix

    def wanted(self) -> list[int]:
        """View rows drawn without a thumbnail since the last call."""
        rows, self.missing = sorted(self.missing), set()
        return rows

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def forget_pictures(self) -> None:
        self._pixmaps.clear()

    def thumbs_arrived(self, keys: list[str]) -> None:
        rows = [p for k in keys if (p := self.table.position(k)) is not None]
        if rows:
            top, bottom = self.index(min(rows), 0), self.index(max(rows), 0)
            self.dataChanged.emit(top, bottom, [Qt.ItemDataRole.DecorationRole])


class DatasetPanel(QWidget):
    """The page's widgets; the tool connects the buttons. ``row_chosen(position)``: the user
    picked a row of the view (click or arrow keys)."""

    row_chosen = Signal(int)

    def __init__(self, table: DatasetTable, thumbs: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = table
        column = QVBoxLayout(self)
        self.title = QLabel(NO_DATA_TEXT)
        self.title.setWordWrap(True)
        column.addWidget(self.title)
        opens = QHBoxLayout()
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("A folder of images, a CSV/JSON list or an .npz/.npy of arrays")
        self.open_menu = QMenu(self.open_button)  # the tool puts File → Open Data Set… in it
        self.open_button.setMenu(self.open_menu)
        self.demo_button = QPushButton("Demo's held-out set")
        self.demo_button.setEnabled(False)
        opens.addWidget(self.open_button)
        opens.addWidget(self.demo_button)
        column.addLayout(opens)
        self.ablation = QCheckBox("Mask ablation (no mask, all ones, random, inverted)")
        self.ablation.setToolTip("Also run each image with its mask replaced; needs the mask fed to the model")
        self.patches = QCheckBox("Patch rules (the Patches tool's grid)")
        self.patches.setToolTip("Run every patch and score each way of combining them (mean, max, vote, geometric)")
        column.addWidget(self.ablation)
        column.addWidget(self.patches)
        buttons = QHBoxLayout()
        self.run = QPushButton("Run")
        self.run.setToolTip("Score the model on every image; unchanged images keep their saved rows")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        buttons.addWidget(self.run)
        buttons.addWidget(self.cancel)
        column.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        column.addWidget(self.progress)
        self.message = QLabel()
        self.message.setWordWrap(True)
        column.addWidget(self.message)
        show = QHBoxLayout()
        show.addWidget(QLabel("Show"))
        self.filter = QComboBox()
        show.addWidget(self.filter, 1)
        column.addLayout(show)
        self.adapter = TableAdapter(table, thumbs)
        self.view = self._make_view()
        column.addWidget(self.view, 3)
        self.aggregates = AggregatesView()
        column.addWidget(self.aggregates, 2)
        self.filter.currentIndexChanged.connect(self._filter_picked)
        table.rows_changed.connect(self.refresh)
        table.current_changed.connect(self.show_current)
        self.refresh()

    def _make_view(self) -> QTableView:
        v = QTableView()
        v.setModel(self.adapter)
        v.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        v.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        v.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        v.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        v.verticalHeader().setDefaultSectionSize(THUMB_SIDE + 4)
        v.verticalHeader().hide()
        v.setWordWrap(False)
        v.setTextElideMode(Qt.TextElideMode.ElideLeft)  # keys differ at their ends (class/name, [row])
        v.setMinimumHeight(6 * (THUMB_SIDE + 4))
        h = v.horizontalHeader()
        h.setSectionsClickable(True)
        h.setSortIndicatorShown(True)
        h.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        h.setStretchLastSection(False)
        widths = {"thumb": THUMB_SIDE + 8, "key": 84, "prediction": 80, "truth": 44, "correct": 24,
                  "loss": 52, "dice": 52, "iou": 52, "ablation": 120}
        for i, key in enumerate(COLUMN_KEYS):
            v.setColumnWidth(i, widths[key])
        h.sectionClicked.connect(lambda i: self.table_model.sort_by(COLUMN_KEYS[i]))
        v.selectionModel().currentRowChanged.connect(self._row_changed)
        return v

    # -- following the table ---------------------------------------------------------------------

    def refresh(self) -> None:
        """The rows, columns, filters and sort mark as the table now has them."""
        t = self.table_model
        self.adapter.reset()
        present = set(t.columns())
        h = self.view.horizontalHeader()
        for i, key in enumerate(COLUMN_KEYS):
            self.view.setColumnHidden(i, key not in present)
            if key in ("dice", "iou"):  # "Dice @0.37≈" whole, beside the sort mark
                need = h.fontMetrics().horizontalAdvance(t.title(key)) + 24
                if self.view.columnWidth(i) < need:
                    self.view.setColumnWidth(i, need)
        if t.sort_key is not None:
            order = Qt.SortOrder.DescendingOrder if t.descending else Qt.SortOrder.AscendingOrder
            h.setSortIndicator(COLUMN_KEYS.index(t.sort_key), order)
        else:
            h.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        filters = t.filters()
        if [self.filter.itemData(i) for i in range(self.filter.count())] != filters:
            self.filter.blockSignals(True)
            self.filter.clear()
            for f in filters:
                self.filter.addItem(FILTERS[f], f)
            self.filter.blockSignals(False)
        self.filter.setCurrentIndex(max(0, self.filter.findData(t.filter)))
        self.show_current(t.current)

    def show_current(self, key: str | None) -> None:
        """Select (and scroll to) the row ``key`` without choosing it again."""
        pos = self.table_model.position(key)
        sm = self.view.selectionModel()
        sm.blockSignals(True)
        if pos is None:
            sm.clearSelection()
        else:
            idx = self.adapter.index(pos, 1)
            sm.setCurrentIndex(idx, sm.SelectionFlag.ClearAndSelect | sm.SelectionFlag.Rows)
            self.view.scrollTo(idx)
        sm.blockSignals(False)
        self.view.viewport().update()

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.row_chosen.emit(current.row())

    def _filter_picked(self, i: int) -> None:
        name = self.filter.itemData(i)
        if name and name != self.table_model.filter:
            self.table_model.set_filter(name)

    # -- state -----------------------------------------------------------------------------------

    def set_running(self, running: bool) -> None:
        show_running(self.run, self.cancel, self.progress, running)

    def set_progress(self, done: int, total: int) -> None:
        show_progress(self.progress, done, total)
