"""Grad-CAM equals the keras-io recipe; Grad-CAM++ equals its formula; the model is left alone."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo

# the recipe, verbatim, feeds a single tensor to a model built with a list of inputs
pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


def keras_io_gradcam(img_array, model, last_conv_layer_name, pred_index=None, output=None):
    """The recipe from https://keras.io/examples/vision/grad_cam/ (``output`` picks one of several)."""
    import keras
    import tensorflow as tf

    # (a Sequential never called on a tensor has no .output; its graph's output is the same)
    model_output = model.outputs[0] if isinstance(model, keras.Sequential) else model.output
    grad_model = keras.models.Model(
        model.inputs, [model.get_layer(last_conv_layer_name).output, model_output]
    )
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if output is not None:
            preds = preds[output]
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy(), grads.numpy()[0], last_conv_layer_output.numpy(), int(pred_index)


def gradcam_pp_reference(act, grads):
    """Grad-CAM++ (Chattopadhay et al. 2018, exponential score) in numpy: act, grads are (H, W, C)."""
    a, g = act.astype(np.float64), grads.astype(np.float64)
    denom = 2 * g**2 + a.sum(axis=(0, 1), keepdims=True) * g**3
    alpha = np.where(denom != 0, g**2 / np.where(denom != 0, denom, 1), 0)
    w = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
    cam = np.maximum((a * w).sum(axis=-1), 0)
    return cam / cam.max()


def _probe(model):
    from maskviewer.inference.probe import ActivationProbe

    return ActivationProbe(model)


CASES = [
    # builder, our layer path, recipe layer, output (ours, recipe), input maker
    ("sequential", "conv_b", "conv_b", None),
    ("rgb", "conv2", "conv2", None),
    ("custom", "scale", "scale", None),
]
BUILDERS = {
    "sequential": model_zoo.sequential,
    "rgb": model_zoo.rgb_classifier,
    "custom": model_zoo.custom_layer,
    "nested": model_zoo.nested,
}


def _x(model, seed=0):
    return np.random.default_rng(seed).random((1, *model.inputs[0].shape[1:]), dtype=np.float32)


@pytest.mark.parametrize("name,layer,recipe_layer,output", CASES)
def test_gradcam_equals_keras_io_recipe(name, layer, recipe_layer, output):
    from maskviewer.inference.cam import grad_cam

    model = BUILDERS[name]()
    x = _x(model)
    ours = grad_cam(_probe(model), x, layer)
    ref, _, _, top = keras_io_gradcam(x, model, recipe_layer)
    assert ours.class_index == top
    assert ours.heatmap.max() == pytest.approx(1.0)
    np.testing.assert_allclose(ours.heatmap, ref, atol=1e-5)
    # an explicit class other than the top one
    other = (top + 1) % int(model.outputs[0].shape[-1])
    ours = grad_cam(_probe(model), x, layer, class_index=other)
    ref, _, _, _ = keras_io_gradcam(x, model, recipe_layer, pred_index=other)
    if np.isfinite(ref).all():  # the recipe divides by 0 when the CAM is all negative
        np.testing.assert_allclose(ours.heatmap, ref, atol=1e-5)
    else:
        assert not ours.heatmap.any()


def test_gradcam_inside_a_nested_model():
    from maskviewer.inference.cam import grad_cam

    model = model_zoo.nested()
    x = _x(model, 1)
    ours = grad_cam(_probe(model), x, "backbone/inner_conv")
    # the recipe cannot reach an inner layer; the nested model's output is the same tensor
    ref, _, _, top = keras_io_gradcam(x, model, "backbone")
    assert ours.class_index == top
    np.testing.assert_allclose(ours.heatmap, ref, atol=1e-5)


def test_gradcam_chosen_output_of_multi_output_models():
    from maskviewer.inference.cam import grad_cam

    model = model_zoo.three_inputs()
    rng = np.random.default_rng(2)
    x = {k: rng.random((1, *t.shape[1:]), dtype=np.float32) for k, t in model._inputs_struct.items()}
    ours = grad_cam(_probe(model), x, "attend", output_keys=["count", "seg"], output="count")
    ref, _, _, _ = keras_io_gradcam(x, model, "attend", output="count")
    assert ours.output == "count" and ours.class_index == 0
    np.testing.assert_allclose(ours.heatmap, ref, atol=1e-5)

    model = model_zoo.two_outputs()
    x = _x(model, 3)
    ours = grad_cam(_probe(model), x, "conv2", output_keys=["cls", "seg"], output="cls")
    ref, _, _, top = keras_io_gradcam(x, model, "conv2", output=0)
    assert ours.class_index == top
    np.testing.assert_allclose(ours.heatmap, ref, atol=1e-5)


def test_gradcam_of_a_subclassed_model_equals_tape_on_its_layers():
    import tensorflow as tf

    from maskviewer.inference.cam import grad_cam

    model = model_zoo.subclassed()
    x = np.random.default_rng(4).random((1, 20, 20, 3), dtype=np.float32)
    ours = grad_cam(_probe(model), x, "conv")
    with tf.GradientTape() as tape:
        f = model.conv(x)
        preds = model.head(model.pool(f * model.gate(f)))
        top = int(tf.argmax(preds[0]))
        score = preds[:, top]
    g = tape.gradient(score, f).numpy()[0]
    cam = np.maximum(f.numpy()[0] @ g.mean(axis=(0, 1)), 0)
    assert ours.class_index == top
    np.testing.assert_allclose(ours.heatmap, cam / cam.max(), atol=1e-5)
    assert "call" not in model.conv.__dict__


@pytest.mark.parametrize("name,layer", [("rgb", "conv2"), ("sequential", "conv_b")])
def test_gradcam_plus_plus_equals_formula(name, layer):
    from maskviewer.inference.cam import grad_cam

    model = BUILDERS[name]()
    x = _x(model, 5)
    ours = grad_cam(_probe(model), x, layer, plus=True)
    _, grads, act, top = keras_io_gradcam(x, model, layer)
    assert ours.method == "gradcam++" and ours.class_index == top
    np.testing.assert_allclose(ours.heatmap, gradcam_pp_reference(act, grads), atol=1e-5)


def test_cam_leaves_the_model_alone_and_explains_bad_requests():
    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import ProbeError

    model = model_zoo.rgb_classifier()
    x = _x(model, 6)
    before = model(x).numpy()
    weights = [w.copy() for w in model.get_weights()]
    nodes = {layer.name: len(layer._inbound_nodes) for layer in model.layers}
    activations = {layer.name: getattr(layer, "activation", None) for layer in model.layers}
    probe = _probe(model)
    grad_cam(probe, x, "conv2")
    grad_cam(probe, x, "conv1", plus=True)
    assert {layer.name: len(layer._inbound_nodes) for layer in model.layers} == nodes
    assert {layer.name: getattr(layer, "activation", None) for layer in model.layers} == activations
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model(x).numpy(), before)

    with pytest.raises(ProbeError, match="not a spatial"):
        grad_cam(probe, x, "gap")
    with pytest.raises(ProbeError, match="Class 9 does not exist"):
        grad_cam(probe, x, "conv2", class_index=9)
    with pytest.raises(ProbeError, match="no output 'nope'"):
        grad_cam(probe, x, "conv2", output_keys=["probs"], output="nope")
