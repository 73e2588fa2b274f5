"""Attribution maps: every method the app offers, one API, one traced function per request.

:func:`attribution_function` returns a callable for one (model, method, layer, output,
options); it is made once and kept on the model's probe, and its passes are traced functions
reused for every batch of the same shapes. Calling it on a batch of model inputs returns an
:class:`AttributionBatch`: one map per image, its class and score, and whether the maps lie on
the layer's grid (``space == "layer"``: the CAMs) or on the input's pixels (``"input"``:
Saliency, SmoothGrad, Integrated Gradients, Occlusion).

Methods (formulas as the papers, and as pytorch-grad-cam, tf-keras-vis and Captum compute them):

* ``gradcam``, ``gradcam++``: :mod:`maskviewer.inference.cam`.
* ``hirescam`` (Draelos & Carin 2020): ``relu(sum_k g_k * A_k)``, element-wise.
* ``xgradcam`` (Fu et al. 2020): ``w_k = sum_ij(g * A) / (sum_ij A + 1e-7)``, ``relu(sum_k w_k A_k)``.
* ``layercam`` (Jiang et al. 2021): ``relu(sum_k relu(g_k) * A_k)``.
* ``eigencam`` (Muhammad & Yeasin 2020): no gradient; the activations ``(HW, C)`` centred over
  the grid, projected on their first right singular vector, ReLU. The singular vector's sign
  is arbitrary: it is chosen so that the projection correlates positively with the centred
  channel-mean map (pytorch-grad-cam leaves it to the SVD routine).
* ``scorecam`` (Wang et al. 2020), as tf-keras-vis ``ScoreCAM``: each channel upsampled to the
  input (linear, corners aligned, as ``scipy.ndimage.zoom(order=1)``), min-max normalised
  (``+1e-7``), multiplied into the input; the weight of channel ``k`` is the class's softmax
  score of that masked input; ``relu(sum_k w_k A_k)``. The masked inputs run in batches.
* ``saliency`` (Simonyan et al. 2014), as tf-keras-vis ``Saliency``: ``max_c |dy/dx|``.
* ``smoothgrad`` (Smilkov et al. 2017), as tf-keras-vis: the mean of ``|dy/dx|`` over ``n``
  noisy copies ``x + N(0, sigma)``, ``sigma = noise * (max(x) - min(x))`` of each image, then
  the maximum over channels. The noise is numpy's ``default_rng(seed)``, drawn afresh for every
  image (:func:`smooth_noise`), so that an image's map does not depend on the batch it is in.
  (tf-keras-vis takes the range of the whole batch; for one image the two agree.)
* ``ig`` (Sundararajan et al. 2017): ``(x - x') * sum_k w_k dy/dx(x' + a_k (x - x'))`` summed
  over channels (signed, so the map sums to ``f(x) - f(x')``). The integral is a Riemann
  trapezoid rule by default: ``m`` points ``a_k = k / (m - 1)``, weights ``1 / (m - 1)`` with
  the two ends halved (Captum's ``riemann_trapezoid`` has the same points but weights ``1/m``,
  which sum to ``(m-1)/m``; Captum's default is Gauss-Legendre, offered as ``"gausslegendre"``,
  and ``"right"`` is Captum's ``riemann_right``). Baselines: ``"black"`` (zeros in the model's
  input units, Captum's default), ``"blurred"`` (the image under a Gaussian blur, sigma 5 % of
  its larger side) or an array of the input's shape (without, or with, the batch axis).
* ``occlusion`` (Zeiler & Fergus 2014), as Captum's ``Occlusion``:
  :mod:`maskviewer.inference.attribution_occlusion`.

The class explained is each image's top class (of the spatially averaged output for maps)
unless one is given; for SmoothGrad and IG it is the class of the clean image, kept for every
noisy copy or path point. Input-space methods take the gradient with respect to one input:
``options.input`` (a name of a dict input or an index of a list), else the first image-shaped
(rank 4) input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from maskviewer.inference.reduce import ProbeError

#: every method, in the order the window lists them
METHOD_NAMES: tuple[str, ...] = (
    "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam",
    "saliency", "smoothgrad", "ig", "occlusion",
)
METHOD_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "saliency": "Saliency (gradient)",
    "smoothgrad": "SmoothGrad",
    "ig": "Integrated Gradients",
    "occlusion": "Occlusion",
}
#: methods that draw on a layer's grid (they need a spatial layer)
LAYER_METHODS: tuple[str, ...] = METHOD_NAMES[:7]
#: methods that draw on the input's pixels (no layer)
INPUT_METHODS: tuple[str, ...] = ("saliency", "smoothgrad", "ig", "occlusion")
#: gradient CAMs: one forward and one backward pass down to the layer
GRADIENT_CAMS: tuple[str, ...] = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")
IG_BASELINES: tuple[str, ...] = ("black", "blurred")
IG_RULES: tuple[str, ...] = ("trapezoid", "right", "gausslegendre")


@dataclass
class AttributionOptions:
    """The parameters of the methods that have some.

    Attributes
    ----------
    smooth_samples : int
        SmoothGrad's noisy copies.
    smooth_noise : float
        SmoothGrad's noise sigma, a fraction of each image's value range.
    ig_steps : int
        Integrated Gradients' points on the path (at least 2).
    ig_baseline : str or ndarray
        ``"black"``, ``"blurred"`` or an array of the input's shape (model units).
    ig_rule : str
        ``"trapezoid"`` (default), ``"right"`` or ``"gausslegendre"``.
    seed : int
        SmoothGrad's noise seed.
    batch : int
        Rows per pass for the methods with many passes (noisy copies, path points, masks).
    input : str or int, optional
        The input the input-space methods explain (a dict key or list index); the first
        image-shaped input when None.
    score_channels : int, optional
        Score-CAM: only the channels of largest spatial standard deviation (tf-keras-vis'
        ``max_N``); every channel when None.
    occlusion_window, occlusion_stride : int, optional
        Occlusion's square window and its step in pixels (default: an eighth of the input's
        shorter side, and half the window).
    """

    smooth_samples: int = 16
    smooth_noise: float = 0.15
    ig_steps: int = 32
    ig_baseline: Any = "black"
    seed: int = 0
    batch: int = 32
    ig_rule: str = "trapezoid"
    input: str | int | None = None
    score_channels: int | None = None
    occlusion_window: int | None = None
    occlusion_stride: int | None = None

    def key(self) -> tuple:
        """A hashable key of every field (an array baseline by its shape and bytes)."""
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = ("array", v.shape, str(v.dtype), hash(np.ascontiguousarray(v).tobytes()))
            out.append(v)
        return tuple(out)

    def check(self) -> None:
        """Raise :class:`AttributionError` for a value no method can use."""
        if int(self.smooth_samples) < 1:
            raise AttributionError(f"SmoothGrad needs at least 1 sample, not {self.smooth_samples}.")
        if not float(self.smooth_noise) >= 0:
            raise AttributionError(f"SmoothGrad's noise must be 0 or more, not {self.smooth_noise}.")
        if int(self.ig_steps) < 2:
            raise AttributionError(f"Integrated Gradients needs at least 2 steps, not {self.ig_steps}.")
        if isinstance(self.ig_baseline, str) and self.ig_baseline not in IG_BASELINES:
            raise AttributionError(
                f"Unknown baseline {self.ig_baseline!r}: one of {', '.join(IG_BASELINES)} or an array."
            )
        if self.ig_rule not in IG_RULES:
            raise AttributionError(f"Unknown integration rule {self.ig_rule!r}: one of {', '.join(IG_RULES)}.")
        if int(self.batch) < 1:
            raise AttributionError(f"The batch size must be at least 1, not {self.batch}.")
        if self.score_channels is not None and int(self.score_channels) < 1:
            raise AttributionError(f"Score-CAM needs at least 1 channel, not {self.score_channels}.")


class AttributionError(ProbeError):
    """Bad options, or a method that cannot run on this layer (the window shows the message)."""


@dataclass
class AttributionBatch:
    """The maps of a batch (item ``i`` of each array is image ``i``'s).

    Attributes
    ----------
    maps : ndarray
        ``(B, h, w)`` float32: the raw maps (CAMs after their ReLU; Saliency and SmoothGrad
        non-negative; IG signed, summing to ``f(x) - f(baseline)``).
    scores : ndarray
        ``(B,)`` float32: each image's class score (of the clean image).
    classes : ndarray
        ``(B,)`` int: the class explained.
    space : str
        ``"layer"`` (the layer's grid) or ``"input"`` (the input's pixels).
    method, layer, output : str
        What was explained (``layer`` is "" for input-space methods).
    weights : ndarray, optional
        ``(B, C)``: each channel's weight (or its mean contribution, for the element-wise
        CAMs), to rank channels by; None for input-space methods.
    """

    maps: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    space: str
    method: str
    layer: str = ""
    output: str = ""
    weights: np.ndarray | None = None
    outputs: Any = field(default=None, repr=False)

    def heatmaps(self) -> np.ndarray:
        """Each map divided by its largest absolute value (zeros where that is 0)."""
        top = np.max(np.abs(self.maps), axis=(1, 2), keepdims=True)
        return np.where(top > 0, self.maps / np.where(top > 0, top, 1), 0).astype(np.float32)

    def item(self, i: int) -> AttributionMap:
        """Image ``i``'s map."""
        top = float(np.max(np.abs(self.maps[i]))) if self.maps[i].size else 0.0
        heat = (self.maps[i] / top if top > 0 else np.zeros_like(self.maps[i])).astype(np.float32)
        return AttributionMap(
            map=self.maps[i], heatmap=heat, score=float(self.scores[i]),
            class_index=int(self.classes[i]), space=self.space, method=self.method, layer=self.layer,
            output=self.output, weights=None if self.weights is None else self.weights[i],
        )


