"""The layer methods equal plain numpy implementations of their papers' formulas, from
activations and gradients computed with a plain Keras model and GradientTape; Score-CAM equals
a plain reimplementation of tf-keras-vis' ScoreCAM (scipy's zoom, Keras' predict)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def small():
    """A small classifier (4 classes, 12×12 conv2 grid) and 3 images."""
    import keras

    keras.utils.set_random_seed(11)
    inp = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    f = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="probs")(f))
    rng = np.random.default_rng(3)
    images = rng.random((3, 24, 24, 3), dtype=np.float32) * rng.random((3, 1, 1, 3), dtype=np.float32) * 2
    return model, images


def tape_reference(model, layer, x, classes=None):
    """Layer output, its gradient and each image's class and score, with GradientTape on a
    plain Keras model (``classes`` None: each image's top class)."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    with tf.GradientTape() as tape:
        act, preds = grad_model(tf.constant(x))
        top = np.argmax(preds.numpy(), axis=-1) if classes is None else np.asarray(classes)
        score = tf.reduce_sum(tf.gather(preds, top, axis=1, batch_dims=1))
    grads = tape.gradient(score, act)
    picked = preds.numpy()[np.arange(len(x)), top]
    return act.numpy().astype(np.float64), grads.numpy().astype(np.float64), top, picked


# the formulas, one image at a time: a, g are (H, W, C)
def gradcam(a, g):
    return np.maximum(a @ g.mean(axis=(0, 1)), 0)


def gradcam_pp(a, g):
    denom = 2 * g**2 + a.sum(axis=(0, 1), keepdims=True) * g**3
    alpha = np.where(denom != 0, g**2 / np.where(denom != 0, denom, 1), 0)
    return np.maximum(a @ (alpha * np.maximum(g, 0)).sum(axis=(0, 1)), 0)


def hirescam(a, g):  # Draelos & Carin: element-wise gradient times activation, summed over channels
    return np.maximum((g * a).sum(axis=-1), 0)


def xgradcam(a, g):  # Fu et al.: w_k = sum(g * A) / sum(A)
    w = (g * a).sum(axis=(0, 1)) / (a.sum(axis=(0, 1)) + 1e-7)
    return np.maximum(a @ w, 0)


def layercam(a, g):  # Jiang et al.: relu(g) * A summed over channels
    return np.maximum((np.maximum(g, 0) * a).sum(axis=-1), 0)


def eigencam(a, _g=None):
    """The first principal component of the centred activations (sign: along the centred
    channel-mean map, the convention the API documents)."""
    h, w, c = a.shape
    x = a.reshape(h * w, c)
    x = x - x.mean(axis=0)
    _u, _s, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[0]
    if proj @ x.mean(axis=1) < 0:
        proj = -proj
    return np.maximum(proj.reshape(h, w), 0)


FORMULAS = {"gradcam": gradcam, "gradcam++": gradcam_pp, "hirescam": hirescam, "xgradcam": xgradcam,
            "layercam": layercam, "eigencam": eigencam}


def _close(ours, ref):
    scale = max(float(np.abs(ref).max()), 1e-12)
    np.testing.assert_allclose(ours / scale, ref / scale, atol=2e-5)


@pytest.mark.parametrize("method", list(FORMULAS))
@pytest.mark.parametrize("classes", [None, [2, 0, 3]])
def test_layer_methods_equal_their_formulas(small, method, classes):
    from maskviewer.inference.attribution import attribution_function

    model, x = small
    a, g, top, score = tape_reference(model, "conv2", x, classes)
    batch = attribution_function(model, method, "conv2")(x, classes)
    assert batch.space == "layer" and batch.maps.shape == (3, 12, 12)
    np.testing.assert_array_equal(batch.classes, top)
    np.testing.assert_allclose(batch.scores, score, rtol=1e-5)
    drawn = 0
    for i in range(3):
        ref = FORMULAS[method](a[i], g[i])
        _close(batch.maps[i], ref)
        if ref.max() > 0:  # (a CAM of a class the image argues against can be all zeros)
            drawn += 1
            np.testing.assert_allclose(batch.item(i).heatmap, ref / ref.max(), atol=1e-4)
    assert drawn >= 2  # maps to compare, not zeros against zeros


@pytest.mark.parametrize("method", ["hirescam", "layercam", "eigencam", "scorecam"])
def test_sequential_model_and_eager_equals_traced(method):
    from maskviewer.inference.attribution import attribution_function

    model = model_zoo.sequential()
    x = np.random.default_rng(1).random((2, 28, 28, 1), dtype=np.float32)
    traced = attribution_function(model, method, "conv_b")
    assert attribution_function(model, method, "conv_b") is traced  # made once, kept
    eager = attribution_function(model, method, "conv_b", compiled=False)
    assert eager is not traced
    np.testing.assert_allclose(traced(x).maps, eager(x).maps, rtol=1e-4, atol=1e-6)
    if method in FORMULAS:
        a, g, _top, _score = tape_reference(model, "conv_b", x)
        for i in range(2):
            _close(traced(x).maps[i], FORMULAS[method](a[i], g[i]))


def tf_keras_vis_scorecam(model, layer, x, class_index, max_n=None):
    """tf-keras-vis' ScoreCAM (0.8), reimplemented plainly: layer outputs upsampled with
    scipy's zoom (order 1, mode "nearest"), min-max normalised per channel, multiplied into
    the input; each channel's weight is the class's softmax score of the masked input."""
    import keras
    from scipy.ndimage import zoom

    act = keras.Model(model.inputs, model.get_layer(layer).output).predict(x, verbose=0)
    if max_n is not None:
        std = np.std(act, axis=(1, 2))
        top = np.argsort(-std, axis=-1)[..., :max_n]
        act = np.array([np.take(a, top[i], axis=-1) for i, a in enumerate(act)])
    factor = (1, x.shape[1] / act.shape[1], x.shape[2] / act.shape[2], 1)
    up = zoom(act, factor, order=1, mode="nearest")
    lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    norm = (up - lo) / (hi - lo + 1e-7)
    channels = act.shape[-1]
    templates = np.tile(x, (channels, 1, 1, 1, 1))  # (channels, samples, h, w, c)
    masks = np.moveaxis(norm[..., None], -2, 0)  # (channels, samples, h, w, 1)
    masked = (templates * masks).reshape((-1, *x.shape[1:]))
    preds = model.predict(masked, batch_size=32, verbose=0).reshape(channels, len(x), -1)
    probs = np.exp(preds - preds.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    weights = np.moveaxis(probs[..., class_index], 0, -1)  # (samples, channels)
    cam = np.einsum("bhwc,bc->bhw", act, weights)
    return np.maximum(cam, 0)


@pytest.mark.parametrize("max_n", [None, 5])
def test_scorecam_equals_tf_keras_vis(small, max_n):
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    options = AttributionOptions(batch=3, score_channels=max_n)  # 8 channels: 3 batches, the last padded
    batch = attribution_function(model, "scorecam", "conv1", options=options)(x, 1)
    ref = tf_keras_vis_scorecam(model, "conv1", x, 1, max_n)
    assert ref.max() > 0
    np.testing.assert_array_equal(batch.classes, [1, 1, 1])
    for i in range(3):
        _close(batch.maps[i], ref[i])


def test_zoom_matrix_is_scipy_zoom():
    from scipy.ndimage import zoom

    from maskviewer.inference.attribution_cam import zoom_matrix

    v = np.random.default_rng(0).random(7)
    for n_out in (7, 13, 224, 3):
        np.testing.assert_allclose(zoom_matrix(7, n_out) @ v, zoom(v, n_out / 7, order=1, mode="nearest"), atol=1e-6)


def test_bad_requests_say_why(small):
    from maskviewer.core.errors import MaskviewerError
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    with pytest.raises(MaskviewerError, match="Unknown method"):
        attribution_function(model, "occlusion-ish", "conv2")
    with pytest.raises(MaskviewerError, match="needs a layer"):
        attribution_function(model, "gradcam")
    for method in ("gradcam", "eigencam", "scorecam"):
        with pytest.raises(MaskviewerError, match="not a spatial"):
            attribution_function(model, method, "gap")(x)
        with pytest.raises(MaskviewerError, match="Class 9 does not exist"):
            fn = attribution_function(model, method, "conv2")
            fn(x)  # learns the class count
            fn(x, 9)
    with pytest.raises(MaskviewerError, match="at least 2 steps"):
        attribution_function(model, "ig", options=AttributionOptions(ig_steps=1))


@pytest.mark.parametrize("method,layer", [("scorecam", "conv1"), ("smoothgrad", None), ("ig", None)])
def test_check_stops_the_many_passes(small, method, layer):
    """``check`` is called between passes; what it raises stops the method (a cancelled job)."""
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("stop")

    fn = attribution_function(model, method, layer, options=AttributionOptions(batch=2, smooth_samples=6, ig_steps=6))
    with pytest.raises(KeyboardInterrupt):
        fn(x[:1], None, check)
    assert len(calls) == 2
    assert fn(x[:1]).maps.shape[0] == 1  # and runs to the end without one


def test_a_model_let_go_is_collected_with_its_functions():
    """Functions are kept on the model's probe, not in a global table: a sanity check's copies
    do not pile up."""
    import gc
    import weakref

    from maskviewer.inference.attribution import attribution_function

    model = model_zoo.rgb_classifier()
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    fn = attribution_function(model, "gradcam", "conv2")
    fn(x)
    assert attribution_function(model, "gradcam", "conv2") is fn
    gone = weakref.ref(model)
    del model, fn
    gc.collect()
    assert gone() is None
