"""The layer methods of :mod:`maskviewer.inference.attribution`: CAMs on a layer's grid.

The gradient CAMs (Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM) share
:class:`~maskviewer.inference.cam.CamFunction`'s one pass (layer output and its gradient,
TensorFlow or JAX) and differ only in how the map is made from them
(:func:`gradient_cam_maps`). Eigen-CAM needs the forward pass only; Score-CAM a forward pass
and then the masked inputs, a batch of channels at a time, through one more traced function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from maskviewer.inference.attribution import (
    GRADIENT_CAMS,
    AttributionBatch,
    AttributionError,
    AttributionOptions,
    check_classes,
    class_array,
)
from maskviewer.inference.cam import CamFunction, batch_class_score, cam_maps, select_output
from maskviewer.inference.input_parts import input_part, map_parts, replace_part

EPS = 1e-7  # pytorch-grad-cam's and tf-keras-vis' epsilon


def _normalise(raw: Any) -> Any:
    from keras import ops

    top = ops.max(raw, axis=(1, 2), keepdims=True)
    positive = top > 0
    return ops.where(positive, raw / ops.where(positive, top, ops.ones_like(top)), ops.zeros_like(raw))


def gradient_cam_maps(act: Any, grads: Any, method: str) -> dict[str, Any]:
    """A gradient CAM of a batch on the device from the layer output and the gradient
    (both ``(B, H, W, C)``): ``{"heatmap", "raw", "weights"}`` as :func:`cam_maps` returns."""
    from keras import ops

    if method in ("gradcam", "gradcam++"):
        return cam_maps(act, grads, method == "gradcam++")
    a = ops.cast(act, "float32")
    g = ops.cast(grads, "float32")
    if method == "xgradcam":
        weights = ops.sum(g * a, axis=(1, 2)) / (ops.sum(a, axis=(1, 2)) + EPS)
        raw = ops.relu(ops.einsum("bhwc,bc->bhw", a, weights))
    else:
        per = g * a if method == "hirescam" else ops.relu(g) * a  # layercam: positive gradients
        weights = ops.mean(per, axis=(1, 2))
        raw = ops.relu(ops.sum(per, axis=-1))
    return {"heatmap": _normalise(raw), "raw": raw, "weights": weights}


class _GradientCam(CamFunction):
    """:class:`CamFunction` with the map of any gradient CAM."""

    def __init__(self, probe: Any, layer: str, method: str, **kw: Any) -> None:
        super().__init__(probe, layer, plus=method == "gradcam++", **kw)
        self.method = method

    def _result(self, act: Any, grads: Any, scores: Any, chosen: Any, outputs: Any) -> dict[str, Any]:
        found = gradient_cam_maps(act, grads, self.method)
        found.update({"class": chosen, "score": scores})
        if self.predictions:
            found["outputs"] = outputs
        return found


class GradientCamAttribution:
    """A gradient CAM through the attribution API."""

    space = "layer"

    def __init__(self, probe: Any, method: str, layer: str, *, output: str | None, output_keys: list[str],
                 compiled: bool) -> None:
        self.method, self.layer = method, layer
        self.cam = _GradientCam(probe, layer, method, output_keys=output_keys, output=output, compiled=compiled)

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None,
                 check: Callable[[], None] | None = None) -> AttributionBatch:
        b = self.cam(inputs, class_index)
        return AttributionBatch(
            maps=b.raw, scores=b.scores, classes=b.classes, space="layer", method=self.method,
            layer=self.layer, output=b.output, weights=b.weights,
        )


class _ForwardCam:
    """A CAM from the layer's output alone: the forward pass, then :meth:`_maps`."""

    space = "layer"

    def __init__(self, probe: Any, method: str, layer: str, *, output: str | None, output_keys: list[str],
                 options: AttributionOptions, compiled: bool) -> None:
        from maskviewer.inference.probe import compile_function

        probe.layer(layer)  # an unknown path fails here, with the probe's message
        self.probe, self.method, self.layer = probe, method, layer
        self.output, self.output_keys, self.options = output, output_keys, options
        self.output_name: str | None = None
        self.n_classes: int | None = None
        self.compiled = compiled
        self._forward: Callable = compile_function(self._pass) if compiled else self._pass

    def _select(self, outputs: Any, classes: Any, softmax: bool = False) -> tuple[Any, Any]:
        from keras import ops

        name, y = select_output(outputs, self.output_keys, self.output)
        if softmax:
            y = ops.softmax(ops.cast(y, "float32"), axis=-1)
        scores, chosen, self.n_classes = batch_class_score(y, classes)
        self.output_name = name
        return scores, chosen

    def _pass(self, inputs: Any, classes: Any) -> dict[str, Any]:
        captured, outputs = self.probe.forward(inputs, [self.layer])
        act = captured[self.layer]
        if len(act.shape) != 4:
            raise AttributionError(
                f"Layer {self.layer} has an output of shape {tuple(act.shape[1:])}, not a spatial "
                "(H, W, C) map, so there is nothing to draw a CAM on. Pick a convolutional layer."
            )
        scores, chosen = self._select(outputs, classes)
        found = {"act": act, "score": scores, "class": chosen}
        found.update(self._device_maps(act))
        return found

    def _device_maps(self, act: Any) -> dict[str, Any]:
        return {}

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None,
                 check: Callable[[], None] | None = None) -> AttributionBatch:
        import keras
        from keras import ops

        n = int(keras.tree.flatten(inputs)[0].shape[0])
        wanted = class_array(n, class_index)
        check_classes(wanted, self.n_classes)
        found = self._forward(inputs, wanted)
        check_classes(wanted, self.n_classes)  # the first call learns the class count while tracing
        host = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in found.items()}
        self._check = check or (lambda: None)
        maps, weights = self._maps(inputs, host)
        return AttributionBatch(
            maps=maps.astype(np.float32), scores=host["score"].astype(np.float32),
            classes=host["class"].astype(np.int64), space="layer", method=self.method, layer=self.layer,
            output=str(self.output_name), weights=weights.astype(np.float32),
        )

    def _maps(self, inputs: Any, host: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def eigen_maps(act: Any) -> dict[str, Any]:
    """Eigen-CAM of a batch on the device: ``{"raw": (B, H, W), "weights": (B, C)}``."""
    from keras import ops

    a = ops.cast(act, "float32")
    b, h, w, c = (int(d) for d in a.shape)
    x = ops.reshape(a, (b, h * w, c))
    x = x - ops.mean(x, axis=1, keepdims=True)
    _u, _s, vh = ops.svd(x, full_matrices=False)
    v = vh[:, 0, :]
    proj = ops.einsum("bnc,bc->bn", x, v)
    # the sign of a singular vector is arbitrary: point it along the centred channel-mean map
    agree = ops.sum(proj * ops.mean(x, axis=2), axis=1, keepdims=True)
    sign = ops.where(agree < 0, -ops.ones_like(agree), ops.ones_like(agree))
    raw = ops.relu(ops.reshape(proj * sign, (b, h, w)))
    return {"raw": raw, "weights": v * sign}


class EigenCamAttribution(_ForwardCam):
    """Eigen-CAM: the first principal component of the layer's activations."""

    def _device_maps(self, act: Any) -> dict[str, Any]:
        return eigen_maps(act)

    def _maps(self, inputs: Any, host: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return host["raw"], host["weights"]


def zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` linear interpolation with the corners aligned, as
    ``scipy.ndimage.zoom(order=1)`` maps ``n_in`` samples to ``n_out``."""
    m = np.zeros((n_out, n_in), np.float32)
    if n_in == 1 or n_out == 1:
        m[:, 0] = 1.0
        return m
    pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = (pos - lo).astype(np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] += frac
    return m


class ScoreCamAttribution(_ForwardCam):
    """Score-CAM as tf-keras-vis computes it (see :mod:`maskviewer.inference.attribution`)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        from maskviewer.inference.probe import compile_function

        super().__init__(*args, **kw)
        self._masked: Callable = compile_function(self._masked_pass) if self.compiled else self._masked_pass

    def _masked_pass(self, inputs: Any, chunk: Any, ry: Any, rx: Any, classes: Any) -> Any:
        """Class scores (softmax) of one image's input masked by each of ``chunk``'s
        ``(h, w, n)`` channels, upsampled and min-max normalised."""
        from keras import ops

        up = ops.einsum("Yh,hwn,Xw->nYX", ry, ops.cast(chunk, "float32"), rx)
        lo = ops.min(up, axis=(1, 2), keepdims=True)
        hi = ops.max(up, axis=(1, 2), keepdims=True)
        masks = (up - lo) / (hi - lo + 1e-7)
        n = int(masks.shape[0])
        key, x = input_part(inputs, self.options.input)
        masked = ops.cast(x, "float32") * ops.expand_dims(masks, -1)
        tiled = map_parts(inputs, lambda t: ops.repeat(t, n, axis=0), skip=key)
        _, outputs = self.probe.forward(replace_part(tiled, key, ops.cast(masked, x.dtype)), [])
        scores, _ = self._select(outputs, ops.repeat(classes, n, axis=0), softmax=True)
        return scores

    def _maps(self, inputs: Any, host: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from keras import ops

        act = host["act"].astype(np.float32)
        b, h, w, c = act.shape
        _key, x = input_part(inputs, self.options.input)
        if len(x.shape) != 4:
            raise AttributionError("Score-CAM masks an image input; this model's input is not an image.")
        ry, rx = zoom_matrix(h, int(x.shape[1])), zoom_matrix(w, int(x.shape[2]))
        keep = c if self.options.score_channels is None else min(c, int(self.options.score_channels))
        size = min(int(self.options.batch), keep)
        maps = np.zeros((b, h, w), np.float32)
        weights = np.zeros((b, c), np.float32)
        for i in range(b):
            one = map_parts(inputs, lambda t, i=i: t[i : i + 1])
            order = np.argsort(-act[i].std(axis=(0, 1)), kind="stable")[:keep] if keep < c else np.arange(c)
            cls = host["class"][i : i + 1].astype(np.int32)
            for start in range(0, keep, size):
                self._check()
                idx = order[start : start + size]
                chunk = np.zeros((h, w, size), np.float32)  # padded: one traced shape for every chunk
                chunk[..., : len(idx)] = act[i][..., idx]
                s = np.asarray(ops.convert_to_numpy(self._masked(one, chunk, ry, rx, cls)))
                weights[i, idx] = s[: len(idx)]
            maps[i] = np.maximum(act[i] @ weights[i], 0)
        return maps, weights


def layer_attribution(
    probe: Any, method: str, layer: str, *, output: str | None, options: AttributionOptions,
    output_keys: list[str], compiled: bool,
) -> Callable[..., AttributionBatch]:
    """The callable of a layer method (see :func:`maskviewer.inference.attribution.attribution_function`)."""
    if method in GRADIENT_CAMS:
        return GradientCamAttribution(probe, method, layer, output=output, output_keys=output_keys, compiled=compiled)
    cls = EigenCamAttribution if method == "eigencam" else ScoreCamAttribution
    return cls(probe, method, layer, output=output, output_keys=output_keys, options=options, compiled=compiled)
