"""The main window: layout, menus, drag and drop, status bar. No computation here."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabBar,
    QTabWidget,
    QWidget,
)

from maskviewer import __version__
from maskviewer.gui.controller import Controller
from maskviewer.gui.dialogs import Dialogs
from maskviewer.gui.image_canvas import ImageCanvas
from maskviewer.gui.mapping_panel import MappingPanel
from maskviewer.gui.model_panel import ModelPanel
from maskviewer.gui.predictions_panel import PredictionsPanel
from maskviewer.inference.loading import MODEL_SUFFIXES, is_savedmodel_dir
from maskviewer.io.images import IMAGE_SUFFIXES

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.npy);;All files (*)"
MODEL_FILTER = "Keras models (*.keras *.h5 *.hdf5);;All files (*)"


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
        self.setCentralWidget(self.canvas)
        self.model_panel = ModelPanel()
        self.mapping_panel = MappingPanel()
        self.predictions_panel = PredictionsPanel()
        self.docks: dict[str, QDockWidget] = {}
        self._area_docks: dict[Qt.DockWidgetArea, QDockWidget] = {}
        self._overlay_groups: dict[str, pg.ItemGroup] = {}
        self._build_menus()
        self.add_panel("Model", self.model_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.add_panel("Input", self.mapping_panel, Qt.DockWidgetArea.LeftDockWidgetArea, tabify=False)
        self.add_panel("Predictions", self.predictions_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._build_status_bar()
        self.resizeDocks(
            [self.docks["Model"], self.docks["Predictions"]], [340, 420], Qt.Orientation.Horizontal
        )

        c, s = controller, self.state
        s.image_changed.connect(self.canvas.set_image)
        s.image_changed.connect(self._update_title)
        s.model_changed.connect(self.model_panel.set_model)
        s.model_changed.connect(lambda info: self.mapping_panel.set_model(info, s.mappings))
        s.model_changed.connect(self._update_title)
        s.mapping_changed.connect(self.mapping_panel.update_mappings)
        s.prediction_changed.connect(self.predictions_panel.set_prediction)
        s.labels_changed.connect(self.predictions_panel.set_labels)
        self.mapping_panel.mapping_edited.connect(c.set_mapping)
        self.mapping_panel.pick_file.connect(self._pick_input_file)
        c.status.connect(lambda msg: self.statusBar().showMessage(msg, 8000))
        c.error.connect(self.show_error)
        c.prediction_error.connect(self.predictions_panel.show_error)
        c.backend_status.connect(self.backend_label.setText)
        c.busy_changed.connect(self._busy_changed)
        c.progress.connect(self._progress)
        c.recent_changed.connect(lambda _r: self._rebuild_recent())
        c.confirm = self.confirm
        self.canvas.cursor_moved.connect(self._cursor_moved)
        from maskviewer.gui.tools import install_tools

        self.tools = install_tools(self)
        self._rebuild_recent()
        self._restore_layout()

    # -- layout --------------------------------------------------------------------------------

    def add_panel(
        self,
        title: str,
        widget: QWidget,
        area: Qt.DockWidgetArea,
        tabify: bool = True,
        scroll: bool = True,
    ) -> QDockWidget:
        """Put ``widget`` in a dock (listed in the View menu) and return the dock.

        Docks added to an area that already has one become tabs beside the first, so the image
        keeps its room however many tools there are; ``scroll`` wraps tall panels so their
        minimum height never forces the window's.
        """
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
        dock.dockLocationChanged.connect(self._tidy_dock_tabs)
        dock.topLevelChanged.connect(self._tidy_dock_tabs)
        self._tidy_dock_tabs()
        return dock

    def _tidy_dock_tabs(self, *_args) -> None:
        """Show tool tabs with their whole names (arrows scroll them when they do not fit)
        rather than cut to "Lay…"; Qt makes the tab bars of docked panels lazily, so look
        again once the layout has settled."""

        def tidy() -> None:
            for bar in self.findChildren(QTabBar):
                if bar.parent() is self:  # the dock area's own tab bars, not tools' tab widgets
                    bar.setElideMode(Qt.TextElideMode.ElideNone)
                    bar.setUsesScrollButtons(True)

        tidy()
        QTimer.singleShot(0, tidy)

    def add_panel_overlay(self, title: str, item, z: float = 10.0) -> None:
        """Put ``item`` over the image, shown only while the dock ``title`` is in front.

        Each tool's maps (heatmaps, patch grids, binary masks) belong to its tab: with several
        tools on one image, the picture shows the one the user is looking at.
        """
        group = self._overlay_groups.get(title)
        if group is None:
            group = pg.ItemGroup()
            self.canvas.add_overlay(group, 10.0)
            dock = self.docks[title]
            dock.visibilityChanged.connect(group.setVisible)
            group.setVisible(not dock.visibleRegion().isEmpty() or not self.isVisible())
            self._overlay_groups[title] = group
        item.setParentItem(group)
        item.setZValue(z)

    def show_panel(self, title: str) -> None:
        """Make a dock visible and bring its tab to the front."""
        dock = self.docks.get(title)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open Image…", self.open_image_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open &Model…", self.open_model_dialog, "Ctrl+Shift+O")
        self._action(file_menu, "Open &SavedModel Folder…", self.open_savedmodel_dialog)
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.file_menu = file_menu

        model_menu = bar.addMenu("&Model")
        self._action(model_menu, "&Run", self.controller.run_prediction, "F5")
        self._action(model_menu, "&Cancel", self.controller.cancel, "Esc")
        model_menu.addSeparator()
        self._action(model_menu, "Load Custom &Objects…", self.custom_objects_dialog)
        self._action(model_menu, "Load Class &Labels…", self.labels_dialog)
        self.model_menu = model_menu

        self.view_menu = bar.addMenu("&View")
        self._action(self.view_menu, "&Fit Image", self.canvas.fit, "Ctrl+0")
        self.view_menu.addSeparator()

        self.help_menu = bar.addMenu("&Help")
        self._action(self.help_menu, "&About maskviewer", self._about)

    def _action(self, menu: QMenu, text: str, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(lambda _checked=False: slot())
        menu.addAction(act)
        return act

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.cursor_label = QLabel("")
        self.cursor_label.setMinimumWidth(220)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(160)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.cancel_button.hide()
        self.backend_label = QLabel("Starting…")
        self.backend_label.setToolTip("Model backend and the device it runs on")
        sb.addPermanentWidget(self.cursor_label)
        sb.addPermanentWidget(self.progress_bar)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.backend_label)

    def _cursor_moved(self, x: int, y: int, value: str) -> None:
        self.cursor_label.setText(f"x {x}  y {y}  {value}" if value else "")

    def _busy_changed(self, busy: bool, what: str) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)  # indeterminate until progress arrives

    def _progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)

    def _update_title(self, *_args) -> None:
        parts = []
        if self.state.image is not None and self.state.image.path:
            parts.append(Path(self.state.image.path).name)
        if self.state.model_info is not None:
            parts.append(self.state.model_info.name)
        self.setWindowTitle(" — ".join(parts + ["maskviewer"]))

    # -- dialogs -------------------------------------------------------------------------------

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
        answer = QMessageBox.warning(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open Image", self.controller.last_dir(), IMAGE_FILTER)
        if path:
            self.controller.open_image(path)

    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open Model", self.controller.last_dir(), MODEL_FILTER)
        if path:
            self.controller.open_model(path)

    def open_savedmodel_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open SavedModel Folder", self.controller.last_dir())
        if path:
            self.controller.open_model(path)

    def custom_objects_dialog(self) -> None:
        if not self.controller.model_path and not self.state.model_info:
            model, _ = QFileDialog.getOpenFileName(
                self, "Model that needs the custom objects", self.controller.last_dir(), MODEL_FILTER
            )
        else:
            model = self.controller.model_path
        if not model:
            return
        files, _ = QFileDialog.getOpenFileNames(
            self, "Python files defining the custom objects", str(Path(model).parent), "Python (*.py)"
        )
        if files:
            self.controller.open_model(model, files)

    def labels_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Class labels", self.controller.last_dir(), "Labels (*.txt *.json);;All files (*)"
        )
        if path:
            self.controller.load_labels(path)

    def _pick_input_file(self, input_name: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Image for input {input_name}", self.controller.last_dir(), IMAGE_FILTER
        )
        if path:
            self.controller.set_input_file(input_name, path)
        else:  # cancelled: put the source selector back
            self.mapping_panel.set_model(self.state.model_info, self.state.mappings)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About maskviewer",
            f"<b>maskviewer {__version__}</b><p>See what a Keras model does with an image and a "
            f"mask.</p><p>Backend: {self.state.device or 'not loaded yet'}</p>",
        )

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

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.controller.recent_files()
        for path in recent:
            act = self.recent_menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.triggered.connect(lambda _c=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(recent))

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
        s = self.controller.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray | bytes):
            self.restoreState(state)

    def closeEvent(self, event) -> None:  # noqa: N802
        # a tool holding unsaved work (painted masks) may ask the user and veto the close
        for tool in getattr(self, "tools", {}).values():
            if hasattr(tool, "can_close") and not tool.can_close():
                event.ignore()
                return
        s = self.controller.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.sync()
        self.controller.shutdown()
        super().closeEvent(event)
