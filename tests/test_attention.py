"""Captured attention weights equal ``layer(query, value, return_attention_scores=True)``; the
capture changes nothing; the gradient with respect to the weights equals an independent tape."""

from __future__ import annotations

import numpy as np
import pytest

FAMILIES = ("keras_io_vit", "conv_vit", "cls_vit", "hybrid_vit")


@pytest.fixture(scope="module")
def models():
    from tests import vit_zoo

    return {name: getattr(vit_zoo, name)() for name in FAMILIES}


def _reference_weights(model, x):
    """Each attention layer called again on its inputs with return_attention_scores=True."""
    import keras

    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            node = layer._inbound_nodes[0]
            q, v = node.arguments.args[0], node.arguments.args[1]
            sub = keras.Model(model.inputs, [q, v])
            query, value = sub(x)
            _, scores = layer(query, value, return_attention_scores=True)
            out[layer.name] = np.asarray(scores)
        elif hasattr(layer, "attention") and isinstance(layer.attention, keras.layers.MultiHeadAttention):
            inp = layer._inbound_nodes[0].arguments.args[0]
            y = layer.norm1(keras.Model(model.inputs, inp)(x))
            _, scores = layer.attention(y, y, return_attention_scores=True)
            out[f"{layer.name}/attention"] = np.asarray(scores)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_weights_equal_return_attention_scores(models, family):
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.probe import ActivationProbe
    from tests.vit_zoo import image

    model = models[family]
    x = image(seed=11)
    cap = AttentionCapture(ActivationProbe(model))
    ref = _reference_weights(model, x)
    assert cap.paths() == list(ref)
    for compiled in (True, False):
        got = cap.capture(x, compiled=compiled)
        assert list(got.weights) == list(ref)
        for path, w in ref.items():
            np.testing.assert_allclose(got.weights[path], w, atol=1e-5)
        # the same pass gives the model's own outputs, and the layers are restored after it
        np.testing.assert_allclose(np.asarray(got.outputs), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    assert all("call" not in layer.__dict__ for layer in cap.layers.values())


def test_no_attention_layers_is_a_clear_error():
    import keras

    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.probe import ActivationProbe, ProbeError

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp)))
    cap = AttentionCapture(ActivationProbe(model))
    assert cap.paths() == []
    with pytest.raises(ProbeError, match="no MultiHeadAttention layer"):
        cap.capture(np.zeros((1, 8, 8, 3), "float32"))


def _tape_gradients(model, layers, x, cls):
    """d score / d A by an independent route: each layer's ``_compute_attention`` replaced (on the
    instance, for this test) by one that adds a watched zero tensor to the softmax weights and
    multiplies the values with the sum; the plain model is called under a tape."""
    import tensorflow as tf

    eps, weights = {}, {}
    with tf.GradientTape() as tape:
        for path, layer in layers.items():
            original = layer._compute_attention

            def wrapped(query, key, value, attention_mask=None, training=None, _scores=False, *,
                        __orig=original, __path=path, __layer=layer):
                a = __orig(query, key, value, attention_mask, training, True)[1]
                eps[__path] = tf.zeros_like(a)
                tape.watch(eps[__path])
                weights[__path] = a + eps[__path]
                return tf.einsum(__layer._combine_equation, weights[__path], value), weights[__path]

            layer._compute_attention = wrapped
        try:
            score = model(x, training=False)[:, cls]
        finally:
            for layer in layers.values():
                del layer._compute_attention
    grads = tape.gradient(score, [eps[p] for p in layers])
    return {p: np.asarray(w) for p, w in weights.items()}, {p: np.asarray(g) for p, g in zip(layers, grads, strict=True)}


@pytest.mark.parametrize("family", ["cls_vit", "keras_io_vit"])
def test_attention_gradients_equal_an_independent_tape(models, family):
    from maskviewer.inference.attention import AttentionCapture, attention_gradients
    from maskviewer.inference.probe import ActivationProbe
    from tests.vit_zoo import image

    model = models[family]
    x = image(seed=12)
    cap = AttentionCapture(ActivationProbe(model))
    got = attention_gradients(cap, x, class_index=2)
    ref_w, ref_g = _tape_gradients(model, cap.layers, x, 2)
    assert int(got.classes[0]) == 2
    np.testing.assert_allclose(got.scores[0], np.asarray(model(x))[0, 2], rtol=1e-5, atol=1e-5)
    for path in cap.paths():
        np.testing.assert_allclose(got.weights[path], ref_w[path], atol=1e-5)
        np.testing.assert_allclose(got.grads[path], ref_g[path], rtol=1e-4, atol=1e-6)
        assert np.abs(ref_g[path]).max() > 0  # the gradient is not trivially zero


def test_unknown_class_is_refused(models):
    from maskviewer.inference.attention import AttentionCapture, attention_gradients
    from maskviewer.inference.probe import ActivationProbe, ProbeError
    from tests.vit_zoo import image

    cap = AttentionCapture(ActivationProbe(models["conv_vit"]))
    with pytest.raises(ProbeError, match="Class 9 does not exist"):
        attention_gradients(cap, image(), class_index=9)
