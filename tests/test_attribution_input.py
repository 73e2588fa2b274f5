"""Saliency, SmoothGrad and Integrated Gradients equal plain GradientTape implementations
(the same noise, the same path points), and IG is complete: its map sums to f(x) - f(baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


@pytest.fixture(scope="module")
def small():
    """A small classifier with logits (tanh keeps it smooth but not linear) and 2 images."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((20, 20, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    f = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(f))
    k, b = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([k * 20, b])  # logits that differ between images
    images = np.random.default_rng(2).random((2, 20, 20, 3), dtype=np.float32) * 2
    return model, images


def tape_gradients(model, rows, classes, output=None):
    """``d y[class] / d x`` for every row, and each row's scores, with a plain GradientTape."""
    import tensorflow as tf

    x = tf.constant(rows)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
        if output is not None:
            y = y[output]
        y = tf.reshape(y, (len(rows), -1))
        s = tf.gather(y, np.asarray(classes), axis=1, batch_dims=1)
        total = tf.reduce_sum(s)
    return tape.gradient(total, x).numpy().astype(np.float64), s.numpy()


def top_classes(model, x):
    return np.argmax(np.asarray(model(x, training=False)), axis=-1)


def test_saliency_equals_gradient_tape(small):
    from maskviewer.inference.attribution import attribution_function

    model, x = small
    for classes in (None, [3, 1]):
        batch = attribution_function(model, "saliency")(x, classes)
        want = top_classes(model, x) if classes is None else np.asarray(classes)
        g, s = tape_gradients(model, x, want)
        assert batch.space == "input" and batch.maps.shape == (2, 20, 20)
        np.testing.assert_array_equal(batch.classes, want)
        np.testing.assert_allclose(batch.scores, s, rtol=1e-5)
        np.testing.assert_allclose(batch.maps, np.abs(g).max(axis=-1), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("samples,batch", [(6, 32), (7, 3)])  # one pass; three, the last padded
def test_smoothgrad_equals_gradient_tape_with_the_same_noise(small, samples, batch):
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    opts = AttributionOptions(smooth_samples=samples, smooth_noise=0.2, seed=4, batch=batch)
    got = attribution_function(model, "smoothgrad", options=opts)(x)
    want = top_classes(model, x)
    np.testing.assert_array_equal(got.classes, want)
    for i in range(2):
        sigma = 0.2 * (x[i].max() - x[i].min())
        noise = np.random.default_rng(4).standard_normal((samples, *x.shape[1:]), dtype=np.float32)
        g, _ = tape_gradients(model, x[i][None] + sigma * noise, [want[i]] * samples)
        ref = np.abs(g).mean(axis=0).max(axis=-1)
        np.testing.assert_allclose(got.maps[i], ref, rtol=1e-4, atol=1e-7)
    # another seed, other noise: the seed is used
    other = attribution_function(model, "smoothgrad", options=AttributionOptions(smooth_samples=samples, seed=5))(x)
    assert not np.allclose(other.maps, got.maps)


def riemann_ig(model, xi, base, cls, steps, rule):
    """IG with a GradientTape: trapezoid (a_k = k/(m-1), ends halved) or right (a_k = k/m) sums."""
    if rule == "trapezoid":
        alphas = np.linspace(0, 1, steps)
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
    elif rule == "gausslegendre":  # Captum's default: Legendre nodes and weights mapped to [0, 1]
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, w = (nodes + 1) / 2, weights / 2
    else:
        alphas = np.arange(1, steps + 1) / steps
        w = np.full(steps, 1 / steps)
    path = (base[None] + alphas[:, None, None, None] * (xi - base)[None]).astype(np.float32)
    g, _ = tape_gradients(model, path, [cls] * steps)
    return ((xi - base) * np.tensordot(w, g, axes=1)).sum(axis=-1)


@pytest.mark.parametrize("rule", ["trapezoid", "right", "gausslegendre"])
def test_ig_equals_gradient_tape_riemann_sum(small, rule):
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    custom = np.random.default_rng(9).random(x.shape[1:], dtype=np.float32)
    want = top_classes(model, x)
    for baseline, base in (("black", np.zeros(x.shape[1:], np.float32)), (custom, custom)):
        opts = AttributionOptions(ig_steps=10, ig_baseline=baseline, ig_rule=rule, batch=4)
        got = attribution_function(model, "ig", options=opts)(x)
        for i in range(2):
            ref = riemann_ig(model, x[i].astype(np.float64), base.astype(np.float64), want[i], 10, rule)
            np.testing.assert_allclose(got.maps[i], ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("baseline", ["black", "blurred"])
def test_ig_is_complete_at_64_steps(small, baseline):
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    fn = attribution_function(model, "ig", options=AttributionOptions(ig_steps=64, ig_baseline=baseline))
    got = fn(x)
    for i in range(2):
        base = fn.baseline(x[i], i)
        if baseline == "blurred":
            assert 0 < np.abs(base - x[i]).mean() < np.abs(x[i]).mean()  # blurred, not black
        c = got.classes[i]
        diff = float(np.asarray(model(x[i : i + 1]))[0, c] - np.asarray(model(base[None]))[0, c])
        assert abs(diff) > 0.05  # something to attribute
        assert abs(float(got.maps[i].sum()) - diff) <= 0.01 * abs(diff)


def test_blur_equals_scipy():
    from scipy.ndimage import gaussian_filter

    from maskviewer.inference.attribution_input import gaussian_blur

    img = np.random.default_rng(0).random((30, 22, 3)).astype(np.float32)
    # scipy's "reflect" is numpy's "symmetric"; its kernel is truncated at 4 sigma, ours at 3
    np.testing.assert_allclose(gaussian_blur(img, 2.0), gaussian_filter(img, (2.0, 2.0, 0), truncate=3.0), atol=1e-5)


def test_one_named_input_of_a_multi_input_model():
    """The gradient is taken with respect to the input asked for; the others ride along."""
    import tensorflow as tf

    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model = model_zoo.three_inputs()
    rng = np.random.default_rng(0)
    inputs = {k: rng.random((2, 24, 24, c), dtype=np.float32) for k, c in (("rgb", 3), ("density_a", 1), ("density_b", 1))}
    fn = attribution_function(model, "saliency", output="count", options=AttributionOptions(input="density_a"))
    got = fn(inputs)
    x = {k: tf.constant(v) for k, v in inputs.items()}
    with tf.GradientTape() as tape:
        tape.watch(x["density_a"])
        total = tf.reduce_sum(model(x, training=False)["count"])
    g = tape.gradient(total, x["density_a"]).numpy()
    np.testing.assert_allclose(got.maps, np.abs(g).max(axis=-1), rtol=1e-4, atol=1e-8)
    assert got.output == "count"


def test_batch_items_equal_single_images(small):
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    for method in ("smoothgrad", "ig"):
        fn = attribution_function(model, method, options=AttributionOptions(smooth_samples=4, ig_steps=6, seed=0))
        both = fn(x)
        for i in range(2):  # (the noise does not depend on the image's place in the batch)
            np.testing.assert_allclose(fn(x[i : i + 1]).maps[0], both.maps[i], rtol=1e-4, atol=1e-7)


def test_occlusion_equals_a_plain_sliding_window(small):
    """Each pixel: the mean over the windows covering it of f(x) - f(x with the window zeroed)."""
    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    model, x = small
    opts = AttributionOptions(occlusion_window=6, occlusion_stride=4, batch=5)  # 20 px: starts 0, 4, 8, 12, 14
    got = attribution_function(model, "occlusion", options=opts)(x, [2, 1])
    starts = [0, 4, 8, 12, 14]
    for i, cls in enumerate([2, 1]):
        base = float(np.asarray(model(x[i : i + 1]))[0, cls])
        total, count = np.zeros((20, 20)), np.zeros((20, 20))
        for y0 in starts:
            for x0 in starts:
                occluded = x[i].copy()
                occluded[y0 : y0 + 6, x0 : x0 + 6] = 0
                drop = base - float(np.asarray(model(occluded[None]))[0, cls])
                total[y0 : y0 + 6, x0 : x0 + 6] += drop
                count[y0 : y0 + 6, x0 : x0 + 6] += 1
        assert count.min() >= 1
        np.testing.assert_allclose(got.maps[i], total / count, rtol=1e-4, atol=1e-5)
    assert got.space == "input" and list(got.classes) == [2, 1]
