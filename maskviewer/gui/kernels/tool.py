"""The kernels tool: view a Conv2D layer's kernels and mask them with an NxN pattern.

The mask is applied to a copy of the loaded model (see ``maskviewer.inference.kernel_mask``);
the model runs the copy, so predictions and activations show the effect, until Reset. The
file and the loaded model are never changed. This module wires the
:class:`~maskviewer.gui.kernels.model.KernelsModel` to its panel and its jobs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt

from maskviewer.gui.jobs import JobClient
from maskviewer.gui.kernels.model import (
    APPLY_KIND,
    KINDS,
    RESET_KIND,
    WEIGHTS_KIND,
    KernelsModel,
    apply_job,
    reset_job,
    weights_job,
)
from maskviewer.gui.kernels.panel import KernelPanel


class KernelTool(QObject):
    """Wires the kernel panel to the model host (jobs on the inference thread)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.model = KernelsModel()
        self.panel = KernelPanel(self.model)
        self.dock = window.add_panel("Kernels", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.jobs = JobClient(self.controller, KINDS)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(self._job_failed)
        self.model.selection_changed.connect(self.show_layer)
        self.panel.apply.clicked.connect(lambda: self.apply_mask())
        self.panel.reset.clicked.connect(self.reset)
        self.state.model_changed.connect(self._model_changed)
        self._model_changed(self.state.model_info)

    # -- the model's state, as tests and other tools read it -----------------------------------------

    @property
    def kernel(self) -> np.ndarray | None:
        """The kernels drawn, ``(kh, kw, cin, cout)``, or None."""
        return self.model.kernel

    @property
    def layer_path(self) -> str | None:
        """The layer whose kernels are drawn."""
        return self.model.layer_path

    @property
    def applied(self) -> tuple[str, np.ndarray] | None:
        """``(layer, mask)`` applied to the copy of the model that runs, or None (as loaded)."""
        return self.model.applied

    def conv_layers(self) -> list[str]:
        return self.model.conv_layers(self.state.model_info)

    # -- actions (jobs) ----------------------------------------------------------------------------

    def show_layer(self, path: str | None) -> int | None:
        """Fetch and draw the kernels of ``path`` (a job)."""
        if not path:
            return None
        return self.jobs.submit(WEIGHTS_KIND, weights_job(path))

    def apply_mask(self, mask: np.ndarray | None = None) -> int | None:
        """Mask the selected layer's kernels in a copy of the model (a job); then re-predict."""
        path = self.model.selected
        if not path:
            self.window.show_error("Kernel mask", "Pick a Conv2D layer first.")
            return None
        mask = self.model.mask_to_apply(mask)
        self.model.set_status("Applying the kernel mask to a copy of the model…")
        return self.jobs.submit(APPLY_KIND, apply_job(path, mask))

    def reset(self) -> int | None:
        """Run the model as loaded again (a job)."""
        return self.jobs.submit(RESET_KIND, reset_job(self.model.selected))

    # -- events ------------------------------------------------------------------------------------

    def _model_changed(self, info: Any) -> None:
        self.show_layer(self.model.set_model(info))

    def _job_finished(self, kind: str, result: Any) -> None:
        self.model.job_done(result)
        if kind in (APPLY_KIND, RESET_KIND):
            self.controller.schedule_prediction()

    def _job_failed(self, kind: str, message: str, _exc: Any) -> None:
        if kind == WEIGHTS_KIND:
            self.model.kernels_failed(message)
            return
        self.model.set_status(message)
        self.window.show_error("Kernel mask", message)


def install(window: Any) -> KernelTool:
    """Add the Kernels dock."""
    return KernelTool(window)
