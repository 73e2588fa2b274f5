"""The Attention tool: per-head attention maps, the heads × layers overview, attention rollout
and the class attribution of a vision transformer, over the image.

The work runs as jobs on the inference thread (kinds ``"attention_info"`` and ``"attention"``,
see :mod:`maskviewer.gui.attention.jobs`); the GUI thread only colours the small maps. A click
on the image while this page is in front makes the patch under it the query token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.heatmap import colormap_lut
from maskviewer.gui.attention.jobs import AttentionOutcome, list_attention_job, run_attention
from maskviewer.gui.attention.model import AttentionModel
from maskviewer.gui.attention.panel import AttentionPanel
from maskviewer.gui.jobs import JobClient

TITLE = "Attention"
INFO_KIND = "attention_info"
RUN_KIND = "attention"


class AttentionTool(QObject):
    """Owns the Attention page, its overlay and its jobs."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = self.controller.state
        self.model = AttentionModel()
        self.panel = AttentionPanel(self.model)
        self.page = window.add_panel(TITLE, self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.hide()
        window.add_panel_overlay(TITLE, self.overlay, 20)
        self.jobs = JobClient(self.controller, (INFO_KIND, RUN_KIND))
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.run_now)
        m = self.model
        m.request_changed.connect(self.request)
        m.display_changed.connect(self.render)
        m.cleared.connect(self.overlay.hide)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(lambda _kind, message, _exc: m.set_message(message))
        s = self.state
        s.model_changed.connect(self._model_changed)
        s.image_changed.connect(lambda _img: (self.overlay.hide(), self.request()))
        s.prediction_changed.connect(lambda p: self.request() if p is not None else None)
        window.canvas.scene().sigMouseClicked.connect(self._canvas_clicked)
        self._model_changed(self.state.model_info)

    # -- actions ---------------------------------------------------------------------------------

    def request(self) -> None:
        """Compute the current request soon (a burst of changes makes one job)."""
        self._timer.start()

    def run_now(self) -> int | None:
        """Submit the attention job for the current request; returns its generation."""
        info = self.state.model_info
        m = self.model
        if info is None or not m.ready or self.controller.loading_model:
            return None
        if self.state.image is None:
            m.set_message("Open an image to see where the model attends.")
            return None
        try:
            build = self.controller.build_inputs()
        except MaskviewerError as exc:
            m.set_message(str(exc))
            return None
        req = m.request
        return self.jobs.submit(RUN_KIND, lambda ctx: run_attention(ctx, info, build, req))

    def show_mode(self, mode: str) -> None:
        """Show ``mode`` (a demo's focus, a test, the user's choice)."""
        self.model.set_mode(mode)

    def _canvas_clicked(self, event: Any) -> None:
        front = getattr(self.page, "is_in_front", None)
        if event.button() != Qt.MouseButton.LeftButton or self.state.image is None:
            return
        if callable(front) and not front():
            return
        p = self.window.canvas.view.mapSceneToView(event.scenePos())
        self.model.pick_pixel(float(p.x()), float(p.y()))

    # -- events ----------------------------------------------------------------------------------

    def _model_changed(self, info: Any) -> None:
        self._timer.stop()
        self.overlay.hide()
        if self.model.set_model(info):
            self.jobs.submit(INFO_KIND, list_attention_job)

    def _job_finished(self, kind: str, result: Any) -> None:
        if kind == INFO_KIND:
            self.model.set_layers(result)
        elif isinstance(result, AttentionOutcome) and self.model.set_outcome(result):
            self.render()

    # -- drawing ---------------------------------------------------------------------------------

    def render(self) -> None:
        """Draw the latest maps: the image overlay and the tiles."""
        drawn = self.model.heatmap()
        self.panel.show_tiles()
        if drawn is None:
            self.overlay.hide()
            return
        indices, frame = drawn
        self.overlay.setImage(indices, autoLevels=False, levels=(0, 255), lut=colormap_lut(self.model.colormap))
        self.overlay.setRect(frame.x, frame.y, frame.width, frame.height)
        self.overlay.setOpacity(self.model.opacity / 100.0)
        self.overlay.show()

    def displayed_rgb(self) -> np.ndarray | None:
        """The overlay as drawn (before opacity), ``(H, W, 3)`` uint8, or None."""
        if not self.overlay.isVisible() or self.overlay.image is None:
            return None
        return np.asarray(self.overlay.lut)[self.overlay.image]


def install(window: Any) -> AttentionTool:
    """Add the Attention page and its overlay to ``window``."""
    return AttentionTool(window)
