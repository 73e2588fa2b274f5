"""The masks tool: paint, load and save masks, feed them to the model, and run the ablation.

Painting happens on the GUI thread on numpy arrays (a dab costs well under a millisecond);
the overlay is updated in the changed rectangle only. After each edit of a fed mask the
controller's prediction runs again (newest request wins). The ablation runs as a job on the
inference thread. The state is :class:`~maskviewer.gui.masks.model.MasksModel`; this module
wires it to the window: docks, menu, canvas items, dialogs and jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mask_feed import MaskFeed
from maskviewer.core.masks import Brush, Mask, MaskSet
from maskviewer.gui.canvas_modes import ModeBar
from maskviewer.gui.jobs import JobClient
from maskviewer.gui.masks.ablation import (
    ABLATION_KIND,
    RUNNING_TEXT,
    ablation_job,
    prepare_ablation,
)
from maskviewer.gui.masks.bar import ActiveMaskButton
from maskviewer.gui.masks.feeding import FeedMemory
from maskviewer.gui.masks.files import mask_file_name
from maskviewer.gui.masks.model import TOOLS, MasksModel
from maskviewer.gui.masks.overlay import MaskOverlayItem, MaskOverlays
from maskviewer.gui.masks.painting import CanvasPainter
from maskviewer.gui.masks.panel import AblationPanel, MasksPanel
from maskviewer.io.masks import MASK_FILTER, MaskLoadError

NOT_SAVED = "Some masks have painting that is not saved. Save them before closing?"


class SettingsFeedMemory(FeedMemory):
    """The feed chosen per model, kept in the application settings (``mask_feed/<model>``)."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def _key(self, info: Any) -> str:
        from maskviewer.gui.settings import model_key

        return f"mask_feed/{model_key(info.path)}"

    def was_chosen(self, info: Any) -> bool:
        return self.controller.settings.value(self._key(info)) is not None

    def remember(self, info: Any, label: str) -> None:
        self.controller.settings.setValue(self._key(info), label)


