"""The model page's top: the model's name, size and kind, and its inputs and outputs.

The layers are not listed here: the Layers tool's tree is the one list of them (and where a
layer is chosen). The input mapping sits under this panel on the same page.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.model_info import ModelInfo

NO_MODEL = "No model. File → Open Model… (Ctrl+Shift+O) or drop a .keras/.h5 file."


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class ModelPanel(QWidget):
    """Shows a :class:`ModelInfo`: a summary line and the inputs/outputs table."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel(NO_MODEL)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.linkActivated.connect(self._show_layers)
        self.summary.hide()
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b06000;")
        self.note.hide()
        self.io_tree = QTreeWidget()
        self.io_tree.setHeaderLabels(["Tensor", "Shape", "dtype"])
        self.io_tree.setRootIsDecorated(True)
        self.io_tree.setUniformRowHeights(True)
        self.io_tree.setIndentation(12)
        self.io_tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.io_tree.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.io_tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # long names elide
        self.io_tree.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.summary)
        lay.addWidget(self.note)
        lay.addWidget(self.io_tree)

    def set_model(self, info: ModelInfo | None) -> None:
        self.io_tree.clear()
        if info is None:
            self.title.setText(NO_MODEL)
            for w in (self.summary, self.note, self.io_tree):
                w.hide()
            return
        self.title.setText(f"<b>{info.name}</b> — {info.kind}, {info.total_params:,} parameters")
        layers = sum(1 for _ in info.iter_layers())
        self.summary.setText(
            f"{_count(len(info.inputs), 'input')}, {_count(len(info.outputs), 'output')}, "
            f"{_count(layers, 'layer')}"
            + (': browse them and pick one in the <a href="layers">Layers</a> tool.'
               if layers and info.probe_supported else ".")
        )
        self.summary.show()
        self.note.setText(info.note)
        self.note.setVisible(bool(info.note))
        for group, tensors in (("Inputs", info.inputs), ("Outputs", info.outputs)):
            top = QTreeWidgetItem([f"{group} ({len(tensors)})", "", ""])
            self.io_tree.addTopLevelItem(top)
            for t in tensors:
                item = QTreeWidgetItem(top, [t.name, t.shape_text(), t.dtype])
                item.setToolTip(0, f"{t.name} {t.shape_text()} {t.dtype}")
            top.setExpanded(True)
        self.io_tree.show()
        self._fit_height()

    def _fit_height(self) -> None:
        """As tall as its rows: the table never scrolls inside the page."""
        rows = sum(1 + self.io_tree.topLevelItem(i).childCount() for i in range(self.io_tree.topLevelItemCount()))
        row_h = self.io_tree.sizeHintForRow(0)
        row_h = row_h if row_h > 0 else self.fontMetrics().height() + 2
        height = self.io_tree.header().sizeHint().height() + rows * row_h + 2 * self.io_tree.frameWidth() + 2
        self.io_tree.setFixedHeight(min(height, 320))

    def _show_layers(self, _link: str) -> None:
        """The link in the summary: bring the Layers tool (its layer tree) in front."""
        show = getattr(self.window(), "show_panel", None)
        if callable(show):
            show("Layers")
