"""The main window: layout, docks, drag and drop, errors. No computation here.

The menus and their file actions are in :mod:`maskviewer.gui.menus`, the status bar's
widgets in :mod:`maskviewer.gui.status_bar`; file pickers and questions go through
``window.dialogs`` (:mod:`maskviewer.gui.dialogs`).
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from maskviewer.gui.controller import Controller
from maskviewer.gui.dialogs import Dialogs
from maskviewer.gui.image_canvas import ImageCanvas
from maskviewer.gui.mapping_panel import MappingPanel
from maskviewer.gui.menus import WindowMenus
from maskviewer.gui.model_panel import ModelPanel
from maskviewer.gui.predictions_panel import PredictionsPanel
from maskviewer.gui.status_bar import StatusIndicators
from maskviewer.gui.tool_pages import PAGE_WIDTH, ToolPage, ToolPages
from maskviewer.inference.loading import MODEL_SUFFIXES, is_savedmodel_dir
from maskviewer.io.images import IMAGE_SUFFIXES


class MainWindow(QMainWindow):
    """Lays out the canvas and the docks and routes user actions to the :class:`Controller`."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self.state = controller.state
        self.setWindowTitle("maskviewer")
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
            | QMainWindow.DockOption.AllowNestedDocks
        )
        for side in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
            self.setTabPosition(side, QTabWidget.TabPosition.North)
        self.last_error: tuple[str, str] | None = None
        #: file pickers and questions: the one place tools ask the user (tests replace it)
        self.dialogs = Dialogs(self)
        self._message_boxes: list[QMessageBox] = []

        self.canvas = ImageCanvas()
        self._build_canvas_area()
        self.model_panel = ModelPanel()
        self.mapping_panel = MappingPanel()
        self.predictions_panel = PredictionsPanel()
        self.docks: dict[str, QDockWidget] = {}
        self._area_docks: dict[Qt.DockWidgetArea, QDockWidget] = {}
        self._overlay_groups: dict[str, pg.ItemGroup] = {}
        self.menus = WindowMenus(self)
        m = self.menus
        self.file_menu, self.recent_menu, self.model_menu = m.file_menu, m.recent_menu, m.model_menu
        self.view_menu, self.help_menu = m.view_menu, m.help_menu
        self._add_core_panels()
        self.indicators = StatusIndicators(self.statusBar(), controller)
        i = self.indicators
        self.cursor_label, self.progress_bar = i.cursor_label, i.progress_bar
        self.cancel_button, self.backend_label = i.cancel_button, i.backend_label
        self._connect_state()
        self._connect_controller()
        from maskviewer.gui.tools import install_tools

        self.tools = install_tools(self)
        self.menus.rebuild_recent()
        column = self.tool_pages.selector.sizeHint().width() + PAGE_WIDTH
        self.resizeDocks([self.tool_pages.dock], [column], Qt.Orientation.Horizontal)
        self._restore_layout()

    def _add_core_panels(self) -> None:
        self.tool_pages = ToolPages(self)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.tool_pages.dock)
        self.view_menu.addAction(self.tool_pages.dock.toggleViewAction())
        self.panels_menu = self.view_menu.addMenu("&Panels")
        model_page = QWidget()
        column = QVBoxLayout(model_page)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.model_panel)
        column.addWidget(self.mapping_panel, 1)
        self.add_panel("Model", model_page)
        self.docks["Input"] = self.docks["Model"]  # the input mapping sits under the model
        self.add_panel("Predictions", self.predictions_panel)

    def _connect_state(self) -> None:
        s = self.state
        s.image_changed.connect(self.canvas.set_image)
        s.image_changed.connect(self._update_title)
        s.model_changed.connect(self.model_panel.set_model)
        s.model_changed.connect(lambda info: self.mapping_panel.set_model(info, s.mappings))
        s.model_changed.connect(self._update_title)
        s.mapping_changed.connect(self.mapping_panel.update_mappings)
        s.prediction_changed.connect(self.predictions_panel.set_prediction)
        s.labels_changed.connect(self.predictions_panel.set_labels)

    def _connect_controller(self) -> None:
        c = self.controller
        self.mapping_panel.mapping_edited.connect(c.set_mapping)
        self.mapping_panel.pick_file.connect(self.menus.pick_input_file)
        self.indicators.connect(c, self.canvas)
        c.error.connect(self.show_error)
        c.prediction_error.connect(self.predictions_panel.show_error)
        c.recent_changed.connect(lambda _r: self.menus.rebuild_recent())
        c.confirm = self.confirm

    # -- layout --------------------------------------------------------------------------------

    def _build_canvas_area(self) -> None:
        """The centre: bars above the image (modes, a demo's banner), the image, and bars below
        it (the model's result), so what the model answers stays in view while the user edits."""
        area = QWidget()
        column = QVBoxLayout(area)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self._canvas_top = QVBoxLayout()
        self._canvas_bottom = QVBoxLayout()
        for box in (self._canvas_top, self._canvas_bottom):
            box.setContentsMargins(0, 0, 0, 0)
            box.setSpacing(0)
        column.addLayout(self._canvas_top)
        column.addWidget(self.canvas, 1)
        column.addLayout(self._canvas_bottom)
        self.canvas_area = area
        self.setCentralWidget(area)

    def add_canvas_widget(self, widget: QWidget, position: str = "top") -> None:
        """Put ``widget`` above (``"top"``) or below (``"bottom"``) the image, full width."""
        if position not in ("top", "bottom"):
            raise ValueError(f"position must be 'top' or 'bottom', not {position!r}")
        # a bar takes the image's width and never widens the centre (long texts wrap or elide)
        policy = widget.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        widget.setSizePolicy(policy)
        (self._canvas_top if position == "top" else self._canvas_bottom).addWidget(widget)

    def add_panel(
        self,
        title: str,
        widget: QWidget,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        tabify: bool = True,
        scroll: bool = True,
    ):
        """Give ``widget`` a place in the window and return its handle.

        Side panels (left or right) become pages of the tool column (:mod:`tool_pages`): one
        selector with every tool's whole name, one page in view, the image keeps its room
        however many tools there are. Other areas (below the image) get a dock of their own.
        ``scroll`` wraps tall panels so their height never forces the window's.
        """
        if area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
            page = self.tool_pages.add(title, widget, scroll)
            self.panels_menu.addAction(page.action)
            self.docks[title] = page
            return page
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower().replace(' ', '_')}")
        if scroll:
            holder = QScrollArea()
            holder.setWidgetResizable(True)
            holder.setFrameShape(QFrame.Shape.NoFrame)
            holder.setWidget(widget)
            dock.setWidget(holder)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        first = self._area_docks.get(area)
        if tabify and first is not None:
            self.tabifyDockWidget(first, dock)
            first.raise_()
        elif first is None:
            self._area_docks[area] = dock
        self.view_menu.addAction(dock.toggleViewAction())
        self.docks[title] = dock
        return dock

    def add_panel_overlay(self, title: str, item, z: float = 10.0) -> None:
        """Put ``item`` over the image, shown only while the panel ``title`` is in front.

        Each tool's maps (heatmaps, patch grids, binary masks) belong to its page: with several
        tools on one image, the picture shows the one the user is looking at.
        """
        group = self._overlay_groups.get(title)
        if group is None:
            group = pg.ItemGroup()
            self.canvas.add_overlay(group, 10.0)
            panel = self.docks[title]
            panel.visibilityChanged.connect(group.setVisible)
            if isinstance(panel, ToolPage):
                group.setVisible(panel.is_in_front())
            else:
                group.setVisible(not panel.visibleRegion().isEmpty() or not self.isVisible())
            self._overlay_groups[title] = group
        item.setParentItem(group)
        item.setZValue(z)

    def show_panel(self, title: str) -> None:
        """Bring the panel ``title`` into view (its page in front, or its dock shown)."""
        dock = self.docks.get(title)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _update_title(self, *_args) -> None:
        parts = []
        if self.state.image is not None and self.state.image.path:
            parts.append(Path(self.state.image.path).name)
        if self.state.model_info is not None:
            parts.append(self.state.model_info.name)
        self.setWindowTitle(" — ".join(parts + ["maskviewer"]))

    # -- errors and questions --------------------------------------------------------------

    def show_error(self, title: str, message: str) -> None:
        """Report an error without blocking (the window keeps working)."""
        self.last_error = (title, message)
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._message_boxes.remove(b) if b in self._message_boxes else None)
        self._message_boxes.append(box)
        box.open()

    def confirm(self, title: str, text: str) -> bool:
        """A warning needing consent (yes/no, default no), asked through :attr:`dialogs`."""
        return self.dialogs.confirm(title, text)

    # -- files ---------------------------------------------------------------------------------

    def open_path(self, path: str) -> None:
        """Open a file by its kind: a model, a SavedModel folder, or an image."""
        p = Path(path)
        if p.suffix.lower() in MODEL_SUFFIXES or is_savedmodel_dir(p):
            self.controller.open_model(path)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            self.controller.open_image(path)
        else:
            self.show_error(
                "Cannot open",
                f"{p.name}: not an image (PNG, JPEG, BMP, TIFF, NPY) or a model (.keras, .h5, "
                "SavedModel folder).",
            )

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())
        event.acceptProposedAction()

    # -- lifetime ------------------------------------------------------------------------------

    def _restore_layout(self) -> None:
        geometry, state = self.controller.prefs.window_layout()
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray | bytes):
            self.restoreState(state)

    def closeEvent(self, event) -> None:  # noqa: N802
        # a tool holding unsaved work (painted masks) may ask the user and veto the close
        for tool in getattr(self, "tools", {}).values():
            if hasattr(tool, "can_close") and not tool.can_close():
                event.ignore()
                return
        self.controller.prefs.save_window_layout(self.saveGeometry(), self.saveState())
        self.controller.shutdown()
        super().closeEvent(event)
