"""The Binarise tool: threshold an image-shaped output, score it against a reference, export.

A dock with the value histogram and a draggable threshold, the automatic methods of
scikit-image, polarity and view, a reference mask with live scores and a Dice-vs-threshold
curve; a window of its own shows outputs side by side. The per-map work (sorting, histogram, display
codes) runs once per prediction on the worker thread; a threshold change only patches the
cached preview (see :class:`maskviewer.core.threshold.ThresholdCache`).

:class:`BinariseTool` wires the Qt-free :class:`~maskviewer.gui.binarise.model.BinariseModel`
to the window: its panels, canvas overlay, jobs, dialogs and menu. Hooks for other tools:
:meth:`BinariseTool.add_source` (an activation map, say) and
:attr:`BinariseTool.reference_provider` (a painted mask).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction

from maskviewer.core.mapping import Frame
from maskviewer.gui.binarise.export import (
    MASK_FILTER,
    SCORES_FILTER,
    UnsupportedFormat,
    score_record,
    write_mask,
    write_scores,
)
from maskviewer.gui.binarise.gallery import GalleryPanel, SideBySideWindow
from maskviewer.gui.binarise.model import KINDS, BinariseModel
from maskviewer.gui.binarise.overlay import BinariseOverlay
from maskviewer.gui.binarise.panel import BinarisePanel
from maskviewer.gui.jobs import JobClient


def _model_attribute(path: str) -> property:
    get = attrgetter(path)
    return property(lambda self: get(self.model), doc=f"The model's ``{path}``.")


class BinariseTool(QObject):
    """Wires the Binarise docks to the state, the worker and the canvas.

    Attributes
    ----------
    model : BinariseModel
        The state; :attr:`threshold`, :attr:`current`, :attr:`cache`, :attr:`scores`, … read it.
    reference_provider : callable or None
        Returns ``(name, mask)`` for the "Painted mask" button: an image-sized boolean mask,
        sampled onto the output through the input's frame. Without one, the masks tool's active
        mask is used when that tool is installed.
    confirm : callable
        ``confirm(title, text) -> bool``: asks the user (the resize offer); by default
        ``window.dialogs.question``.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.state
        self.jobs = JobClient(self.controller, KINDS, self)
        self.model = BinariseModel(self.jobs.submit, self.jobs.cancel, self._ask)
        self.panel = BinarisePanel(self.model)
        self.gallery = GalleryPanel(self.model)
        self.overlay = BinariseOverlay(self.model)
        self.map_item, self.err_in, self.err_out = self.overlay.items()
        self.gallery_window = self.gallery_dock = None  # set by install()
        self.reference_provider: Callable[[], tuple[str, np.ndarray] | None] | None = None

        p = self.panel
        p.load_ref.clicked.connect(self.load_reference_dialog)
        p.painted_ref.clicked.connect(self.use_painted_reference)
        p.export_mask.clicked.connect(self.export_mask_dialog)
        p.export_scores.clicked.connect(self.export_scores_dialog)
        self.jobs.finished.connect(self.model.job_finished)
        self.jobs.failed.connect(lambda kind, message, _exc: self.model.job_failed(kind, message))
        self.model.error.connect(self.window.show_error)
        self.state.prediction_changed.connect(lambda pred: self.model.set_prediction(pred, self._frame()))
        self.state.model_changed.connect(lambda _info: self.model.reset())
        self.state.image_changed.connect(lambda _image: self.model.reset())

    # what other code reads on the tool: views of the model's state
    threshold = _model_attribute("threshold")
    method_used = _model_attribute("method_used")
    invert = _model_attribute("invert")
    sources = _model_attribute("sources")
    extra_sources = _model_attribute("extra_sources")
    caches = _model_attribute("caches")
    current = _model_attribute("current")
    cache = _model_attribute("cache")
    scorer = _model_attribute("scoring.scorer")
    scores = _model_attribute("scoring.scores")
    curve = _model_attribute("scoring.curve")
    reference = _model_attribute("scoring.mask")
    reference_name = _model_attribute("scoring.name")
    difference = _model_attribute("difference")

    @property
    def confirm(self) -> Callable[[str, str], bool]:
        return self.model.confirm

    @confirm.setter
    def confirm(self, ask: Callable[[str, str], bool]) -> None:
        self.model.confirm = ask

    def _ask(self, title: str, text: str) -> bool:
        return self.window.dialogs.question(title, text, default_yes=False)

    def _frame(self) -> Frame | None:
        """Where the model input lies on the image (the whole image without a prediction)."""
        pred = self.state.prediction
        if pred is None or not pred.frames:
            img = self.state.image
            return None if img is None else Frame(0.0, 0.0, float(img.width), float(img.height))
        return next(iter(pred.frames.values()))

    # -- actions (the model's, for other tools and tests) ---------------------------------------

    def select_source(self, name: str | None) -> None:
        """Show ``name`` (a key of :attr:`sources`) in the panel and on the canvas."""
        self.model.select_source(name)

    def add_source(self, name: str, array: np.ndarray, frame: Frame | None = None) -> None:
        """Offer another map for binarising; ``frame`` defaults to the model input's frame."""
        self.model.add_source(name, array, frame or self._frame())

    def set_threshold(self, value: float, source: str = "") -> None:
        """Set the threshold and update every view and score."""
        self.model.set_threshold(value, source)

    def apply_method(self, method: str) -> None:
        """Set the threshold with an automatic method (Li, Triangle and Mean on the worker)."""
        self.model.apply_method(method)

    def use_best(self) -> None:
        self.model.use_best()

    def binary_mask(self) -> np.ndarray | None:
        """The exact binary mask of the current source at the current threshold."""
        return self.model.binary_mask()

    def score_record(self) -> dict:
        """What :meth:`export_scores` writes."""
        return score_record(self.model)

    def _rebuild_gallery(self) -> None:
        self.gallery.rebuild()

    # -- reference ------------------------------------------------------------------------------

    def load_reference_dialog(self) -> None:
        path = self.window.dialogs.open_file(
            "Reference mask", self.controller.last_dir(),
            "Masks (*.png *.bmp *.tif *.tiff *.npy);;All files (*)",
        )
        if path:
            self.load_reference(path)

    def load_reference(self, path: str | Path) -> bool:
        """Load a reference mask file (PNG/BMP/TIFF: non-zero is foreground; NPY)."""
        return self.model.load_reference(path)

    def set_reference(self, mask: np.ndarray, name: str = "reference", image_mask: bool = False) -> bool:
        """Score against ``mask`` (see :meth:`BinariseModel.set_reference`)."""
        return self.model.set_reference(mask, name, image_mask)

    def clear_reference(self) -> None:
        self.model.clear_reference()

    def use_painted_reference(self) -> bool:
        """Use the painted mask (from :attr:`reference_provider` or the masks tool)."""
        got = None
        if self.reference_provider is not None:
            got = self.reference_provider()
        else:
            masks = getattr(self.window, "tools", {}).get("masks")
            mask = masks.current_mask() if masks is not None and hasattr(masks, "current_mask") else None
            got = None if mask is None else ("painted mask", np.asarray(mask) > 0.5)
        if got is None:
            self.window.show_error("No painted mask", "Paint a mask on the image first (Masks panel).")
            return False
        name, mask = got
        return self.model.set_reference(np.asarray(mask, dtype=bool), name, image_mask=True)

    # -- export ---------------------------------------------------------------------------------

    def export_mask_dialog(self) -> None:
        start = str(Path(self.controller.last_dir()) / "mask.png")
        path = self.window.dialogs.save_file("Export binary mask", start, MASK_FILTER)
        if path:
            self.export_mask(path)

    def export_mask(self, path: str | Path) -> bool:
        """Write the exact binary mask: ``.png`` as 0/255 grey, ``.npy`` as bool."""
        mask = self.model.binary_mask()
        if mask is None:
            self.window.show_error("Nothing to export", "Run a model with an image-shaped output first.")
            return False
        return self._write(Path(path), lambda p: write_mask(p, mask))

    def export_scores_dialog(self) -> None:
        start = str(Path(self.controller.last_dir()) / "scores.json")
        path = self.window.dialogs.save_file("Export scores", start, SCORES_FILTER)
        if path:
            self.export_scores(path)

    def export_scores(self, path: str | Path) -> bool:
        """Write :meth:`score_record` as ``.json`` or as a two-column ``.csv``."""
        record = score_record(self.model)
        return self._write(Path(path), lambda p: write_scores(p, record))

    def _write(self, path: Path, write: Callable[[Path], Any]) -> bool:
        try:
            write(path)
        except UnsupportedFormat as exc:
            self.window.show_error("Cannot export", str(exc))
            return False
        except OSError as exc:
            self.window.show_error("Cannot export", f"{path}: {exc.strerror or exc}")
            return False
        self.window.statusBar().showMessage(f"Saved {path.name}", 8000)
        return True

    def export_items(self) -> list:
        """The binary output shown, for File → Export."""
        from maskviewer.gui.export_tool import binarise_items

        return binarise_items(self)


