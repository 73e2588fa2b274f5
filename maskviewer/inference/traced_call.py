"""Running a graph model through one traced function instead of eagerly.

Eager calls of a Keras model on TensorFlow re-create the ``tf.function`` Keras wraps some ops
in: a grouped or depthwise-as-grouped convolution on the CPU (ConvNeXt) is compiled with XLA
inside a function defined per call, so every eager call traced and compiled it again (and TF
logged "N out of the last N calls ... triggered tf.function retracing"). Inside one traced
function those inner functions are traced once, with it, and reused while the input shapes
last; shapes are relaxed after a second size, so variable-size models retrace rarely.
"""

from __future__ import annotations

from typing import Any

_ATTR = "_maskviewer_traced_call"


def call_traced(model: Any, packed: Any) -> Any:
    """``model(packed, training=False)``, traced once per model on TensorFlow.

    Sub-classed models keep eager calls (their ``call`` may branch on tensor values in
    Python, which a trace without AutoGraph cannot follow), and so do models with layers of
    the user's own (custom classes, Lambda): their Python runs on every call, as the user
    wrote it, not once at tracing. Other backends call directly.
    """
    from maskviewer.inference.backend import backend_name
    from maskviewer.inference.probe_graph import _graph_of

    if backend_name() != "tensorflow" or _graph_of(model) is None or not _library_layers_only(model):
        return model(packed, training=False)
    fn = model.__dict__.get(_ATTR)
    if fn is None:
        import tensorflow as tf

        def run(x: Any) -> Any:
            return model(x, training=False)

        fn = tf.function(run, reduce_retracing=True, autograph=False)
        # traced for any batch size at once: one image, a batch of patches and the last, shorter
        # batch of a data set then share one trace
        try:
            fn.get_concrete_function(tf.nest.map_structure(_any_batch, packed))
        except Exception:  # noqa: BLE001 - a model that needs its batch size: traced at the call
            pass
        # set past Keras' attribute tracking: the function is no weight or layer of the model
        object.__setattr__(model, _ATTR, fn)
    return fn(packed)


#: modules whose layers do nothing in Python beyond building the graph (safe to trace once)
_LIBRARY = ("keras.", "keras_hub.", "maskviewer.")


def _library_layers_only(model: Any) -> bool:
    """Every layer (nested ones too) is a library layer, none a Lambda; cached per model."""
    cached = model.__dict__.get(_ATTR + "_library")
    if cached is None:
        cached = all(
            type(layer).__module__.startswith(_LIBRARY) and type(layer).__name__ != "Lambda"
            for layer in _walk(model)
        )
        object.__setattr__(model, _ATTR + "_library", cached)
    return cached


def _walk(model: Any):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _walk(layer)


def _any_batch(x: Any) -> Any:
    """A spec of ``x`` with the batch axis left open."""
    import tensorflow as tf

    shape = tuple(x.shape)
    if not shape:
        raise ValueError("a scalar input has no batch axis")
    return tf.TensorSpec((None, *shape[1:]), tf.as_dtype(x.dtype))
