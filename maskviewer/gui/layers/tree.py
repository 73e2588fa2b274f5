"""The model's layer tree: where a layer is chosen for the Layers view.

Nested models are rows with their layers as children. Three columns fit a narrow panel
(layer, output shape, how the layer is shown); the layer's type and parameter count are in
the row's tooltip and in two optional columns the header's context menu shows. A filter box
above the tree hides the layers whose name or type does not match.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QMenu,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
)

#: the tree's columns, in order; the optional ones start hidden
COLUMNS = ("Layer", "Output", "Shown as", "Type", "Params")
OPTIONAL_COLUMNS = ("Type", "Params")
_PATH = Qt.ItemDataRole.UserRole
_GREY = QColor("#808080")


def shape_text(shape: tuple | None) -> str:
    """``(None, 32, 32, 16)`` -> ``"32×32×16"`` (the batch axis left out; ``?`` unknown)."""
    if shape is None:
        return "?"
    return "×".join("?" if d is None else str(d) for d in shape[1:]) or "scalar"


def shown_as(entry: Any) -> str:
    """How the Layers view shows a layer: an attention map, a map (a token layer on its patch
    grid: ``tokens 8×8``; a MultiHeadAttention layer: ``3 heads``), or bars."""
    if entry.attention:
        return "attention"
    tokens, heads = getattr(entry, "tokens", None), getattr(entry, "heads", 0)
    parts = []
    if tokens is not None:
        parts.append(f"tokens {tokens.grid_h}×{tokens.grid_w}" + (f"+{tokens.extra}" if tokens.extra else ""))
    if heads:
        parts.append(f"{heads} heads")
    return ", ".join(parts) or ("map" if entry.spatial else "bars")


def _parent_paths(entries: dict[str, Any], infos: dict[str, Any]) -> dict[str, str]:
    """child path -> parent path, from the layers' nesting (else from ``"outer/inner"`` paths)."""
    parents = {child.path: path for path, info in infos.items() for child in getattr(info, "children", [])}
    for path in entries:
        if path not in parents and "/" in path:
            parents[path] = path.rsplit("/", 1)[0]
    return {c: p for c, p in parents.items() if p in entries}


