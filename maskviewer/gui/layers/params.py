"""SmoothGrad's and Integrated Gradients' parameter widgets, bound to the Layers model.

One row under the method list: samples and noise for SmoothGrad, steps and baseline for IG,
shown only while that method is chosen (the row hides for every other method).
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QSpinBox, QWidget

from maskviewer.gui.layers.model import LayersModel
from maskviewer.gui.layers.probe import PARAM_LIMITS

BASELINE_LABELS = {"black": "black baseline", "blurred": "blurred baseline"}


class MethodParamsRow(QWidget):
    """The parameters of the method chosen in ``model`` (hidden for methods without any)."""

    def __init__(self, model: LayersModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._updating = False
        self.smooth_samples = QSpinBox()
        self.smooth_samples.setRange(*PARAM_LIMITS["smooth_samples"])
        self.smooth_samples.setPrefix("samples ")
        self.smooth_samples.setToolTip("SmoothGrad: noisy copies of the image averaged")
        self.smooth_noise = QDoubleSpinBox()
        self.smooth_noise.setRange(*PARAM_LIMITS["smooth_noise"])
        self.smooth_noise.setSingleStep(0.05)
        self.smooth_noise.setDecimals(2)
        self.smooth_noise.setPrefix("noise ")
        self.smooth_noise.setToolTip("SmoothGrad: the noise's sigma, a fraction of the image's value range")
        self.ig_steps = QSpinBox()
        self.ig_steps.setRange(*PARAM_LIMITS["ig_steps"])
        self.ig_steps.setPrefix("steps ")
        self.ig_steps.setToolTip("Integrated Gradients: points on the path from the baseline (trapezoid rule)")
        self.ig_baseline = QComboBox()
        for key, label in BASELINE_LABELS.items():
            self.ig_baseline.addItem(label, key)
        self.ig_baseline.setToolTip("Integrated Gradients: the path starts at zeros (black) or a blurred image")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for w in (self.smooth_samples, self.smooth_noise, self.ig_steps, self.ig_baseline):
            row.addWidget(w)
        row.addStretch(1)
        for spin, name in ((self.smooth_samples, "smooth_samples"), (self.ig_steps, "ig_steps")):
            spin.valueChanged.connect(lambda v, n=name: self._set(n, v))
        self.smooth_noise.valueChanged.connect(lambda v: self._set("smooth_noise", float(v)))
        self.ig_baseline.currentIndexChanged.connect(lambda _i: self._set("ig_baseline", self.ig_baseline.currentData()))
        model.request_changed.connect(self.sync)
        self.sync()

    def _set(self, name: str, value: object) -> None:
        if not self._updating:
            self.model.set_param(name, value)

    def sync(self) -> None:
        """Copy the model's parameters in, and show the ones of the method chosen."""
        m, p = self.model, self.model.params
        self._updating = True
        try:
            self.smooth_samples.setValue(p.smooth_samples)
            self.smooth_noise.setValue(p.smooth_noise)
            self.ig_steps.setValue(p.ig_steps)
            self.ig_baseline.setCurrentIndex(self.ig_baseline.findData(p.ig_baseline))
        finally:
            self._updating = False
        smooth, ig = m.method == "smoothgrad", m.method == "ig"
        for w, on in ((self.smooth_samples, smooth), (self.smooth_noise, smooth), (self.ig_steps, ig), (self.ig_baseline, ig)):
            w.setVisible(on)
        self.setVisible(smooth or ig)
