"""The tool column: a vertical selector with every tool's whole name, and one page in view.

Tabs overflow ("Bina…", then arrows) as soon as a window holds more than four tools, and each
tab costs the image width. Here the tools share one dock at the window's side: a column of
buttons (full names, one key each: Ctrl+1, Ctrl+2, …) picks the page, and each page scrolls
inside the dock instead of hiding its result below the fold.

A page is addressed through a :class:`ToolPage`, which answers the few calls tools and tests
make of a dock (``show``, ``raise_``, ``isVisible``, ``visibilityChanged``, ``toggleViewAction``).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

#: the width a page gets when the window opens (the selector's column comes on top)
PAGE_WIDTH = 380
#: the narrowest a page may be made: beyond it, a page scrolls sideways
PAGE_MIN_WIDTH = 260


class ToolPage(QObject):
    """One tool's page in the column; stands in for the dock each tool used to have."""

    #: True when the page comes into view, False when another page (or nothing) replaces it
    visibilityChanged = Signal(bool)  # noqa: N815 (the name QDockWidget uses)

    def __init__(self, pages: ToolPages, title: str, widget: QWidget, holder: QWidget) -> None:
        super().__init__(pages)
        self.pages = pages
        self.title = title
        self.panel = widget
        self.holder = holder
        self.action = QAction(title, pages)
        self.action.setCheckable(True)
        self.action.setToolTip(f"Show the {title} panel")
        self.action.triggered.connect(lambda _checked=False: self.raise_())
        self._shown = False

    def widget(self) -> QWidget:
        return self.panel

    def toggleViewAction(self) -> QAction:  # noqa: N802 (QDockWidget's name)
        return self.action

    def show(self) -> None:
        """Bring the page in front (and the column into view)."""
        self.pages.select(self.title)

    def raise_(self) -> None:
        self.pages.select(self.title)

    def hide(self) -> None:
        """Pages are not hidden one by one; the column's dock hides them all."""

    def isVisible(self) -> bool:  # noqa: N802
        return self.pages.current_title() == self.title and self.pages.dock.isVisible()

    def is_in_front(self) -> bool:
        """The page is the one selected (whether or not the window is on screen yet)."""
        return self.pages.current_title() == self.title and not self.pages.dock.isHidden()

    def _set_shown(self, shown: bool) -> None:
        if shown != self._shown:
            self._shown = shown
            self.visibilityChanged.emit(shown)


class ToolPages(QWidget):
    """The selector column and the stacked pages, in one dock."""

    #: the title of the page now in front
    page_changed = Signal(str)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.pages: dict[str, ToolPage] = {}
        self._current: str | None = None
        self.selector = QToolBar("Tools")
        self.selector.setOrientation(Qt.Orientation.Vertical)
        self.selector.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.selector.setMovable(False)
        self.selector.setObjectName("tool_selector")
        self.selector.setStyleSheet(
            "QToolButton { padding: 5px 8px; text-align: left; }"
            "QToolButton:checked { font-weight: bold; }"
        )
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        self.stack = QStackedWidget()
        self.stack.setMinimumWidth(PAGE_MIN_WIDTH)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.selector)
        row.addWidget(self.stack, 1)
        self.dock = QDockWidget("Tools", window)
        self.dock.setObjectName("dock_tools")
        self.dock.setWidget(self)
        self.dock.visibilityChanged.connect(lambda _v: self._announce())
        self.stack.currentChanged.connect(lambda _i: self._announce())

    def add(self, title: str, widget: QWidget, scroll: bool = True) -> ToolPage:
        """Add ``widget`` as the page ``title`` (wrapped to scroll) and its selector button."""
        holder: QWidget = widget
        if scroll:
            area = QScrollArea()
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(widget)
            holder = area
        page = ToolPage(self, title, widget, holder)
        self.pages[title] = page
        self.stack.addWidget(holder)
        self.group.addAction(page.action)
        self.selector.addAction(page.action)
        button = self.selector.widgetForAction(page.action)
        if isinstance(button, QToolButton):  # one column of equal buttons, names left-aligned
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        n = len(self.pages)
        if n <= 9:
            page.action.setShortcut(QKeySequence(f"Ctrl+{n}"))
            page.action.setToolTip(f"Show the {title} panel (Ctrl+{n})")
        if n == 1:
            self.select(title)
        return page

    def current_title(self) -> str | None:
        holder = self.stack.currentWidget()
        return next((t for t, p in self.pages.items() if p.holder is holder), None)

    def select(self, title: str) -> None:
        """Put the page ``title`` in front; show the column if it was closed."""
        page = self.pages[title]
        if self.dock.isHidden():
            self.dock.show()
        self.dock.raise_()
        self.stack.setCurrentWidget(page.holder)
        page.action.setChecked(True)
        self._announce()

    def _announce(self) -> None:
        current = self.current_title()
        shown = not self.dock.isHidden()
        for title, page in self.pages.items():
            page._set_shown(shown and title == current)
        if current is not None and current != self._current:
            self._current = current
            self.dock.setWindowTitle(current)
            self.page_changed.emit(current)
