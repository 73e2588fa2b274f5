"""The Compare tool: attribution methods side by side on the current image, each scored.

The chosen methods run as one ``"compare"`` job on the inference thread (progress and Cancel
through a :class:`~maskviewer.gui.jobs.JobClient`): each method's map, its deletion and
insertion curves and its sanity check. The table sorts by any score; the selected method's
map is drawn large over the image. The layer, output, class and input are the Layers tool's.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.heatmap import default_cam_layer
from maskviewer.gui.compare.jobs import CompareOutcome, run_compare
from maskviewer.gui.compare.model import CompareModel
from maskviewer.gui.compare.panel import ComparePanel
from maskviewer.gui.jobs import JobClient
from maskviewer.gui.layers.overlay import HeatmapOverlay

KIND = "compare"
TITLE = "Compare"
DEFAULT_METHODS = ["gradcam", "saliency"]


class CompareTool(QObject):
    """Owns the Compare page, its overlay and its job."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        from maskviewer.inference.faithfulness import method_labels

        self.window = window
        self.controller = window.controller
        self.state = self.controller.state
        self.model = CompareModel()
        self.model.set_methods(method_labels(), DEFAULT_METHODS)
        self.panel = ComparePanel(self.model)
        self.dock = window.add_panel(TITLE, self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay = HeatmapOverlay()
        window.add_panel_overlay(TITLE, self.overlay, 25)
        self.jobs = JobClient(self.controller, (KIND,), self)
        self._following = False  # listening to the Layers tool's choices

        p, m = self.panel, self.model
        p.run.clicked.connect(self.run)
        p.cancel.clicked.connect(self.cancel)
        p.row_clicked.connect(self.show_method)
        m.selection_changed.connect(lambda _method: self.draw())
        self.jobs.finished.connect(self._finished)
        self.jobs.failed.connect(lambda _kind, message, _exc: m.set_message(f"Compare failed: {message}"))
        self.jobs.cancelled.connect(lambda _kind: m.set_message("Cancelled."))
        self.jobs.progress.connect(lambda _kind, done, total: p.set_progress(done, total))
        self.jobs.running_changed.connect(p.set_running)
        self.state.model_changed.connect(lambda _info: self._forget())
        self.state.image_changed.connect(lambda _image: self._forget())
        for signal in (self.state.model_changed, self.state.image_changed, self.state.prediction_changed):
            signal.connect(lambda *_a: self.update_where())
        self.update_where()

    # -- where the maps are computed (the Layers tool's choices) -----------------------------------

    def _layers_model(self) -> Any:
        layers = getattr(self.window, "tools", {}).get("layers")
        return getattr(layers, "model", None)

    def where(self) -> tuple[str | None, str | None, int | None, str | None]:
        """``(layer, output, class, input)``: the Layers tool's, the default CAM layer when its
        layer has no spatial map."""
        lm = self._layers_model()
        info = self.state.model_info
        layer = output = input_name = None
        class_index = None
        if lm is not None:
            output, input_name = lm.output, lm.input
            class_index = None if lm.class_index < 0 else lm.class_index
            entry = lm.entries.get(lm.selected) if lm.selected else None
            if entry is not None and entry.spatial:
                layer = lm.selected
        if layer is None and info is not None:
            default = default_cam_layer(info, output)
            layer = default.path if default is not None else None
        return layer, output, class_index, input_name

    def update_where(self) -> None:
        lm = self._layers_model()
        if lm is not None and not self._following:  # the Layers tool is installed before this one
            lm.request_changed.connect(self.update_where)
            self._following = True
        layer, output, cls, _input = self.where()
        if self.state.model_info is None:
            text = "No model loaded."
        else:
            text = (f"Layer {layer or '(none: CAM methods need a spatial layer)'} · output {output or 'first'} · "
                    f"class {'top' if cls is None else cls} — as chosen in the Layers tool.")
        self.panel.where.setText(text)

    # -- actions ---------------------------------------------------------------------------------

    def run(self) -> int | None:
        """Compare the ticked methods on the current image; returns the job's generation."""
        m = self.model
        info = self.state.model_info
        if info is None or self.state.image is None:
            m.set_message("Open a model and an image first, then press Run.")
            return None
        if self.controller.loading_model:
            m.set_message("The model is still loading; press Run again once it is ready.")
            return None
        if not info.probe_supported:
            m.set_message(info.note or "This model's layers cannot be probed, so there are no maps to compare.")
            return None
        self.update_where()
        req = m.make_request(*self.where())
        if isinstance(req, str):
            m.set_message(req)
            return None
        try:
            build = self.controller.build_inputs()
        except MaskviewerError as exc:
            m.set_message(str(exc))
            return None
        m.set_message(f"Comparing {len(req.methods)} methods…")
        return self.jobs.submit(KIND, lambda ctx: run_compare(ctx, info, build, req))

    def cancel(self) -> None:
        self.jobs.cancel(KIND)

    def show_method(self, method: str) -> None:
        """Draw ``method``'s map large over the image (and bring the page to the front)."""
        self.model.select(method)
        self.window.show_panel(TITLE)

    def sort_by(self, key: str, descending: bool | None = None) -> None:
        self.model.sort_by(key, descending)

    def draw(self) -> None:
        heat = self.model.large()
        self.overlay.draw(heat, self.model.colormap, self.model.opacity / 100.0)

    def export_items(self) -> list:
        """The compared maps with their table's numbers, for File → Export (see
        maskviewer.gui.export_tool)."""
        from maskviewer.gui.export_tool import compare_items

        return compare_items(self)

    def _finished(self, _kind: str, outcome: CompareOutcome) -> None:
        self.model.set_outcome(outcome)

    def _forget(self) -> None:
        self.jobs.cancel(KIND)
        self.model.clear()


def install(window: Any) -> CompareTool:
    """Add the Compare page and its overlay to ``window``."""
    return CompareTool(window)
