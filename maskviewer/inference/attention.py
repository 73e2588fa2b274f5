"""Attention weights of ``keras.layers.MultiHeadAttention`` layers, captured in one probe pass.

How the weights are captured, without changing the model: for the duration of one pass the
``call`` of each requested attention layer is wrapped (an instance attribute, removed after)
so that it runs with ``return_attention_scores=True``; the wrapper keeps the weights and hands
on only what the caller asked for. The layer computes exactly what it computes otherwise (the
softmax weights are the tensor its values are multiplied with; dropout is the identity at
inference), so the model's outputs do not change. This works the same for graph models (the
probe walks the graph and calls the layer), for attention layers inside custom blocks (such
as keras-hub's encoder blocks, which are not graph nodes) and for sub-classed models. Tests
compare the weights with ``layer(query, value, return_attention_scores=True)`` on the same
inputs.

The gradient of a class score with respect to the attention weights (for gradient-weighted
rollout) is taken the same way: the pass runs eagerly under a ``tf.GradientTape`` with the
model's inputs watched, and the tape is asked for the gradient with respect to the captured
weights — the very tensor the layer multiplies its values with, so ``dy/dA`` is exact.

Attention layers are named by path: a graph layer by its probe path (``"encoder_0/mha"``); an
attention layer held by a non-graph layer by that layer's path and its own name
(``"vit/block_0/attention"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.inference.probe import ActivationProbe, ProbeError, compile_function


def is_mha(layer: Any) -> bool:
    """A Keras ``MultiHeadAttention`` layer (or a subclass of it)."""
    return any(c.__name__ == "MultiHeadAttention" for c in type(layer).__mro__)


def attention_layers(probe: ActivationProbe) -> dict[str, Any]:
    """Every MultiHeadAttention layer of the probe's model, by path, in model order."""
    found: dict[str, Any] = {}
    seen: set[int] = set()
    for path in probe.paths():
        layer = probe.layer(path)
        if is_mha(layer):
            if id(layer) not in seen:
                found[path] = layer
                seen.add(id(layer))
            continue
        try:
            inner = list(layer._flatten_layers(include_self=False, recursive=True))
        except (AttributeError, TypeError):
            inner = []
        if hasattr(layer, "layers"):  # a nested model: its layers have probe paths of their own
            continue
        for sub in inner:
            if is_mha(sub) and id(sub) not in seen:
                found[f"{path}/{sub.name}"] = sub
                seen.add(id(sub))
    return found


@contextmanager
def recording_scores(layers: dict[str, Any], store: dict[str, Any]) -> Iterator[None]:
    """Wrap the ``call`` of ``layers`` so that each records its attention weights into ``store``
    (the first call of a pass); restored afterwards."""
    saved = []
    try:
        for path, layer in layers.items():
            own = layer.__dict__.get("call")
            original = layer.call
            # a fused (flash) kernel returns no weights: the explicit softmax for this pass
            flash = getattr(layer, "_flash_attention", None)
            if flash:
                layer._flash_attention = False

            def call(*args, __orig=original, __path=path, **kwargs):
                wanted = kwargs.pop("return_attention_scores", False)
                out, scores = __orig(*args, return_attention_scores=True, **kwargs)
                store.setdefault(__path, scores)
                return (out, scores) if wanted else out

            object.__setattr__(layer, "call", call)
            saved.append((layer, own, flash))
        yield
    finally:
        for layer, own, flash in reversed(saved):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
            if flash:
                layer._flash_attention = flash


@dataclass
class AttentionPass:
    """The attention weights of one pass (numpy, batch axis first) and the model's outputs.

    Attributes
    ----------
    weights : dict of str to ndarray
        Layer path -> ``(B, heads, N_query, N_key)`` float32, in model order.
    outputs : Any
        The model's outputs of the same pass (backend tensors).
    grid : TokenGrid or None
        The token grid of the attended sequence (None when no grid fits it).
    """

    weights: dict[str, np.ndarray]
    outputs: Any
    grid: Any


