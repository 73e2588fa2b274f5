"""The main window's menus and the actions behind them (File, Model, View, Help).

The file actions ask for paths through ``window.dialogs`` and hand them to the controller;
tools add their own actions to the menus this builds (``window.file_menu`` and so on).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox

from maskviewer import __version__

if TYPE_CHECKING:
    from maskviewer.gui.main_window import MainWindow

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.npy);;All files (*)"
MODEL_FILTER = "Keras models (*.keras *.h5 *.hdf5);;All files (*)"
LABELS_FILTER = "Labels (*.txt *.json);;All files (*)"
#: the File menu's groups, top to bottom, separated by lines
FILE_GROUPS = ("open", "export", "session", "recent", "quit")
#: an action's File-menu group, when it says (``action.setProperty(FILE_GROUP_PROPERTY, "export")``)
FILE_GROUP_PROPERTY = "maskviewer_file_group"


def file_group(action: QAction) -> str:
    """The File-menu group of ``action``: the one it names (:data:`FILE_GROUP_PROPERTY`), else
    read from its words — sessions, then Export/Save, Recent, Quit; anything else opens."""
    named = action.property(FILE_GROUP_PROPERTY)
    if named in FILE_GROUPS:
        return str(named)
    text = action.text().replace("&", "").casefold()
    if "session" in text:
        return "session"
    if text.startswith(("export", "save")):
        return "export"
    if "recent" in text:
        return "recent"
    if text.startswith(("quit", "exit")):
        return "quit"
    return "open"


def group_file_menu(menu: QMenu) -> None:
    """Order ``menu`` by :data:`FILE_GROUPS` (keeping each group's order), one separator
    between groups. Tools add their actions anywhere; this runs again each time the menu opens."""
    actions = [a for a in menu.actions() if not a.isSeparator()]
    groups: dict[str, list[QAction]] = {g: [] for g in FILE_GROUPS}
    for act in actions:  # within a group, the actions that name it first (File → Export…)
        groups[file_group(act)].append(act)
    for members in groups.values():
        members.sort(key=lambda a: a.property(FILE_GROUP_PROPERTY) not in FILE_GROUPS)
    ordered: list[QAction | None] = []
    for members in groups.values():
        if members:
            if ordered:
                ordered.append(None)
            ordered.extend(members)
    now = [None if a.isSeparator() else a for a in menu.actions()]
    if now == ordered:
        return
    for act in menu.actions():
        menu.removeAction(act)
        if act.isSeparator() and act.parent() is menu:
            act.deleteLater()
    for act in ordered:
        if act is None:
            menu.addSeparator()
        else:
            menu.addAction(act)


def add_action(window, menu: QMenu, text: str, slot: Callable[[], object], shortcut=None) -> QAction:
    """Add an action calling ``slot()`` (without Qt's ``checked`` argument) to ``menu``."""
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    act.triggered.connect(lambda _checked=False: slot())
    menu.addAction(act)
    return act


class WindowMenus:
    """Builds the menu bar on ``window`` and carries out its file actions.

    The menus are kept on the window too (``window.file_menu``, ``recent_menu``,
    ``model_menu``, ``view_menu``, ``help_menu``): tools add their actions there.
    """

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.controller = window.controller
        bar = window.menuBar()
        self.file_menu = bar.addMenu("&File")
        self.recent_menu = QMenu("Open &Recent", window)
        self.model_menu = bar.addMenu("&Model")
        self.view_menu = bar.addMenu("&View")
        self.help_menu = bar.addMenu("&Help")
        self._fill_file_menu()
        # grouped once every tool has added its actions, and again whenever it opens
        self.file_menu.aboutToShow.connect(self.group_file_menu)
        QTimer.singleShot(0, self.group_file_menu)
        self._fill_model_menu()
        add_action(window, self.view_menu, "&Fit Image", window.canvas.fit, "Ctrl+0")
        self.view_menu.addSeparator()
        add_action(window, self.help_menu, "&About maskviewer", self.about)

    def _fill_file_menu(self) -> None:
        w, menu = self.window, self.file_menu
        add_action(w, menu, "&Open Image…", self.open_image, QKeySequence.StandardKey.Open)
        add_action(w, menu, "Open &Model…", self.open_model, "Ctrl+Shift+O")
        add_action(w, menu, "Open &SavedModel Folder…", self.open_savedmodel)
        menu.addMenu(self.recent_menu)
        menu.addSeparator()
        add_action(w, menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

    def group_file_menu(self) -> None:
        """Open… / Save and Export… / Sessions / Open Recent / Quit, with separators."""
        group_file_menu(self.file_menu)

    def _fill_model_menu(self) -> None:
        w, menu, c = self.window, self.model_menu, self.controller
        add_action(w, menu, "&Run", c.run_prediction, "F5")
        add_action(w, menu, "&Cancel", c.cancel, "Esc")
        menu.addSeparator()
        add_action(w, menu, "Load Custom &Objects…", self.custom_objects)
        add_action(w, menu, "Load Class &Labels…", self.labels)

    # -- file actions ----------------------------------------------------------------------

    def open_image(self) -> None:
        path = self.window.dialogs.open_file("Open Image", self.controller.last_dir(), IMAGE_FILTER)
        if path:
            self.controller.open_image(path)

    def open_model(self) -> None:
        path = self.window.dialogs.open_file("Open Model", self.controller.last_dir(), MODEL_FILTER)
        if path:
            self.controller.open_model(path)

    def open_savedmodel(self) -> None:
        path = self.window.dialogs.folder("Open SavedModel Folder", self.controller.last_dir())
        if path:
            self.controller.open_model(path)

    def custom_objects(self) -> None:
        """Reload the model (or one picked now) with custom-object files picked now."""
        c, dialogs = self.controller, self.window.dialogs
        if not c.model_path and not c.state.model_info:
            model = dialogs.open_file("Model that needs the custom objects", c.last_dir(), MODEL_FILTER)
        else:
            model = c.model_path
        if not model:
            return
        files = dialogs.open_files(
            "Python files defining the custom objects", str(Path(model).parent), "Python (*.py)"
        )
        if files:
            c.open_model(model, files)

    def labels(self) -> None:
        path = self.window.dialogs.open_file("Class labels", self.controller.last_dir(), LABELS_FILTER)
        if path:
            self.controller.load_labels(path)

    def pick_input_file(self, input_name: str) -> None:
        """Feed a model input from another image file (the Input panel's "file…" source)."""
        c = self.controller
        path = self.window.dialogs.open_file(f"Image for input {input_name}", c.last_dir(), IMAGE_FILTER)
        if path:
            c.set_input_file(input_name, path)
        else:  # cancelled: put the source selector back
            self.window.mapping_panel.set_model(c.state.model_info, c.state.mappings)

    def rebuild_recent(self) -> None:
        """List the recent files in File → Open Recent."""
        self.recent_menu.clear()
        recent = self.controller.recent_files()
        for path in recent:
            act = self.recent_menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.triggered.connect(lambda _c=False, p=path: self.window.open_path(p))
        self.recent_menu.setEnabled(bool(recent))

    def about(self) -> None:
        QMessageBox.about(
            self.window,
            "About maskviewer",
            f"<b>maskviewer {__version__}</b><p>See what a Keras model does with an image and a "
            f"mask.</p><p>Backend: {self.controller.state.device or 'not loaded yet'}</p>",
        )