@dataclass
class AttributionMap:
    """One image's map (see :class:`AttributionBatch`); ``heatmap`` is ``map / max|map|``."""

    map: np.ndarray
    heatmap: np.ndarray
    score: float
    class_index: int
    space: str
    method: str
    layer: str = ""
    output: str = ""
    weights: np.ndarray | None = None


def class_array(n: int, class_index: int | Sequence[int] | None) -> np.ndarray:
    """``(n,)`` int32 classes: -1 (the top class) everywhere when None."""
    wanted = np.full(n, -1, np.int32)
    if class_index is not None:
        wanted[:] = np.asarray(class_index, np.int32)
    return wanted


def check_classes(wanted: np.ndarray, n_classes: int | None) -> None:
    """Raise when a wanted class is not one of the output's ``n_classes``."""
    if n_classes is None:
        return
    bad = wanted[(wanted < -1) | (wanted >= n_classes)]
    if bad.size:
        raise AttributionError(
            f"Class {int(bad[0])} does not exist: the output has {n_classes} classes (0 to {n_classes - 1})."
        )


def smooth_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """SmoothGrad's unit noise: ``default_rng(seed).standard_normal(shape)`` (float32).

    Every image of a batch draws its ``(n, *input_shape)`` copies' noise from ``seed`` (times
    its own sigma): the map of an image does not depend on its place in the batch.
    """
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def ig_points(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of Integrated Gradients' integration rule over [0, 1]."""
    m = int(steps)
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, m)
        weights = np.full(m, 1.0 / (m - 1))
        weights[[0, -1]] /= 2
    elif rule == "right":
        alphas = np.linspace(1.0 / m, 1.0, m)
        weights = np.full(m, 1.0 / m)
    elif rule == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(m)
        alphas, weights = (nodes + 1) / 2, w / 2
    else:
        raise AttributionError(f"Unknown integration rule {rule!r}: one of {', '.join(IG_RULES)}.")
    return alphas.astype(np.float32), weights.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Made once per (model, method, layer, output, options), kept on the probe (and the probe on
# the model): a model let go (a sanity check's copy) is collected with its functions

_FUNCTIONS_ATTR = "_maskviewer_attribution_functions"
_PROBE_ATTR = "_maskviewer_attribution_probe"


def attribution_function(
    model: Any, method: str, layer: str | None = None, output: str | None = None,
    options: AttributionOptions | None = None, *, output_keys: list[str] | None = None,
    compiled: bool | str = True,
) -> Callable[..., AttributionBatch]:
    """The callable ``fn(inputs, class_index=None) -> AttributionBatch`` for these settings.

    Parameters
    ----------
    model : keras.Model or ActivationProbe
        The model (its cached probe is used) or a probe of it.
    method : str
        One of :data:`METHOD_NAMES`.
    layer : str, optional
        The layer path, for the layer methods (required for them; ignored by the others).
    output : str, optional
        The output to explain; the first by default.
    options : AttributionOptions, optional
        The methods' parameters.
    output_keys : list of str, optional
        The model's output names (to select ``output`` by name in lists); the model's
        ``output_names`` by default.
    compiled : bool or "repeat"
        Trace the passes (kept and reused); eager otherwise (not kept). ``"repeat"`` (the
        window's choice): the first call runs eagerly, later calls trace once and reuse it, so
        a request made once never waits for a trace (kept).

    ``inputs`` are batched model inputs, packed as the model's call expects them (as for
    :class:`~maskviewer.inference.cam.CamFunction`); ``class_index`` is one class for every
    image, one per image, or None (each image's top class); ``check``, if given, is called
    between the passes of the methods with many (it raises to stop: a cancelled job).
    """
    from maskviewer.inference.probe import ActivationProbe

    if method not in METHOD_NAMES:
        raise AttributionError(f"Unknown method {method!r}: one of {', '.join(METHOD_NAMES)}.")
    opts = options or AttributionOptions()
    opts.check()
    probe = model if isinstance(model, ActivationProbe) else _probe_of(model)
    keys = list(output_keys) if output_keys is not None else list(getattr(probe.model, "output_names", None) or [])
    if method in LAYER_METHODS and not layer:
        raise AttributionError(f"{METHOD_LABELS[method]} needs a layer: pick a spatial layer.")
    key = (method, layer if method in LAYER_METHODS else None, output, tuple(keys), opts.key(), compiled == "repeat")
    functions = _functions_of(probe) if compiled else {}
    if key not in functions:
        if compiled == "repeat":
            functions[key] = _TracedOnRepeat(lambda c: _make(probe, method, layer, output, opts, keys, c))
        else:
            functions[key] = _make(probe, method, layer, output, opts, keys, bool(compiled))
    return functions[key]


class _TracedOnRepeat:
    """Eager on the first call, traced (once) from the second on."""

    def __init__(self, make: Callable[[bool], Callable[..., AttributionBatch]]) -> None:
        self.make = make
        self.fn: Callable[..., AttributionBatch] | None = None
        self.calls = 0

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None,
                 check: Callable[[], None] | None = None) -> AttributionBatch:
        self.calls += 1
        if self.calls == 1:
            return self.make(False)(inputs, class_index, check)
        if self.fn is None:
            self.fn = self.make(True)
        return self.fn(inputs, class_index, check)