class MaskTool(QObject):
    """The masks tool installed in a window: :attr:`model` holds the state.

    Hooks a test (or another front end) may replace: :meth:`ask` (a yes/no question),
    :meth:`ask_unsaved` (``"save"``, ``"discard"`` or ``"cancel"``) and :meth:`pick_save_dir`.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = c = window.controller
        self.state = c.state
        self.canvas = window.canvas
        self.model = m = MasksModel(c.state, c.set_mapping, SettingsFeedMemory(c))
        self.panel = MasksPanel()
        self.dock = window.add_panel("Masks", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.ablation_panel = AblationPanel()
        self.ablation_dock = window.add_panel(
            "Mask ablation", self.ablation_panel, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.ablation_dock.hide()
        self.modes = self.canvas.modes
        self.mode_bar = ModeBar(self.modes, self.canvas)
        window.add_canvas_widget(self.mode_bar, "top")
        _link_modes(self)
        self.painter = CanvasPainter(m, self.canvas, self)
        self.mask_overlays = MaskOverlays(self.canvas, m)
        self.menu: Any = None
        self.actions: dict[str, QAction] = {}
        _build_menu(self)
        self.panel.bind(m)
        self._connect_buttons()
        m.predict.connect(lambda now: c.run_prediction() if now else c.schedule_prediction())
        m.status.connect(lambda text, ms: window.statusBar().showMessage(text, ms))
        c.mask_provider = m.provide_masks
        self.jobs = JobClient(c, [ABLATION_KIND], self)
        self.jobs.finished.connect(self._ablation_finished)
        self.jobs.failed.connect(self._ablation_failed)

    # -- what other tools, sessions and tests read ----------------------------------------------

    @property
    def sets(self) -> dict[str, MaskSet]:
        """The masks of every image seen, by image key (the session restores into it)."""
        return self.model.sets

    @property
    def maskset(self) -> MaskSet | None:
        """The current image's masks."""
        return self.model.maskset

    @property
    def tool(self) -> str:
        return self.model.paint.tool

    @property
    def opacity(self) -> float:
        return self.model.paint.opacity

    @property
    def outline(self) -> bool:
        return self.model.paint.outline

    @property
    def brush(self) -> Brush:
        return self.model.paint.brush

    @property
    def overlays(self) -> dict[int, MaskOverlayItem]:
        """The overlay item of each mask of the current image, by ``id(mask)``."""
        return self.mask_overlays.items

    @property
    def cursor(self):
        return self.painter.cursor

    @property
    def preview(self):
        return self.painter.preview

    @property
    def ablation_results(self) -> dict[str, dict[str, np.ndarray]] | None:
        return self.model.ablation_results

    def current_mask(self) -> np.ndarray | None:
        """The active mask: a read-only ``(H, W)`` float32 view in 0..1 (None without an image)."""
        return self.model.current_mask()

    def feed(self) -> MaskFeed:
        """How the mask feeds the model now (read from the input mappings)."""
        return self.model.feeding.feed()

    def set_feed(self, mode: str, input_name: str | None = None, mask_name: str | None = None) -> None:
        """Feed a mask to the model: ``mode`` is none, channel, multiply or input."""
        self.model.feeding.set_feed(mode, input_name, mask_name)

    def export_items(self) -> list:
        """The current image's masks, for File → Export."""
        from maskviewer.gui.export_tool import mask_items

        return mask_items(self)

    def _refresh_list_flags(self) -> None:
        """Show which masks are unsaved (after someone else marked them saved)."""
        self.panel.show_labels()

    # -- actions ----------------------------------------------------------------------------------

    def set_tool(self, tool: str) -> None:
        self.model.paint.set_tool(tool)

    def set_opacity(self, value: float) -> None:
        self.model.paint.set_opacity(value)

    def set_outline(self, on: bool) -> None:
        self.model.paint.set_outline(on)

    def change_size(self, factor: float) -> None:
        """Scale the brush diameter by ``factor`` (by at least one pixel)."""
        self.model.paint.change_size(factor)

    def undo(self) -> None:
        self.model.undo()

    def redo(self) -> None:
        self.model.redo()

    def invert(self) -> None:
        self.model.invert()

    def clear(self) -> None:
        self.model.clear()

    def add_mask(self, name: str | None = None) -> Mask | None:
        """Add a mask named ``name`` (asked for when None) and make it active."""
        if self.model.maskset is None:
            return None
        if name is None:
            name = self._ask_text("Add mask", "Name of the new mask:", "mask")
            if name is None:
                return None
        return self.model.add_mask(name)

    def rename_mask(self, new: str | None = None) -> None:
        """Rename the active mask to ``new`` (asked for when None)."""
        ms = self.model.maskset
        if ms is None or ms.active is None:
            return
        if new is None:
            new = self._ask_text("Rename mask", "New name:", ms.active.name)
            if new is None:
                return
        self.model.rename_mask(new)

    def delete_mask(self) -> None:
        """Delete the active mask, asking first if it holds unsaved painting."""
        ms = self.model.maskset
        if ms is None or ms.active is None:
            return
        mask = ms.active
        if mask.dirty and not self.ask(
            "Delete mask", f"Delete the mask {mask.name!r} with its unsaved painting?"
        ):
            return
        self.model.delete_active()

    def choose_color(self) -> None:
        ms = self.model.maskset
        if ms is None or ms.active is None:
            return
        color = self.window.dialogs.color("Mask colour", tuple(ms.active.color))
        if color is not None:
            self.model.set_color(color)

    # -- files and closing ------------------------------------------------------------------------

    def load_mask_dialog(self) -> None:
        if self.model.maskset is None:
            self.window.show_error("Load mask", "Open an image first: a mask belongs to an image.")
            return
        path = self.window.dialogs.open_file("Load mask", self.controller.last_dir(), MASK_FILTER)
        if path:
            self.load_mask_file(path)

    def load_mask_file(self, path: str | Path) -> bool:
        """Load a mask file into the active mask (one undoable edit).

        A file of another size is offered a nearest-neighbour resize; on any error the mask
        stays as it was and the error is shown.
        """
        ms = self.model.maskset
        if ms is None or ms.active is None:
            self.window.show_error("Load mask", "Open an image first: a mask belongs to an image.")
            return False
        path = Path(path)
        try:
            loaded = self.model.load_file(path, lambda q: self.ask("Mask size differs", q))
        except MaskLoadError as exc:
            self.window.show_error("Cannot load mask", str(exc))
            return False
        if not loaded:
            self.window.statusBar().showMessage("Mask not loaded.", 5000)
            return False
        self.window.statusBar().showMessage(
            f"Loaded {path.name} into mask {ms.active.name!r} (Ctrl+Z undoes it).", 8000
        )
        return True

    def save_mask_dialog(self) -> None:
        ms = self.model.maskset
        if ms is None or ms.active is None:
            return
        mask = ms.active
        suggested = str(Path(self.controller.last_dir()) / mask_file_name(ms, mask))
        path = self.window.dialogs.save_file(
            f"Save mask {mask.name!r}", suggested, "PNG (*.png);;NumPy (*.npy)"
        )
        if path:
            self.save_mask_file(path)

    def save_mask_file(self, path: str | Path, name: str | None = None) -> bool:
        """Save the mask ``name`` (the active one by default) as PNG or NPY; errors are shown."""
        try:
            mask = self.model.save_file(path, name)
        except (OSError, MaskviewerError) as exc:
            self.window.show_error("Cannot save mask", f"{Path(path).name}: {exc}")
            return False
        if mask is None:
            return False
        self.window.statusBar().showMessage(f"Saved mask {mask.name!r} to {path}", 8000)
        return True

    def can_close(self) -> bool:
        """Ask before closing with unsaved masks; False keeps the window open."""
        if not self.model.dirty_sets():
            return True
        answer = self.ask_unsaved()
        if answer == "discard":
            return True
        if answer != "save":
            return False
        folder = self.pick_save_dir()
        if not folder:
            return False
        try:
            self.model.save_unsaved(folder)
        except (OSError, MaskviewerError) as exc:
            self.window.show_error("Cannot save masks", str(exc))
            return False
        return True

    def ask(self, title: str, text: str) -> bool:
        """A yes/no question (no by default)."""
        return self.window.dialogs.question(title, text)

    def ask_unsaved(self) -> str:
        """``"save"``, ``"discard"`` or ``"cancel"`` the unsaved masks."""
        return self.window.dialogs.save_discard_cancel("Unsaved masks", NOT_SAVED)

    def pick_save_dir(self) -> str:
        """The folder for the unsaved masks ("" when cancelled)."""
        return self.window.dialogs.folder("Folder for the unsaved masks", self.controller.last_dir()) or ""

    def _ask_text(self, title: str, label: str, text: str) -> str | None:
        return self.window.dialogs.text(title, label, text)

    # -- ablation ---------------------------------------------------------------------------------

    def run_ablation(self) -> int | None:
        """Run the model with the painted, zero, one, random and inverted masks (one job)."""
        try:
            builds = prepare_ablation(self.model, self.controller.build_inputs)
        except MaskviewerError as exc:
            self.window.show_error("Mask ablation", str(exc))
            return None
        self.ablation_panel.summary.setText(RUNNING_TEXT)
        self.ablation_dock.show()
        self.ablation_dock.raise_()
        return self.jobs.submit(ABLATION_KIND, ablation_job(builds))

    def _ablation_finished(self, _kind: str, result) -> None:
        rows, summary = self.model.ablation_finished(result)
        self.ablation_panel.show_rows(rows, summary)

    def _ablation_failed(self, _kind: str, message: str, _exc) -> None:
        self.ablation_panel.summary.setText(f"The ablation failed: {message}")

    # -- wiring -----------------------------------------------------------------------------------

    def _connect_buttons(self) -> None:
        """The panel's buttons that ask the user something first."""
        p = self.panel
        p.add_button.clicked.connect(lambda: self.add_mask())
        p.rename_button.clicked.connect(lambda: self.rename_mask())
        p.delete_button.clicked.connect(self.delete_mask)
        p.color_button.clicked.connect(self.choose_color)
        p.load_button.clicked.connect(self.load_mask_dialog)
        p.save_button.clicked.connect(self.save_mask_dialog)
        p.ablation_button.clicked.connect(self.run_ablation)


