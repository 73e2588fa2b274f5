"""Grad-CAM and Grad-CAM++: the only module with backend-specific gradient code.

The class score's gradient with respect to a layer's output is taken through the activation
probe's forward pass (:meth:`ActivationProbe.forward` with a hook on that layer), so it works
for Sequential, functional, nested and sub-classed models alike, and the loaded model is never
changed (no activation swaps, no new layers).

Grad-CAM (Selvaraju et al. 2017), as in the keras-io recipe: channel weights are the gradients
averaged over the map, the CAM is ``relu(sum_k w_k A_k)`` divided by its maximum.
Grad-CAM++ (Chattopadhay et al. 2018), with the usual exponential-score closed form: with
``g = dy/dA``, ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where the denominator is 0) and
``w_k = sum_ij alpha relu(g)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.inference.backend import backend_name
from maskviewer.inference.probe import ActivationProbe, ProbeError


@dataclass
class CamResult:
    """A class activation map over one layer's grid.

    Attributes
    ----------
    heatmap : ndarray
        ``(H, W)`` in [0, 1]: the CAM divided by its maximum (zeros if that is 0).
    raw : ndarray
        ``(H, W)``: the CAM before normalisation (after the ReLU).
    weights : ndarray
        ``(C,)``: each channel's weight.
    layer : str
        The layer's path.
    output : str
        The output explained.
    class_index : int
        The class explained.
    score : float
        The class score (the output's value for that class, summed over space for maps).
    method : str
        ``"gradcam"`` or ``"gradcam++"``.
    """

    heatmap: np.ndarray
    raw: np.ndarray
    weights: np.ndarray
    layer: str
    output: str
    class_index: int
    score: float
    method: str


def select_output(outputs: Any, output_keys: list[str], name: str | None) -> tuple[str, Any]:
    """Pick one of a model's outputs by name (the first when ``name`` is None)."""
    import keras

    if isinstance(outputs, dict):
        keys = [str(k) for k in outputs]
        values = list(outputs.values())
    else:
        values = keras.tree.flatten(outputs) if isinstance(outputs, list | tuple) else [outputs]
        keys = list(output_keys) if len(output_keys) == len(values) else [f"output_{i}" for i in range(len(values))]
    if name is None:
        return keys[0], values[0]
    if name not in keys:
        raise ProbeError(f"The model has no output {name!r}; its outputs are {', '.join(keys)}.")
    return name, values[keys.index(name)]


def class_score(y: Any, class_index: int | None) -> tuple[Any, int]:
    """The score Grad-CAM explains: ``y[0, class]`` for vectors, summed over space for maps.

    ``class_index`` None picks the top class (of the spatially averaged output for maps).
    """
    from keras import ops

    y0 = y[0]
    if len(y0.shape) == 0:
        y0 = ops.reshape(y0, (1,))
    n = int(y0.shape[-1])
    if class_index is None:
        flat = ops.reshape(y0, (-1, n))
        class_index = int(np.argmax(ops.convert_to_numpy(ops.mean(flat, axis=0))))
    if not 0 <= class_index < n:
        raise ProbeError(
            f"Class {class_index} does not exist: the output has {n} classes (0 to {n - 1})."
        )
    return ops.sum(y0[..., class_index]), class_index


def _gradients(
    probe: ActivationProbe, inputs: Any, path: str, output_keys: list[str], output: str | None, class_index: int | None
) -> tuple[np.ndarray, np.ndarray, str, int, float]:
    """Layer output, gradient of the class score with respect to it, and what was explained."""
    if backend_name() == "jax":
        import jax
        import jax.numpy as jnp

        captured, outs = probe.forward(inputs, [path])  # the shapes and the default class
        name, y = select_output(outs, output_keys, output)
        _, cls = class_score(y, class_index)
        zero = jnp.zeros(captured[path].shape, captured[path].dtype)

        def score_fn(eps: Any) -> tuple[Any, Any]:
            cap, o = probe.forward(inputs, [path], hooks={path: lambda t: t + eps})
            s, _ = class_score(select_output(o, output_keys, name)[1], cls)
            return s, cap[path]

        (score, act), grads = jax.value_and_grad(score_fn, has_aux=True)(zero)
        return np.asarray(act), np.asarray(grads), name, cls, float(score)

    import tensorflow as tf

    with tf.GradientTape() as tape:

        def watch(t: Any) -> Any:
            tape.watch(t)  # layers without trainable weights upstream are recorded too
            return t

        captured, outs = probe.forward(inputs, [path], hooks={path: watch})
        name, y = select_output(outs, output_keys, output)
        score, cls = class_score(y, class_index)
    act = captured[path]
    grads = tape.gradient(score, act)
    if grads is None:
        raise ProbeError(
            f"The output {name!r} does not depend on layer {path} (no gradient flows back to "
            "it). Pick a layer the output is computed from."
        )
    return act.numpy(), grads.numpy(), name, cls, float(score.numpy())


def grad_cam(
    probe: ActivationProbe,
    inputs: Any,
    layer: str,
    *,
    output_keys: list[str] | None = None,
    output: str | None = None,
    class_index: int | None = None,
    plus: bool = False,
) -> CamResult:
    """Grad-CAM (or Grad-CAM++ with ``plus``) of one output's class on one spatial layer.

    Parameters
    ----------
    probe : ActivationProbe
        The probe of the model.
    inputs : array, list or dict
        Batched model inputs, packed as the model's call expects them (item 0 is explained).
    layer : str
        Path of a layer with an ``(B, H, W, C)`` output.
    output_keys : list of str, optional
        The model's output names (to select ``output`` by name in lists).
    output : str, optional
        The output to explain; the first by default.
    class_index : int, optional
        The class to explain; the top class by default.
    plus : bool
        Grad-CAM++ weights instead of averaged gradients.

    Raises
    ------
    ProbeError
        A non-spatial layer, an unknown output or class, or an output that does not depend on
        the layer.
    """
    act, grads, name, cls, score = _gradients(
        probe, inputs, layer, list(output_keys or []), output, class_index
    )
    if act.ndim != 4:
        raise ProbeError(
            f"Layer {layer} has an output of shape {act.shape[1:]}, not a spatial (H, W, C) "
            "map, so there is nothing to draw a CAM on. Pick a convolutional layer."
        )
    a = act[0].astype(np.float64)
    weights = channel_weights(a, grads[0].astype(np.float64), plus)
    raw = np.maximum(a @ weights, 0.0)
    top = raw.max()
    heatmap = raw / top if top > 0 else np.zeros_like(raw)
    return CamResult(
        heatmap=heatmap.astype(np.float32),
        raw=raw.astype(np.float32),
        weights=weights.astype(np.float32),
        layer=layer,
        output=name,
        class_index=cls,
        score=score,
        method="gradcam++" if plus else "gradcam",
    )


def channel_weights(a: np.ndarray, g: np.ndarray, plus: bool = False) -> np.ndarray:
    """Each channel's CAM weight from one item's activation and gradient.

    Parameters
    ----------
    a, g : ndarray
        ``(H, W, C)`` float64: the layer output and the class score's gradient with respect to it.
    plus : bool
        Grad-CAM++ weights (``sum_ij alpha relu(g)``) instead of the averaged gradients.

    Returns
    -------
    ndarray
        ``(C,)`` float64.
    """
    if not plus:
        return g.mean(axis=(0, 1))
    g2 = g**2
    g3 = g2 * g
    denom = 2.0 * g2 + a.sum(axis=(0, 1)) * g3
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    return (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1))