class LayerTree(QWidget):
    """A filter box over a tree of the model's layers; emits the path of the row picked.

    ``tree`` is the :class:`QTreeWidget`; each item holds its layer's path in ``UserRole``.
    """

    picked = Signal(object)  # a layer path, or None when the selection was cleared
    column_shown = Signal(str, bool)  # an optional column shown or hidden (the tool remembers it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter layers (name or type)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.apply_filter)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tree.setIndentation(12)
        self.tree.setMinimumHeight(90)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # long names elide
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        header.setToolTip("Right-click to show the layers' type or parameter count")
        for name in OPTIONAL_COLUMNS:
            self.tree.setColumnHidden(COLUMNS.index(name), True)
        self.tree.itemSelectionChanged.connect(lambda: self.picked.emit(self.selected_path()))
        self._items: dict[str, QTreeWidgetItem] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.filter)
        lay.addWidget(self.tree, 1)

    # -- filling -------------------------------------------------------------------------------

    def fill(self, entries: dict[str, Any], infos: dict[str, Any] | None = None) -> None:
        """Show ``entries`` (path -> LayerEntry, in model order); ``infos`` (path -> LayerInfo)
        give the nesting and the parameter counts. Emits nothing."""
        infos = infos or {}
        parents = _parent_paths(entries, infos)
        self.tree.blockSignals(True)
        try:
            self.tree.clear()
            self._items = {}
            for path, entry in entries.items():
                item = self._item(entry, infos.get(path))
                parent = self._items.get(parents.get(path, ""))
                if parent is None:
                    self.tree.addTopLevelItem(item)
                else:
                    parent.addChild(item)
                self._items[path] = item
            self.tree.expandAll()
            self.tree.setRootIsDecorated(bool(parents))
        finally:
            self.tree.blockSignals(False)
        self.apply_filter(self.filter.text())

    def _item(self, entry: Any, info: Any) -> QTreeWidgetItem:
        name = entry.path.rsplit("/", 1)[-1]
        params = getattr(info, "params", None)
        cells = [name, shape_text(entry.shape), shown_as(entry), entry.class_name,
                 "" if params is None else f"{params:,}"]
        item = QTreeWidgetItem(cells)
        item.setData(0, _PATH, entry.path)
        tip = f"{entry.path}\n{entry.class_name} · output {shape_text(entry.shape)}"
        if params is not None:
            tip += f" · {params:,} parameters"
        shown = shown_as(entry)
        tip += "\nShown as " + {"attention": "an attention map", "map": "a map over the image",
                               "bars": "bars (no spatial output)"}.get(shown, shown)
        for col in range(len(COLUMNS)):
            item.setToolTip(col, tip)
        item.setTextAlignment(COLUMNS.index("Params"), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if not entry.spatial:
            for col in range(len(COLUMNS)):
                item.setForeground(col, QBrush(_GREY))
        if entry.attention:
            font = QFont(item.font(0))
            font.setBold(True)
            item.setFont(0, font)
        return item

    # -- selecting -----------------------------------------------------------------------------

    def selected_path(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, _PATH) if items else None

    def item(self, path: str | None) -> QTreeWidgetItem | None:
        """The row of layer ``path`` (None when not listed)."""
        return self._items.get(path) if path else None

    def select(self, path: str | None) -> None:
        """Select the row of ``path`` and scroll it into view (None: clear). Emits nothing."""
        item = self.item(path)
        self.tree.blockSignals(True)
        try:
            if item is None:
                self.tree.clearSelection()
                self.tree.setCurrentItem(None)
                return
            item.setHidden(False)  # a filter never hides the chosen layer
            parent = item.parent()
            while parent is not None:
                parent.setHidden(False)
                parent.setExpanded(True)
                parent = parent.parent()
            self.tree.setCurrentItem(item)
            item.setSelected(True)
        finally:
            self.tree.blockSignals(False)
        self.scroll_to_selected()

    def wanted_height(self) -> int:
        """The height that shows every row (filter box and header included)."""
        rows = len(self.visible_paths())
        row_h = self.tree.sizeHintForRow(0) if rows else 0
        frame = 2 * self.tree.frameWidth()
        spacing = self.layout().spacing()
        return self.filter.sizeHint().height() + spacing + self.tree.header().sizeHint().height() + rows * max(row_h, 0) + frame

    def scroll_to_selected(self) -> None:
        """Bring the selected row into view (the tree may just have been refilled or shown)."""
        items = self.tree.selectedItems()
        if items:
            self.tree.scrollToItem(items[0], QAbstractItemView.ScrollHint.EnsureVisible)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.scroll_to_selected()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self.scroll_to_selected()

    # -- filtering and columns -----------------------------------------------------------------

    def apply_filter(self, text: str) -> None:
        """Show only the layers whose name or type holds ``text`` (and the models around them)."""
        needle = text.strip().lower()
        selected = self.selected_path()
        for item in reversed(list(self._items.values())):  # children before their parents
            own = not needle or needle in item.text(0).lower() or needle in item.text(3).lower()
            kids = any(not item.child(i).isHidden() for i in range(item.childCount()))
            item.setHidden(not (own or kids or item.data(0, _PATH) == selected))
            if kids and needle:
                item.setExpanded(True)
        self.scroll_to_selected()

    def visible_paths(self) -> list[str]:
        """The paths of the rows the filter leaves, in tree order."""
        out = []
        it = QTreeWidgetItemIterator(self.tree, QTreeWidgetItemIterator.IteratorFlag.NotHidden)
        while it.value() is not None:
            out.append(it.value().data(0, _PATH))
            it += 1
        return out

    def set_column_shown(self, name: str, shown: bool) -> None:
        """Show or hide an optional column (``"Type"``, ``"Params"``)."""
        if name not in OPTIONAL_COLUMNS:
            raise ValueError(f"{name!r} is not an optional column; one of {list(OPTIONAL_COLUMNS)}")
        if self.tree.isColumnHidden(COLUMNS.index(name)) == bool(shown):
            self.tree.setColumnHidden(COLUMNS.index(name), not shown)
            self.column_shown.emit(name, bool(shown))

    def column_menu(self) -> QMenu:
        """The header's context menu: one check per optional column."""
        menu = QMenu(self)
        for name in OPTIONAL_COLUMNS:
            action = QAction(name, menu)
            action.setCheckable(True)
            action.setChecked(not self.tree.isColumnHidden(COLUMNS.index(name)))
            action.toggled.connect(lambda on, n=name: self.set_column_shown(n, on))
            menu.addAction(action)
        return menu

    def _header_menu(self, pos: QPoint) -> None:
        menu = self.column_menu()
        menu.exec(self.tree.header().mapToGlobal(pos))
        menu.deleteLater()
