"""The attribution methods' parameter widgets, bound to the Layers model.

One row under the method list: samples and noise for SmoothGrad, steps and baseline for IG,
window and stride for Occlusion, the channels for Score-CAM, shown only while that method is
chosen (the row hides for every other method).
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
        self.occlusion_window = self._auto_spin("occlusion_window", "window ", " px", "window: auto",
                                                "Occlusion: the square window's side in input pixels "
                                                "(auto: an eighth of the input's shorter side)")
        self.occlusion_stride = self._auto_spin("occlusion_stride", "stride ", " px", "stride: auto",
                                                "Occlusion: the window's step in input pixels (auto: half the window)")
        self.score_channels = self._auto_spin("score_channels", "", " channels", "all channels",
                                              "Score-CAM: only the channels of largest spatial spread "
                                              "(a model pass per channel; all: every channel)")
        self.per_method = {"smoothgrad": (self.smooth_samples, self.smooth_noise),
                           "ig": (self.ig_steps, self.ig_baseline),
                           "occlusion": (self.occlusion_window, self.occlusion_stride),
                           "scorecam": (self.score_channels,)}
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for widgets in self.per_method.values():
            for w in widgets:
                row.addWidget(w)
        row.addStretch(1)
        for spin, name in ((self.smooth_samples, "smooth_samples"), (self.ig_steps, "ig_steps"),
                           (self.occlusion_window, "occlusion_window"), (self.occlusion_stride, "occlusion_stride"),
                           (self.score_channels, "score_channels")):
            spin.valueChanged.connect(lambda v, n=name: self._set(n, v))
        self.smooth_noise.valueChanged.connect(lambda v: self._set("smooth_noise", float(v)))
        self.ig_baseline.currentIndexChanged.connect(lambda _i: self._set("ig_baseline", self.ig_baseline.currentData()))
        model.request_changed.connect(self.sync)
        self.sync()

    @staticmethod
    def _auto_spin(name: str, prefix: str, suffix: str, auto: str, tip: str) -> QSpinBox:
        """A spin box whose 0 reads ``auto`` (the method's default)."""
        spin = QSpinBox()
        spin.setRange(*PARAM_LIMITS[name])
        spin.setPrefix(prefix)
        spin.setSuffix(suffix)
        spin.setSpecialValueText(auto)
        spin.setToolTip(tip)
        return spin

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
            self.occlusion_window.setValue(p.occlusion_window)
            self.occlusion_stride.setValue(p.occlusion_stride)
            self.score_channels.setValue(p.score_channels)
        finally:
            self._updating = False
        for method, widgets in self.per_method.items():
            for w in widgets:
                w.setVisible(m.method == method)
        self.setVisible(m.method in self.per_method)
