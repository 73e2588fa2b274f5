"""The Patches tool's per-patch table: a Qt item model over the run's probability array."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, Qt


class PatchTableModel(QAbstractTableModel):
    """Rows: patches; columns: position, top class and the probabilities of the shown classes.

    Cells are formatted when Qt asks for them, so a run of many thousands of patches does not
    build a table of Python objects on the GUI thread.
    """

    FIXED = ("patch", "row", "col", "x", "y", "top class", "p(top)")
    #: the fixed columns per kind family: values have no "top" entry
    FIXED_BY_FAMILY = {"classes": FIXED, "labels": ("patch", "row", "col", "x", "y", "top label", "p(top)"),
                       "values": ("patch", "row", "col", "x", "y")}

    def __init__(self) -> None:
        super().__init__()
        self.rects = np.zeros((0, 4), dtype=np.int64)
        self.cols = 1
        self.probs = np.zeros((0, 0))
        self.classes: list[int] = []
        self.drop: np.ndarray | None = None
        self.names: list[str] = []
        self.header: list[str] = []
        self.fixed: tuple[str, ...] = self.FIXED

    def set_table(
        self,
        rects: np.ndarray,
        cols: int,
        probs: np.ndarray,
        classes: list[int],
        names: list[str],
        drop: tuple[str, np.ndarray] | None = None,
        family: str = "classes",
    ) -> None:
        """Show ``probs[:, classes]`` per patch (and one occlusion-drop column); ``family``
        ``"values"``: the numbers are values, named as they are (``count``)."""
        self.beginResetModel()
        self.rects, self.cols, self.probs, self.classes = rects, max(cols, 1), probs, classes
        self.fixed = self.FIXED_BY_FAMILY.get(family, self.FIXED)
        shown = (lambda n: n) if family == "values" else (lambda n: f"p({n})")
        self.header = list(self.fixed) + [shown(names[i]) for i in classes]
        self.names = names
        self.drop = None
        if drop is not None:
            self.header.append(drop[0])
            self.drop = drop[1]
        self.endResetModel()

    def clear(self) -> None:
        self.set_table(np.zeros((0, 4), dtype=np.int64), 1, np.zeros((0, 0)), [], [])

    def rowCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.probs)

    def columnCount(self, parent=None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.header)

    def value(self, row: int, col: int) -> Any:
        """The cell's value (int, str or float)."""
        fixed = len(self.fixed)
        if col < fixed:
            if col == 0:
                return row
            if col in (1, 2):
                return divmod(row, self.cols)[col - 1]
            if col in (3, 4):
                return int(self.rects[row, col - 3])
            top = int(np.argmax(self.probs[row]))
            return self.names[top] if col == 5 else float(self.probs[row, top])
        col -= fixed
        if col < len(self.classes):
            return float(self.probs[row, self.classes[col]])
        return float(self.drop[row])

    def data(self, index, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.value(index.row(), index.column())
            return f"{value:.4f}" if isinstance(value, float) else str(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() != 5:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        header = self.header
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return header[section] if section < len(header) else None
        return None
