"""The Compare panel: methods to tick, how to score them, Run/Cancel, and the sortable table."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.faithfulness import BASELINES
from maskviewer.gui.compare.model import COLUMNS, THUMB_SIDE, CompareModel, RowView
from maskviewer.gui.run_state import show_progress, show_running

BASELINE_LABELS = {"black": "Black (zeros)", "blur": "Blurred image", "mean": "Mean colour"}


def _pixmap(rgb: np.ndarray) -> QPixmap:
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = a.shape[:2]
    image = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ComparePanel(QWidget):
    """Widgets bound to a :class:`CompareModel`; Run and Cancel are the tool's to connect."""

    row_clicked = Signal(str)

    def __init__(self, model: CompareModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        self.where = QLabel()
        self.where.setWordWrap(True)
        layout.addWidget(self.where)
        self.methods_box = QGroupBox("Methods")
        self.methods_grid = QGridLayout(self.methods_box)
        layout.addWidget(self.methods_box)
        layout.addWidget(self._settings())
        buttons = QHBoxLayout()
        self.run = QPushButton("Run")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        buttons.addWidget(self.run)
        buttons.addWidget(self.cancel)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.message = QLabel(model.message)
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.table = self._make_table()
        layout.addWidget(self.table, 1)

        model.choices_changed.connect(self.sync_choices)
        model.rows_changed.connect(self.fill_table)
        model.message_changed.connect(self.message.setText)
        model.selection_changed.connect(self._show_selection)
        self.sync_choices()
        self.fill_table()

    def _settings(self) -> QGroupBox:
        box = QGroupBox("Scoring")
        form = QFormLayout(box)
        m = self.model
        self.steps = QSpinBox()
        self.steps.setRange(2, 256)
        self.steps.setToolTip("Deletion and insertion remove or insert the pixels in this many equal steps.")
        self.steps.valueChanged.connect(m.set_steps)
        form.addRow("Steps", self.steps)
        self.baseline_combos: dict[str, QComboBox] = {}
        for mode, label in (("deletion", "Deleted pixels become"), ("insertion", "Insertion starts from")):
            combo = QComboBox()
            for b in BASELINES:
                combo.addItem(BASELINE_LABELS[b], b)
            combo.currentIndexChanged.connect(lambda _i, mode=mode, c=combo: m.set_baseline(mode, c.currentData()))
            self.baseline_combos[mode] = combo
            form.addRow(label, combo)
        row = QHBoxLayout()
        self.sanity = QCheckBox("Sanity check")
        self.sanity.setToolTip(
            "Randomise a copy of the model's weights from the output down and recompute each map: "
            "a map that explains the model changes (passes), one that does not change fails."
        )
        self.sanity_steps = QSpinBox()
        self.sanity_steps.setRange(2, 500)
        self.sanity_steps.setSuffix(" steps")
        self.sanity.toggled.connect(lambda on: m.set_sanity(on))
        self.sanity_steps.valueChanged.connect(lambda v: m.set_sanity(m.sanity, v))
        row.addWidget(self.sanity)
        row.addWidget(self.sanity_steps)
        form.addRow(row)
        return box

    def _make_table(self) -> QTableWidget:
        t = QTableWidget(0, len(COLUMNS))
        t.setHorizontalHeaderLabels([h for _k, h in COLUMNS])
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        t.verticalHeader().setVisible(False)
        t.verticalHeader().setDefaultSectionSize(THUMB_SIDE + 6)
        header = t.horizontalHeader()
        header.setMinimumSectionSize(40)
        width = t.fontMetrics().horizontalAdvance("Insertion  ") + 16  # the widest header line
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(col, width)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the names wrap, the page never scrolls sideways
        t.setWordWrap(True)
        t.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.sectionClicked.connect(self._header_clicked)
        t.cellClicked.connect(self._cell_clicked)
        t.setMinimumHeight(2 * THUMB_SIDE + 40)
        return t

    # -- model -> widgets ------------------------------------------------------------------------

    def sync_choices(self) -> None:
        m = self.model
        if list(self._boxes) != list(m.methods):
            for box in self._boxes.values():
                box.deleteLater()
            self._boxes = {}
            for i, (name, label) in enumerate(m.methods.items()):
                box = QCheckBox(label)
                if name == "edges":
                    box.setToolTip("The Sobel edges of the input: a map that never looks at the model, "
                                   "there to show a sanity check that fails.")
                box.toggled.connect(lambda on, name=name: m.set_chosen(name, on))
                self.methods_grid.addWidget(box, i // 2, i % 2)
                self._boxes[name] = box
        for name, box in self._boxes.items():
            box.blockSignals(True)
            box.setChecked(name in m.chosen)
            box.blockSignals(False)
        for widget, value in ((self.steps, m.steps), (self.sanity_steps, m.sanity_steps)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        for mode, combo in self.baseline_combos.items():
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(m.baselines[mode])))
            combo.blockSignals(False)
        self.sanity.blockSignals(True)
        self.sanity.setChecked(m.sanity)
        self.sanity.blockSignals(False)
        self.sanity_steps.setEnabled(m.sanity)

    def fill_table(self) -> None:
        rows = self.model.rows()
        t = self.table
        t.blockSignals(True)
        t.setRowCount(len(rows))
        for i, row in enumerate(rows):
            self._fill_row(i, row)
        keys = [k for k, _h in COLUMNS]
        order = Qt.SortOrder.DescendingOrder if self.model.descending else Qt.SortOrder.AscendingOrder
        t.horizontalHeader().setSortIndicator(keys.index(self.model.sort_key), order)
        t.blockSignals(False)
        self._show_selection(self.model.selected)

    def _fill_row(self, i: int, row: RowView) -> None:
        t = self.table
        name = QTableWidgetItem(row.label)
        if row.thumbnail is not None:
            name.setIcon(QIcon(_pixmap(row.thumbnail)))
        name.setData(Qt.ItemDataRole.UserRole, row.method)
        if row.error:
            name.setToolTip(row.error)
            name.setText(f"{row.label}: {row.error[:120]}")
        t.setItem(i, 0, name)
        for col, value in ((1, row.deletion), (2, row.insertion)):
            t.setItem(i, col, QTableWidgetItem(f"{value:.3f}" if np.isfinite(value) else "—"))
        sanity = QTableWidgetItem(row.sanity_text)
        if row.passed is False:
            sanity.setForeground(Qt.GlobalColor.red)
        t.setItem(i, 3, sanity)

    def _show_selection(self, method: str | None) -> None:
        t = self.table
        t.blockSignals(True)
        t.clearSelection()
        for i in range(t.rowCount()):
            item = t.item(i, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == method:
                t.selectRow(i)
        t.blockSignals(False)

    def set_running(self, running: bool) -> None:
        show_running(self.run, self.cancel, self.progress, running)

    def set_progress(self, done: int, total: int) -> None:
        show_progress(self.progress, done, total)

    # -- widgets -> model ------------------------------------------------------------------------

    def _header_clicked(self, section: int) -> None:
        self.model.sort_by(COLUMNS[section][0])

    def _cell_clicked(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.row_clicked.emit(item.data(Qt.ItemDataRole.UserRole))