class AttentionCapture:
    """Capture the attention weights of a model's MultiHeadAttention layers in one pass.

    Parameters
    ----------
    probe : ActivationProbe
        The probe of the model.
    """

    def __init__(self, probe: ActivationProbe) -> None:
        self.probe = probe
        self.layers = attention_layers(probe)
        self._compiled: dict[tuple, Any] = {}

    def paths(self) -> list[str]:
        return list(self.layers)

    def _chosen(self, paths: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
        if not self.layers:
            raise ProbeError(
                "This model has no MultiHeadAttention layer, so there are no attention weights "
                "to show. Attention maps need a transformer built with keras.layers.MultiHeadAttention."
            )
        if paths is None:
            return dict(self.layers)
        unknown = [p for p in paths if p not in self.layers]
        if unknown:
            raise ProbeError(
                f"{unknown[0]} is not a MultiHeadAttention layer of this model; its attention "
                f"layers are {', '.join(self.layers)}."
            )
        return {p: self.layers[p] for p in paths}

    def forward(self, inputs: Any, paths: list[str] | tuple[str, ...] | None = None) -> tuple[dict[str, Any], Any]:
        """One pass: ``(weights, outputs)`` as backend tensors (traceable)."""
        layers = self._chosen(paths)
        store: dict[str, Any] = {}
        with recording_scores(layers, store):
            _, outputs = self.probe.forward(inputs, [])
        missing = [p for p in layers if p not in store]
        if missing:
            raise ProbeError(f"Attention layer {missing[0]} did not run when the model ran on this input.")
        return {p: store[p] for p in layers}, outputs

    def capture(
        self, inputs: Any, paths: list[str] | tuple[str, ...] | None = None, *, compiled: bool = True
    ) -> AttentionPass:
        """The attention weights of ``paths`` (every attention layer by default) for a batch."""
        from keras import ops

        key = tuple(self._chosen(paths))
        fn = self._compiled.get(key)
        if fn is None:
            fn = (lambda x: self.forward(x, key)) if not compiled else compile_function(lambda x: self.forward(x, key))
            if compiled:
                self._compiled[key] = fn
        found, outputs = fn(inputs)
        weights = {p: np.asarray(ops.convert_to_numpy(ops.cast(t, "float32"))) for p, t in found.items()}
        return AttentionPass(weights, outputs, self.grid(weights, inputs))

    def grid(self, weights: dict[str, np.ndarray], inputs: Any = None) -> Any:
        """The token grid of the attended sequence (of the first layer's key axis)."""
        from maskviewer.inference.probe_tokens import input_hw

        if not weights:
            return None
        first = next(iter(weights.values()))
        n = int(first.shape[-1])
        return self.probe.tokens.grid_for((None, n, 1), input_hw(inputs) if inputs is not None else None)


@dataclass
class AttentionGradients:
    """Attention weights, the gradient of a class score with respect to them, and the class.

    ``weights`` and ``grads`` map layer path -> ``(B, heads, N, N)`` float32 numpy.
    """

    weights: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    classes: np.ndarray
    scores: np.ndarray
    output: str
    grid: Any


def attention_gradients(
    capture: AttentionCapture, inputs: Any, *, class_index: int | None = None, output: str | None = None,
    output_keys: list[str] | None = None, paths: list[str] | tuple[str, ...] | None = None,
    compiled: bool = True,
) -> AttentionGradients:
    """The attention weights of every layer and ``d score / d weights`` for a class, in one pass.

    The class is each image's top class unless ``class_index`` is given; the score is as for
    Grad-CAM (:func:`~maskviewer.inference.cam.batch_class_score`). The pass (forward and
    gradient) is traced once per layer set and output (``compiled``). TensorFlow backend.
    """
    import keras
    from keras import ops

    n = int(keras.tree.flatten(inputs)[0].shape[0])
    wanted = np.full(n, -1 if class_index is None else int(class_index), np.int32)
    key = ("grad", tuple(capture._chosen(paths)), output, tuple(output_keys or ()))
    fn = capture._compiled.get(key)
    if fn is None:
        state: dict[str, Any] = {}

        def grad_pass(x: Any, classes: Any) -> tuple:
            return _gradient_pass(capture, x, classes, key[1], output, list(output_keys or []), state)

        fn = compile_function(grad_pass) if compiled else grad_pass
        fn.state = state if compiled else None  # type: ignore[attr-defined]
        if compiled:
            capture._compiled[key] = fn
    found, grads, scores, chosen = fn(inputs, ops.convert_to_tensor(wanted))
    state = getattr(fn, "state", None) or {}
    n_classes = state.get("classes")
    if n_classes is not None and np.any(wanted >= n_classes):
        raise ProbeError(f"Class {int(wanted.max())} does not exist: the output has {n_classes} classes (0 to {n_classes - 1}).")
    host = lambda t: np.asarray(ops.convert_to_numpy(ops.cast(t, "float32")))  # noqa: E731
    weights = {p: host(t) for p, t in found.items()}
    gradients = {p: host(g) for p, g in zip(found, grads, strict=True)}
    return AttentionGradients(
        weights, gradients, host(chosen).astype(np.int64), host(scores), str(state.get("output", "")),
        capture.grid(weights, inputs),
    )


def _gradient_pass(
    capture: AttentionCapture, inputs: Any, classes: Any, paths: tuple[str, ...], output: str | None,
    output_keys: list[str], state: dict[str, Any],
) -> tuple:
    """Forward under a tape with the inputs watched; the gradient of the summed class scores
    (each image's own, images do not meet) with respect to the captured weights."""
    import keras
    import tensorflow as tf

    from maskviewer.inference.cam import batch_class_score, select_output

    flat = [tf.convert_to_tensor(t) for t in keras.tree.flatten(inputs)]
    inputs = keras.tree.pack_sequence_as(inputs, flat)
    with tf.GradientTape() as tape:
        for t in flat:
            if t.dtype.is_floating:
                tape.watch(t)
        found, outputs = capture.forward(inputs, paths)
        name, y = select_output(outputs, output_keys, output)
        scores, chosen, n_classes = batch_class_score(y, classes)
    state.update(classes=n_classes, output=name)
    grads = tape.gradient(scores, list(found.values()))
    grads = [tf.zeros_like(w) if g is None else g for w, g in zip(found.values(), grads, strict=True)]
    return found, grads, scores, chosen