def _add_gallery_window(window, tool: BinariseTool) -> None:
    """Side by side in a window of its own, opened by the panel's button and View → Side by Side."""
    side = SideBySideWindow(tool.gallery, window)
    tool.gallery_window = side
    tool.gallery_dock = side  # its older name
    tool.panel.side_by_side.clicked.connect(side.open)
    view_menu = getattr(window, "view_menu", None)
    if view_menu is not None:
        act = QAction("Side by Side (Binarise)…", view_menu)
        act.setToolTip("Input, outputs, binary mask, reconstruction and difference in a window")
        act.triggered.connect(lambda _c=False: side.open())
        view_menu.addAction(act)
    closer = _CloseWith(side, window)
    window.installEventFilter(closer)


class _CloseWith(QObject):
    """Closes a tool window when the main window closes."""

    def __init__(self, other, window) -> None:
        super().__init__(window)
        self.other = other

    def eventFilter(self, _obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Close:
            self.other.close()
        return False


def _add_menu_actions(window, tool: BinariseTool) -> None:
    menu = window.file_menu
    actions = menu.actions()
    before = actions[-2] if len(actions) >= 2 else None  # keep Quit last
    for text, slot in (
        ("Export Binary Mask…", tool.export_mask_dialog),
        ("Export Binarise Scores…", tool.export_scores_dialog),
    ):
        act = QAction(text, menu)
        act.triggered.connect(lambda _c=False, s=slot: s())
        if before is not None:
            menu.insertAction(before, act)
        else:
            menu.addAction(act)


def install(window) -> BinariseTool:
    """Add the Binarise docks, its overlays and the export actions; return the tool."""
    tool = BinariseTool(window)
    window.add_panel("Binarise", tool.panel, Qt.DockWidgetArea.RightDockWidgetArea)
    for z, item in ((20, tool.map_item), (21, tool.err_in), (21, tool.err_out)):
        window.add_panel_overlay("Binarise", item, z)
    _add_gallery_window(window, tool)
    _add_menu_actions(window, tool)
    return tool