def _link_modes(tool: MaskTool) -> None:
    """The canvas's mode and the paint tool are one choice (the bar, the keys and the Masks
    panel change it); the bar's brush size is the brush's; the bar shows the mask painted on."""
    paint, modes, bar = tool.model.paint, tool.modes, tool.mode_bar
    modes.set_mode(paint.tool)
    modes.changed.connect(lambda mode: None if paint.tool == mode else paint.set_tool(mode))
    paint.tool_changed.connect(modes.set_mode)
    chip = ActiveMaskButton(tool.model)
    bar.add_widget(chip)
    chip.resized.connect(bar.remeasure)
    bar.show_size(paint.size)
    bar.size.valueChanged.connect(lambda v: paint.set_brush(size=v))
    paint.brush_changed.connect(lambda: bar.show_size(paint.size))


def _build_menu(tool: MaskTool) -> None:
    """The Mask menu (and Load Mask… in the File menu)."""
    w = tool.window
    menu = w.menuBar().addMenu("Mas&k")
    w.menuBar().insertMenu(w.help_menu.menuAction(), menu)
    tool.menu = menu
    tool.actions = {}

    def add(key: str, text: str, slot, shortcut=None) -> None:
        act = QAction(text, w)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(lambda _c=False: slot())
        menu.addAction(act)
        tool.actions[key] = act

    add("undo", "&Undo Stroke", tool.undo, QKeySequence.StandardKey.Undo)
    add("redo", "&Redo Stroke", tool.redo, "Ctrl+Shift+Z")
    menu.addSeparator()
    for name, _label, _key, _tip in TOOLS:  # the mode bar's actions, with their keys
        act = tool.mode_bar.actions[name]
        menu.addAction(act)
        tool.actions[f"tool_{name}"] = act
    add("smaller", "Smaller Brush", lambda: tool.change_size(1 / 1.25), "[")
    add("larger", "Larger Brush", lambda: tool.change_size(1.25), "]")
    menu.addSeparator()
    add("invert", "&Invert Mask", tool.invert, "Ctrl+I")
    add("clear", "&Clear Mask", tool.clear)
    add("new", "&New Mask…", lambda: tool.add_mask())
    menu.addSeparator()
    add("load", "&Load Mask…", tool.load_mask_dialog, "Ctrl+Shift+M")
    add("save", "&Save Mask…", tool.save_mask_dialog, "Ctrl+Alt+S")
    menu.addSeparator()
    add("ablation", "Mask &Ablation", tool.run_ablation, "Ctrl+Shift+A")
    file_actions = w.file_menu.actions()
    w.file_menu.insertAction(file_actions[min(3, len(file_actions) - 1)], tool.actions["load"])


def install(window) -> MaskTool:
    """Add the Masks dock, the Mask menu, the mode bar above the image and painting on it."""
    return MaskTool(window)
