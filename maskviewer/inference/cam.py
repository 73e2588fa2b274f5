"""Grad-CAM and Grad-CAM++: the only module with backend-specific gradient code.

One function per (model, layer, method, output) takes a whole batch and, in one pass, computes
the layer's output, the gradient of each image's class score with respect to it, the CAMs
(on the device, so only the small maps are copied) and, when asked, the model's outputs of
that same pass. The export traces it once (:func:`cam_function`) and reuses it for every batch;
the window's Layers tool runs the same code eagerly on one image (:func:`grad_cam`). The
gradient is taken through the activation probe's forward pass (:meth:`ActivationProbe.forward`
with a hook on that layer), so it works for Sequential, functional, nested and sub-classed
models alike, and the loaded model is never changed (no activation swaps, no new layers).

Grad-CAM (Selvaraju et al. 2017), as in the keras-io recipe: channel weights are the gradients
averaged over the map, the CAM is ``relu(sum_k w_k A_k)`` divided by its maximum.
Grad-CAM++ (Chattopadhay et al. 2018), with the usual exponential-score closed form: with
``g = dy/dA``, ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where the denominator is 0) and
``w_k = sum_ij alpha relu(g)``.

Each image's score is its own class's output (summed over space for maps); the gradient of the
batch's summed scores is each image's own gradient, since images do not meet in an inference
pass. The class is the top class of each image (of the spatially averaged output for maps)
unless one is given.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.inference.backend import backend_name
from maskviewer.inference.probe import ActivationProbe, ProbeError, compile_function

CAM_METHODS = ("gradcam", "gradcam++")


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


@dataclass
class CamBatch:
    """The CAMs of a batch (item ``i`` of each array is image ``i``'s), from one pass.

    Attributes
    ----------
    heatmaps, raw : ndarray
        ``(B, H, W)`` float32: normalised and raw CAMs.
    weights : ndarray
        ``(B, C)`` float32.
    classes : ndarray
        ``(B,)`` int: the class explained for each image.
    scores : ndarray
        ``(B,)`` float32: each image's class score.
    layer, output, method : str
        What was explained.
    outputs : Any
        The model's outputs of the same pass (backend tensors, as the model returns them), or
        None when not asked for.
    """

    heatmaps: np.ndarray
    raw: np.ndarray
    weights: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    layer: str
    output: str
    method: str
    outputs: Any = field(default=None, repr=False)

    def item(self, i: int) -> CamResult:
        """Image ``i``'s CAM."""
        return CamResult(
            heatmap=self.heatmaps[i], raw=self.raw[i], weights=self.weights[i], layer=self.layer,
            output=self.output, class_index=int(self.classes[i]), score=float(self.scores[i]),
            method=self.method,
        )


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


def batch_class_score(y: Any, classes: Any) -> tuple[Any, Any, int]:
    """Each image's score: ``y[i, ..., c_i]``, summed over space for maps.

    Parameters
    ----------
    y : tensor
        ``(B, n)``, ``(B, ..., n)`` or ``(B,)`` (one class).
    classes : tensor
        ``(B,)`` int32: the class per image, or -1 for the image's top class (of the spatially
        averaged output for maps).

    Returns
    -------
    scores : tensor
        ``(B,)``.
    classes : tensor
        ``(B,)`` int32: the classes explained.
    n : int
        How many classes the output has.
    """
    from keras import ops

    if len(y.shape) == 1:
        y = ops.expand_dims(y, -1)
    n = int(y.shape[-1])
    space = tuple(range(1, len(y.shape) - 1))
    means = ops.mean(y, axis=space) if space else y
    top = ops.cast(ops.argmax(means, axis=-1), "int32")
    chosen = ops.where(classes >= 0, ops.cast(classes, "int32"), top)
    mask = ops.one_hot(chosen, n) > 0.5  # (B, n); an index out of range selects nothing
    for _ in space:
        mask = ops.expand_dims(mask, 1)
    # where, not a product: an infinite score elsewhere must not turn this one into NaN
    picked = ops.where(mask, y, ops.zeros_like(y))
    return ops.sum(picked, axis=tuple(range(1, len(y.shape)))), chosen, n


def cam_maps(act: Any, grads: Any, plus: bool) -> dict[str, Any]:
    """CAMs of a batch on the device from the layer output and the gradient (both ``(B, H, W, C)``)."""
    from keras import ops

    a = ops.cast(act, "float32")
    g = ops.cast(grads, "float32")
    if plus:
        g2 = g * g
        denom = 2.0 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g2 * g
        nonzero = ops.not_equal(denom, 0.0)
        alpha = ops.where(nonzero, g2 / ops.where(nonzero, denom, ops.ones_like(denom)), ops.zeros_like(g2))
        weights = ops.sum(alpha * ops.relu(g), axis=(1, 2))
    else:
        weights = ops.mean(g, axis=(1, 2))
    raw = ops.relu(ops.einsum("bhwc,bc->bhw", a, weights))
    top = ops.max(raw, axis=(1, 2), keepdims=True)
    positive = top > 0
    heat = ops.where(positive, raw / ops.where(positive, top, ops.ones_like(top)), ops.zeros_like(raw))
    return {"heatmap": heat, "raw": raw, "weights": weights}


class CamFunction:
    """Grad-CAM (or Grad-CAM++) of one output on one layer, for whole batches in one pass.

    Parameters
    ----------
    probe : ActivationProbe
        The probe of the model.
    layer : str
        Path of a layer with an ``(B, H, W, C)`` output.
    output_keys : list of str, optional
        The model's output names (to select ``output`` by name in lists).
    output : str, optional
        The output to explain; the first by default.
    plus : bool
        Grad-CAM++ weights instead of averaged gradients.
    predictions : bool
        Also return the model's outputs of the same pass.
    compiled : bool
        Trace the pass into one function, reused for every batch of the same shapes (a batch
        of a new size traces once more, with a relaxed batch size); eager otherwise.
    """

    def __init__(
        self, probe: ActivationProbe, layer: str, *, output_keys: list[str] | None = None,
        output: str | None = None, plus: bool = False, predictions: bool = False, compiled: bool = True,
    ) -> None:
        probe.layer(layer)  # an unknown path fails here, with the probe's message
        self.probe, self.layer = probe, layer
        self.output_keys, self.output = list(output_keys or []), output
        self.plus, self.predictions = plus, predictions
        self.method = "gradcam++" if plus else "gradcam"
        self.output_name: str | None = None  # both set when the pass is traced (or run eagerly)
        self.classes: int | None = None
        fn = self._jax_pass if backend_name() == "jax" else self._tf_pass
        self.traces = 0
        self._fn: Callable = compile_function(fn) if compiled else fn

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None) -> CamBatch:
        """The CAMs of a batch.

        Parameters
        ----------
        inputs : array, list or dict
            Batched model inputs, packed as the model's call expects them.
        class_index : int or sequence of int, optional
            The class to explain for every image, or one per image; each image's top class
            when None (or -1).
        """
        import keras
        from keras import ops

        n = int(keras.tree.flatten(inputs)[0].shape[0])
        wanted = np.full(n, -1 if class_index is None else 0, np.int32)
        if class_index is not None:
            wanted[:] = np.asarray(class_index, np.int32)
        self._check_classes(wanted)
        found = self._fn(inputs, wanted)
        self._check_classes(wanted)  # the first call learns the class count while tracing
        host = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in found.items() if k != "outputs"}
        return CamBatch(
            heatmaps=host["heatmap"], raw=host["raw"], weights=host["weights"],
            classes=host["class"].astype(np.int64), scores=host["score"].astype(np.float32),
            layer=self.layer, output=str(self.output_name), method=self.method,
            outputs=found.get("outputs"),
        )

    def _check_classes(self, wanted: np.ndarray) -> None:
        n = self.classes
        if n is None:  # not traced yet
            return
        bad = wanted[(wanted < -1) | (wanted >= n)]
        if bad.size:
            raise ProbeError(f"Class {int(bad[0])} does not exist: the output has {n} classes (0 to {n - 1}).")

    def _result(self, act: Any, grads: Any, scores: Any, chosen: Any, outputs: Any) -> dict[str, Any]:
        found = cam_maps(act, grads, self.plus)
        found.update({"class": chosen, "score": scores})
        if self.predictions:
            found["outputs"] = outputs
        return found

    def _select(self, outputs: Any, classes: Any) -> tuple[Any, Any]:
        name, y = select_output(outputs, self.output_keys, self.output)
        scores, chosen, self.classes = batch_class_score(y, classes)
        self.output_name = name
        return scores, chosen

    def _check_spatial(self, shape: Sequence[Any]) -> None:
        if len(shape) != 4:
            raise ProbeError(
                f"Layer {self.layer} has an output of shape {tuple(shape[1:])}, not a spatial "
                "(H, W, C) map, so there is nothing to draw a CAM on. Pick a convolutional layer."
            )

    def _no_gradient(self) -> ProbeError:
        return ProbeError(
            f"The output {self.output_name!r} does not depend on layer {self.layer} (no gradient "
            "flows back to it). Pick a layer the output is computed from."
        )

    def _tf_pass(self, inputs: Any, classes: Any) -> dict[str, Any]:
        import tensorflow as tf

        self.traces += 1  # (counts Python runs: traces when compiled)
        with tf.GradientTape() as tape:

            def watch(t: Any) -> Any:
                tape.watch(t)  # layers without trainable weights upstream are recorded too
                return t

            captured, outputs = self.probe.forward(inputs, [self.layer], hooks={self.layer: watch})
            act = captured[self.layer]
            self._check_spatial(self.probe.grid_view(self.layer, act, inputs).shape)
            scores, chosen = self._select(outputs, classes)
        grads = tape.gradient(scores, act)  # of the summed scores: each image's own gradient
        if grads is None:
            raise self._no_gradient()
        # a token layer: tokens and their gradients reshaped to the grid, extra tokens left out
        act, grads = self.probe.grid_view(self.layer, act, inputs), self.probe.grid_view(self.layer, grads, inputs)
        return self._result(act, grads, scores, chosen, outputs)

    def _jax_pass(self, inputs: Any, classes: Any) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        self.traces += 1
        path = self.layer
        spec = jax.eval_shape(lambda x: self.probe.forward(x, [path])[0][path], inputs)
        self._check_spatial(jax.eval_shape(lambda t: self.probe.grid_view(path, t, inputs), spec).shape)

        def score_fn(eps: Any) -> tuple[Any, tuple]:
            cap, outputs = self.probe.forward(inputs, [path], hooks={path: lambda t: t + eps})
            scores, chosen = self._select(outputs, classes)
            return jnp.sum(scores), (cap[path], scores, chosen, outputs)

        zero = jnp.zeros(spec.shape, spec.dtype)
        (_, (act, scores, chosen, outputs)), grads = jax.value_and_grad(score_fn, has_aux=True)(zero)
        act, grads = self.probe.grid_view(path, act, inputs), self.probe.grid_view(path, grads, inputs)
        return self._result(act, grads, scores, chosen, outputs)


_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cam_function(
    probe: ActivationProbe, layer: str, *, output_keys: list[str] | None = None, output: str | None = None,
    plus: bool = False, predictions: bool = False,
) -> CamFunction:
    """The traced :class:`CamFunction` of a probe's model for these settings, made once and kept."""
    functions = _FUNCTIONS.setdefault(probe, {})
    key = (layer, tuple(output_keys or ()), output, plus, predictions)
    if key not in functions:
        functions[key] = CamFunction(
            probe, layer, output_keys=output_keys, output=output, plus=plus, predictions=predictions
        )
    return functions[key]


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

    The window's one-image path: the same pass as :class:`CamFunction`, run eagerly (a traced
    function per layer would make every new layer wait for its tracing).

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
    fn = CamFunction(probe, layer, output_keys=output_keys, output=output, plus=plus, compiled=False)
    return fn(inputs, class_index).item(0)
