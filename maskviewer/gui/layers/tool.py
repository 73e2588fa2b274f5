"""The Layers tool: per-layer activation maps, attention maps and Grad-CAM over the image.

Model work runs as jobs on the inference thread (kinds ``"layers_info"`` and ``"probe"``);
the GUI thread only normalises the small map, upsamples it and maps it through a 256-entry
colour table, so changing colours, opacity or scaling never asks the model again. This module
wires the :class:`~maskviewer.gui.layers.model.LayersModel` to its panel, its jobs and the
canvas overlay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import Frame
from maskviewer.gui.jobs import JobClient
from maskviewer.gui.layers.model import LayersModel
from maskviewer.gui.layers.overlay import HeatmapOverlay
from maskviewer.gui.layers.panel import LayersPanel
from maskviewer.gui.layers.probe import ProbeOutcome, ProbeRequest, describe_layers_job, run_probe
from maskviewer.gui.layers.tree import OPTIONAL_COLUMNS

INFO_KIND = "layers_info"
PROBE_KIND = "probe"
#: where the layer list's optional columns are remembered
SETTINGS_COLUMNS = "layers/columns"


class LayersTool(QObject):
    """Owns the Layers dock, the heatmap overlay and the probe jobs."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = self.controller.state
        self.model = LayersModel()
        self.panel = LayersPanel(self.model)
        self.dock = window.add_panel("Layers", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay = HeatmapOverlay()
        window.add_panel_overlay("Layers", self.overlay, 20)
        self._remember_columns()
        #: returns the painted mask (image pixels, (H, W)) or None; set by the mask tool
        self.mask_provider: Callable[[], np.ndarray | None] = self._mask_from_tool
        self.jobs = JobClient(self.controller, (INFO_KIND, PROBE_KIND))
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)  # one job for a burst of edits
        self._timer.timeout.connect(self.probe_now)

        m = self.model
        m.request_changed.connect(self.request)
        m.display_changed.connect(self.render)
        m.cleared.connect(self.overlay.hide)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(lambda _kind, message, _exc: m.show_error(message))
        s = self.state
        s.model_changed.connect(self._model_changed)
        s.kinds.changed.connect(self._kinds_changed)
        s.image_changed.connect(lambda _img: m.clear())
        s.prediction_changed.connect(self._prediction_changed)
        s.labels_changed.connect(lambda _labels: self._update_info())
        self._model_changed(self.state.model_info)

    def _remember_columns(self) -> None:
        """The layer list's optional columns (type, parameters) as the user left them."""
        settings = self.controller.settings
        if settings is None:
            return
        tree = self.panel.layer_tree
        for name in OPTIONAL_COLUMNS:
            if settings.value(f"{SETTINGS_COLUMNS}/{name}", "false") in (True, "true"):
                tree.set_column_shown(name, True)
        tree.column_shown.connect(lambda name, on: settings.setValue(f"{SETTINGS_COLUMNS}/{name}", on))

    # -- the model's state, as other tools read it --------------------------------------------------

    @property
    def entries(self) -> dict[str, Any]:
        """The layer list: path -> :class:`~maskviewer.inference.probe.LayerEntry`."""
        return self.model.entries

    @property
    def outcome(self) -> ProbeOutcome | None:
        """The latest probe's outcome (None before one, or after the image or model changed)."""
        return self.model.outcome

    @property
    def grid_layout(self):
        """The layout of the channel grid last drawn, or None."""
        return self.model.grid_layout

    def current_request(self) -> ProbeRequest | None:
        return self.model.current_request()

    def current_map(self) -> tuple[np.ndarray | None, tuple[float, float] | None]:
        """The map to draw (layer resolution) and the shared range, from the latest result."""
        return self.model.current_map()

    def current_frame(self) -> Frame | None:
        """Where the map lies over the image."""
        return self.model.current_frame()

    def _mask_from_tool(self) -> np.ndarray | None:
        masks = getattr(self.window, "tools", {}).get("masks")
        current = getattr(masks, "current_mask", None)
        return current() if callable(current) else None

    # -- actions ---------------------------------------------------------------------------------

    def select_layer(self, path: str) -> None:
        """Select ``path`` (from a session, a demo or a test; the user picks it in the tree)."""
        if path:
            self.model.select_layer(path)

    def select_channel(self, channel: int) -> None:
        """Show one channel: in grid mode the grid stays, otherwise the method becomes 'one channel'."""
        self.model.select_channel(channel)

    def request(self) -> None:
        """Ask for the current layer's map soon (bursts of changes make one job)."""
        self._timer.start()

    def probe_now(self) -> int | None:
        """Submit the probe job for the current request; returns its generation."""
        m = self.model
        info = self.state.model_info
        req = m.current_request()
        loading = self.controller.loading_model  # its results would be stale
        if info is None or not info.probe_supported or req is None or loading:
            return None
        if self.state.image is None:
            m.set_message("Open an image to see what the layers respond to.")
            return None
        problem = m.request_problem(req)
        if problem:
            m.show_error(problem)
            return None
        mask = None
        if req.rank_in_mask:
            mask = self.mask_provider()
            if mask is None:
                m.set_info("No mask painted yet: channels are ranked over the whole map.")
        try:
            build = self.controller.build_inputs()
        except MaskviewerError as exc:
            m.show_error(str(exc))
            return None
        return self.jobs.submit(PROBE_KIND, lambda ctx: run_probe(ctx, info, build, req, mask))

    # -- events ----------------------------------------------------------------------------------

    def _model_changed(self, info: Any) -> None:
        self._timer.stop()
        self._read_kinds()
        if self.model.set_model(info):
            self.jobs.submit(INFO_KIND, describe_layers_job)

    def _read_kinds(self) -> None:
        """Outputs read as values explain the value: the panel offers no class for them."""
        from maskviewer.core.output_kinds import REGRESSION

        info, kinds = self.state.model_info, self.state.kinds
        outputs = [t.name for t in info.outputs] if info is not None else []
        self.model.value_outputs = {n for n in outputs if kinds.kind_of(n).kind == REGRESSION}

    def _kinds_changed(self, *_args: Any) -> None:
        self._read_kinds()
        self.model.request_changed.emit()

    def _prediction_changed(self, prediction: Any) -> None:
        if prediction is not None:
            self.request()

    def _job_finished(self, kind: str, result: Any) -> None:
        if kind == INFO_KIND:
            self.model.set_layers(result, self.state.model_info)
        elif self.model.set_outcome(result):
            self.render()

    # -- drawing ---------------------------------------------------------------------------------

    def render(self) -> None:
        """Draw the latest result with the current colours, opacity, scaling and input."""
        m = self.model
        self.panel.colorbar.set_colormap(m.colormap)
        drawing = m.drawing()
        if drawing is None:
            return
        self.overlay.draw(drawing.heatmap, m.colormap, m.opacity / 100.0)
        self.panel.show_drawing(drawing)
        self._update_info()

    def _update_info(self) -> None:
        text = self.model.describe(self.state.labels, self.state.kinds)
        if text is not None:
            self.model.set_info(text)

    def displayed_rgb(self) -> np.ndarray | None:
        """The overlay as drawn (before opacity): ``lut[indices]``, ``(H, W, 3)`` uint8."""
        return self.overlay.displayed_rgb()

    def export_items(self) -> list:
        """The map shown, for File → Export (see maskviewer.gui.export_tool)."""
        from maskviewer.gui.export_tool import layers_items

        return layers_items(self)


def install(window: Any) -> LayersTool:
    """Add the Layers dock and the heatmap overlay to ``window``."""
    return LayersTool(window)
