"""The Patches tool: cut the image into patches, step through them, run them all, combine.

All patch rectangles are drawn over the image with the current one highlighted; the current
patch is shown as it enters the model. Running all patches (and occlusion on the same grid) is a
worker job; the per-patch probabilities feed a table, a bar chart, the combination, and maps
over the image. :class:`PatchTool` wires the :class:`PatchModel` to its panel, the canvas
overlays, the worker (through :class:`~maskviewer.gui.jobs.JobClient`) and the menus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMenu

from maskviewer.gui.jobs import JobClient
from maskviewer.gui.patches import export
from maskviewer.gui.patches.model import PatchModel
from maskviewer.gui.patches.overlay import PatchOverlay
from maskviewer.gui.patches.panel import PatchPanel, arrow_step
from maskviewer.gui.patches.results import MAPS
from maskviewer.gui.patches.runs import (
    KIND,
    KIND_CURRENT,
    KIND_OCCLUSION,
    all_patches_job,
    current_patch_job,
    occlusion_job,
)


def _model_attr(name: str, doc: str) -> property:
    """A read-only view of ``tool.model.<name>``, kept on the tool for its readers."""
    return property(lambda self: getattr(self.model, name), doc=doc)


def _results_attr(name: str, doc: str) -> property:
    """A read-only view of ``tool.model.results.<name>``."""
    return property(lambda self: getattr(self.model.results, name), doc=doc)


class PatchTool(QObject):
    """The Patches dock, its canvas overlays and menu actions, wired to the window and the worker.

    The state is :attr:`model`'s; the attributes below read it (other tools, the session and
    the exports use them).
    """

    current_patch_changed = Signal(object)  # dict of batched inputs for the current patch, or None

    spec = _model_attr("spec", "The last valid settings (PatchSpec).")
    grid = _model_attr("grid", "``spec`` on the current image, or None.")
    index = _model_attr("index", "The current patch.")
    message = _model_attr("message", "What is wrong, or ''.")
    outputs = _results_attr("outputs", "Output name -> ``(N, ...)`` of the last run, or None.")
    probs = _results_attr("probs", "``(N, K)`` per-patch probabilities of the last run, or None.")
    prob_note = _results_attr("prob_note", "How the scores were read as probabilities.")
    occlusion = _results_attr("occlusion", "The last OcclusionRun for the current settings, or None.")
    combined = _results_attr("combined", "The combination of ``probs``, or None.")
    run_seconds = _results_attr("run_seconds", "Wall time of the last run of all patches.")

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.model = PatchModel(self.state)
        self.panel = PatchPanel()
        # the window makes it a tab on the right and scrolls it
        self.dock = window.add_panel("Patches", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay = PatchOverlay(window)
        self.map_item = self.overlay.map_item
        self.rects_item = self.overlay.rects_item
        self.current_item = self.overlay.current_item
        self._shown_input: np.ndarray | None = None
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(500)
        self.play_timer.timeout.connect(lambda: self.model.step(1, wrap=True))
        # runs show progress and Cancel; the current patch's own prediction runs quietly
        self.runs = JobClient(self.controller, (KIND, KIND_OCCLUSION), self)
        self.current_jobs = JobClient(self.controller, (KIND_CURRENT,), self)
        self.panel.bind(self.model)
        self._connect_model()
        self._connect_panel()
        self._connect_jobs()
        self._add_menus()
        window.canvas.installEventFilter(self)
        self.model.image_changed()

    # -- wiring ----------------------------------------------------------------------------------

    def _connect_model(self) -> None:
        m, res = self.model, self.model.results
        m.invalidated.connect(self._stop_runs)
        m.grid_changed.connect(lambda grid: self.overlay.draw_rects(grid, m.index))
        m.current_changed.connect(self._show_current)
        m.prediction_changed.connect(self._show_prediction)
        res.changed.connect(self._update_map)
        res.map_kind_changed.connect(lambda _k: self._update_map())
        res.map_class_changed.connect(lambda _c: (self._update_map(), self.panel.show_table(res.table_data(m.grid))))

    def _connect_panel(self) -> None:
        p = self.panel
        p.play_button.toggled.connect(self.set_playing)
        p.run_button.clicked.connect(self.run_all)
        p.occlusion_button.clicked.connect(self.run_occlusion)
        p.cancel_button.clicked.connect(self.cancel)
        p.map_opacity.valueChanged.connect(lambda _v: self._update_map())
        p.show_rects.toggled.connect(self.rects_item.setVisible)
        p.export_png_button.clicked.connect(self.export_png_dialog)
        p.export_npy_button.clicked.connect(lambda: self.export_npy_dialog(inputs=False))
        p.export_inputs_button.clicked.connect(lambda: self.export_npy_dialog(inputs=True))
        p.export_csv_button.clicked.connect(self.export_csv_dialog)

    def _connect_jobs(self) -> None:
        for client in (self.runs, self.current_jobs):
            client.finished.connect(self.model.accept)
            client.failed.connect(lambda _kind, message, _exc: self.model.set_message(message, "run"))
        self.runs.progress.connect(lambda _kind, done, total: self.panel.set_progress(done, total))
        self.runs.running_changed.connect(self.panel.set_busy)

    def _add_menus(self) -> None:
        window = self.window
        menu = QMenu("Export &Patches", window)
        menu.addAction("Patches as &PNG Files…", self.export_png_dialog)
        menu.addAction("Patches as one &NPY Batch…", lambda: self.export_npy_dialog(inputs=False))
        menu.addAction("Patches as &Model Inputs (NPY)…", lambda: self.export_npy_dialog(inputs=True))
        menu.addAction("Patch &Table (CSV)…", self.export_csv_dialog)
        seps = [a for a in window.file_menu.actions() if a.isSeparator()]
        if seps:  # above Quit
            window.file_menu.insertMenu(seps[-1], menu)
        else:
            window.file_menu.addMenu(menu)
        act = window.model_menu.addAction("Run All &Patches", self.run_all)
        act.setShortcut("Ctrl+Shift+P")

    # -- settings and stepping -------------------------------------------------------------------

    def apply_settings(self) -> bool:
        """Read the fields and use them; on bad input say why and keep the last valid settings."""
        return self.panel.apply_settings()

    def set_spec(self, spec) -> bool:
        """Use ``spec`` if it fits the current image; otherwise report it and keep the last valid one."""
        return self.model.set_spec(spec)

    def apply_preset(self) -> bool:
        """Apply the chosen preset to the current image."""
        return self.panel.apply_preset()

    def set_index(self, index: int) -> None:
        """Make patch ``index`` the current one (clamped to the grid)."""
        self.model.set_index(index)

    def step(self, delta: int, wrap: bool = False) -> None:
        """Move ``delta`` patches (``ROW_STEP`` multiples move by rows)."""
        self.model.step(delta, wrap)

    def set_playing(self, playing: bool) -> None:
        """Step on every half second (wrapping around) while ``playing``."""
        grid = self.model.grid
        started = bool(playing and grid is not None and grid.count > 1)
        if started:
            self.play_timer.start()
        else:
            self.play_timer.stop()
        self.panel.show_playing(started, uncheck=not playing)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        # arrow keys over the image step through the patches
        if obj is self.window.canvas and event.type() == QEvent.Type.KeyPress and self.model.grid is not None:
            step = arrow_step(event.key())
            if step is not None:
                self.model.step(step)
                return True
        return False

    # -- showing ---------------------------------------------------------------------------------

    def rects_drawn(self) -> np.ndarray:
        """The rectangles on the canvas as ``(N, 4)`` ``x, y, width, height`` (read back from the item)."""
        return self.overlay.rects_drawn()

    def current_patch(self) -> np.ndarray | None:
        """The current patch as cut (``(kh, kw, C)``, the image's dtype)."""
        return self.model.current_patch()

    def current_inputs(self) -> dict[str, np.ndarray] | None:
        """The current patch as batched model inputs (``{name: (1, ...)}``), or None."""
        return self.model.current_inputs()

    @property
    def shown_patch(self) -> np.ndarray | None:
        """The array shown enlarged: the model input for the current patch (or the raw patch)."""
        return self._shown_input

    def _show_current(self, index: int) -> None:
        self.overlay.draw_current(self.model.grid, index)
        view = self.model.current_view()
        self.panel.show_current(view)
        self._shown_input = None if view is None else view.array
        self.current_patch_changed.emit(None if view is None else view.inputs)
        if view is not None:
            self._show_prediction()

    def _show_prediction(self) -> None:
        probs, ask = self.model.current_prediction()
        if ask:
            self._predict_current()
        self.panel.patch_prediction.setText(self.model.results.prediction_text(probs))
        self.panel.draw_bars(self.model.results.combined, self.model.results.probs, self.model.index)

    def _update_map(self) -> None:
        layer, legend = self.model.results.map_layer(self.model.grid)
        self.overlay.draw_map(layer, self.model.grid, self.panel.map_opacity.value())
        self.panel.map_legend.setText(legend)

    def show_map(self, kind: str = "score") -> None:
        """Show the map ``kind`` (a key of :data:`~maskviewer.gui.patches.results.MAPS`) over the
        image; drawn as soon as its run is there (a demo opens with its vote's map shown)."""
        if kind in MAPS and kind != self.model.results.map_kind:
            self.model.results.set_map_kind(kind)

    def occlusion_drop(self) -> np.ndarray | None:
        """``(N, K)``: how much each class's probability drops with each patch greyed out."""
        return self.model.results.occlusion_drop()

    def table(self) -> tuple[list[str], list[list]] | None:
        """The full per-patch table (as exported to CSV)."""
        return self.model.results.table(self.model.grid)

    def map_values(self) -> tuple[np.ndarray, str] | None:
        """``(N,)`` per-patch values of the map shown and its kind, or None."""
        return self.model.results.map_values()

    def _output_name(self) -> str | None:
        return self.model.results.output_name

    # -- running ---------------------------------------------------------------------------------

    def _job_parts(self) -> tuple:
        return self.model.job_parts(self.controller.extra_images)

    def _predict_current(self) -> None:
        self.current_jobs.submit(KIND_CURRENT, current_patch_job(*self._job_parts(), self.model.index))

    def run_all(self) -> int | None:
        """Run every patch through the model in batches (a worker job); returns its generation."""
        if not self.model.can_run():
            return None
        parts = self._job_parts()
        return self._start(KIND, "Running patches…", parts[1].count, all_patches_job(*parts))

    def run_occlusion(self) -> int | None:
        """Grey out each patch in turn and run the whole image (a worker job)."""
        if not self.model.can_run():
            return None
        parts = self._job_parts()
        return self._start(KIND_OCCLUSION, "Occlusion…", parts[1].count + 1, occlusion_job(*parts))

    def _start(self, kind: str, text: str, total: int, job: Any) -> int:
        self.model.set_message("", "run")
        self.panel.start_progress(text, total)
        return self.runs.submit(kind, job)

    def cancel(self) -> None:
        """Stop the runs of all patches and of occlusion."""
        self.runs.cancel()
        self.model.results.set_run_note("Cancelled.")

    def _stop_runs(self) -> None:
        # results for the old settings are no longer wanted
        self.runs.cancel()
        self.current_jobs.cancel()
        self.set_playing(False)
        self.panel.play_button.setChecked(False)

    # -- exports ---------------------------------------------------------------------------------

    def export_pngs(self, folder: str | Path) -> list[Path]:
        """Write every patch as a PNG file into ``folder``."""
        return export.export_pngs(self.model, folder)

    def export_npy(self, path: str | Path, inputs: bool = False) -> np.ndarray:
        """Write all patches as one ``(N, kh, kw, C)`` NPY (``inputs``: as the model's batch)."""
        return export.export_npy(self.model, path, inputs)

    def export_csv(self, path: str | Path) -> None:
        """Write the per-patch table (probabilities, occlusion drops) as CSV."""
        export.export_csv(self.model, path)

    def export_png_dialog(self) -> None:
        export.export_png_dialog(self.window, self.model)

    def export_npy_dialog(self, inputs: bool = False) -> None:
        export.export_npy_dialog(self.window, self.model, inputs)

    def export_csv_dialog(self) -> None:
        export.export_csv_dialog(self.window, self.model)

    def export_items(self) -> list:
        """The patch map shown and the run's numbers, for File → Export."""
        from maskviewer.gui.export_tool import patch_items

        return patch_items(self)


def install(window) -> PatchTool:
    """Add the Patches dock, its canvas overlays and menu actions to ``window``."""
    return PatchTool(window)
