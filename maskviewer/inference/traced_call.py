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
    Python, which a trace without AutoGraph cannot follow); other backends call directly.
    """
    from maskviewer.inference.backend import backend_name
    from maskviewer.inference.probe_graph import _graph_of

    if backend_name() != "tensorflow" or _graph_of(model) is None:
        return model(packed, training=False)
    fn = model.__dict__.get(_ATTR)
    if fn is None:
        import tensorflow as tf

        def run(x: Any) -> Any:
            return model(x, training=False)

        fn = tf.function(run, reduce_retracing=True, autograph=False)
        # set past Keras' attribute tracking: the function is no weight or layer of the model
        object.__setattr__(model, _ATTR, fn)
    return fn(packed)
