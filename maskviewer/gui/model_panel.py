"""The model dock: name, inputs, outputs, and the layer tree with shapes and parameter counts."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from maskviewer.core.model_info import LayerInfo, ModelInfo


class ModelPanel(QWidget):
    """Shows a :class:`ModelInfo`; emits the path of a layer the user picks."""

    layer_selected = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("No model. File → Open Model… (Ctrl+Shift+O) or drop a .keras/.h5 file.")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b06000;")
        self.note.hide()
        self.io_tree = QTreeWidget()
        self.io_tree.setHeaderLabels(["Tensor", "Shape", "dtype"])
        self.io_tree.setRootIsDecorated(True)
        self.io_tree.setMaximumHeight(140)
        self.layers = QTreeWidget()
        self.layers.setHeaderLabels(["Layer", "Type", "Output shape", "Params"])
        self.layers.setUniformRowHeights(True)
        self.layers.itemSelectionChanged.connect(self._selection_changed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.note)
        lay.addWidget(self.io_tree)
        lay.addWidget(self.layers, 1)

    def set_model(self, info: ModelInfo | None) -> None:
        self.io_tree.clear()
        self.layers.clear()
        if info is None:
            self.title.setText("No model loaded.")
            self.note.hide()
            return
        self.title.setText(
            f"<b>{info.name}</b> — {info.kind}, {info.total_params:,} parameters"
        )
        self.note.setText(info.note)
        self.note.setVisible(bool(info.note))
        for group, tensors in (("Inputs", info.inputs), ("Outputs", info.outputs)):
            top = QTreeWidgetItem([f"{group} ({len(tensors)})", "", ""])
            self.io_tree.addTopLevelItem(top)
            for t in tensors:
                QTreeWidgetItem(top, [t.name, t.shape_text(), t.dtype])
            top.setExpanded(True)
        for layer in info.layers:
            self.layers.addTopLevelItem(self._item(layer))
        for col in range(4):
            self.layers.resizeColumnToContents(col)
        for col in range(3):
            self.io_tree.resizeColumnToContents(col)

    def _item(self, layer: LayerInfo) -> QTreeWidgetItem:
        item = QTreeWidgetItem([layer.name, layer.class_name, layer.shape_text(), f"{layer.params:,}"])
        item.setData(0, Qt.ItemDataRole.UserRole, layer.path)
        item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight)
        item.setToolTip(0, layer.path)
        for child in layer.children:
            item.addChild(self._item(child))
        return item

    def _selection_changed(self) -> None:
        items = self.layers.selectedItems()
        if items:
            self.layer_selected.emit(items[0].data(0, Qt.ItemDataRole.UserRole))