def _make(probe: Any, method: str, layer: str | None, output: str | None, opts: AttributionOptions,
          keys: list[str], compiled: bool) -> Callable[..., AttributionBatch]:
    if method == "occlusion":
        from maskviewer.inference.attribution_occlusion import OcclusionAttribution

        return OcclusionAttribution(probe, output=output, options=opts, output_keys=keys, compiled=compiled)
    if method in INPUT_METHODS:
        from maskviewer.inference.attribution_input import InputAttribution

        return InputAttribution(probe, method, output=output, options=opts, output_keys=keys, compiled=compiled)
    from maskviewer.inference.attribution_cam import layer_attribution

    assert layer is not None
    return layer_attribution(probe, method, layer, output=output, options=opts, output_keys=keys, compiled=compiled)


def _functions_of(probe: Any) -> dict:
    functions = probe.__dict__.get(_FUNCTIONS_ATTR)
    if functions is None:
        functions = probe.__dict__[_FUNCTIONS_ATTR] = {}
    return functions


def _probe_of(model: Any) -> Any:
    """The model's probe for attributions (the window's own, when it made one), kept on the model."""
    from maskviewer.inference.probe import _PROBES, ActivationProbe

    probe = _PROBES.get(model) or model.__dict__.get(_PROBE_ATTR)
    if probe is None:
        probe = ActivationProbe(model)
        # set past Keras' attribute tracking: the probe is no layer or weight of the model
        object.__setattr__(model, _PROBE_ATTR, probe)
    return probe
