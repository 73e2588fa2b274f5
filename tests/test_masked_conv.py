"""MaskedConv2D against plain convolution, its save/load round trip, and kernel masks on a copy."""

from __future__ import annotations

import numpy as np
import pytest

MASK = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32)


@pytest.fixture(scope="module")
def mc(keras_mod):
    from maskviewer.inference.masked_conv import MaskedConv2D

    return MaskedConv2D


def test_all_ones_kernel_masked_gives_21_everywhere(mc):
    layer = mc(2, 3, kernel_initializer="ones", bias_initializer="zeros")
    y = np.asarray(layer([np.ones((1, 4, 4, 3), np.float32), MASK]))
    assert y.shape == (1, 2, 2, 2)
    # 7 kernel positions on x 3 input channels x 1.0
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 2), 21.0, np.float32))


def test_equals_conv2d_with_the_kernel_multiplied(mc, keras_mod, rng):
    import tensorflow as tf

    layer = mc(5, 3, padding="same", strides=2, activation="relu")
    x = rng.standard_normal((2, 9, 11, 4)).astype(np.float32)
    y = np.asarray(layer([x, MASK]))
    k = layer.kernel.numpy() * MASK[:, :, None, None]
    expected = tf.nn.relu(
        tf.nn.conv2d(x, k, strides=2, padding="SAME") + layer.bias.numpy()
    ).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_batched_masks_apply_per_sample(mc, keras_mod, rng):
    import tensorflow as tf

    layer = mc(3, 3)
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    masks = (rng.random((3, 3, 3)) > 0.5).astype(np.float32)
    y = np.asarray(layer([x, masks]))
    for i in range(3):
        k = layer.kernel.numpy() * masks[i][:, :, None, None]
        expected = tf.nn.conv2d(x[i : i + 1], k, 1, "VALID").numpy() + layer.bias.numpy()
        np.testing.assert_allclose(y[i : i + 1], expected, rtol=1e-5, atol=1e-5)


def test_wrong_mask_size_is_refused(mc, keras_mod):
    x = keras_mod.Input((8, 8, 3))
    m = keras_mod.Input((5, 5))
    with pytest.raises(ValueError, match="kernel size"):
        mc(2, 3)([x, m])


def test_save_and_load_round_trip(mc, keras_mod, tmp_path, rng):
    keras = keras_mod
    x_in = keras.Input((8, 8, 3), name="image")
    m_in = keras.Input((3, 3), name="kernel_mask")
    y = mc(4, 3, padding="same", activation="relu", name="masked")([x_in, m_in])
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model([x_in, m_in], y)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    m = np.stack([MASK, np.ones((3, 3), np.float32)])
    before = np.asarray(model([x, m]))
    path = tmp_path / "masked.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: a registered class, no code
    layer = loaded.get_layer("masked")
    assert type(layer).__name__ == "MaskedConv2D"
    assert layer.get_config()["filters"] == 4 and layer.get_config()["padding"] == "same"
    np.testing.assert_array_equal(np.asarray(loaded([x, m])), before)


# -- kernel masks on a copy of a model ---------------------------------------------------------


def test_masked_copy_changes_only_the_copy(keras_mod, rng):
    from maskviewer.inference.kernel_mask import conv_layer_paths, kernel_weights, masked_copy
    from tests import model_zoo

    model = model_zoo.rgb_classifier()
    assert conv_layer_paths(model) == ["conv1", "conv2"]
    original = kernel_weights(model, "conv2").copy()
    x = rng.random((1, 32, 32, 3)).astype(np.float32)
    before = np.asarray(model(x))
    copy = masked_copy(model, "conv2", MASK)
    np.testing.assert_array_equal(kernel_weights(model, "conv2"), original)
    np.testing.assert_array_equal(kernel_weights(copy, "conv2"), original * MASK[:, :, None, None])
    np.testing.assert_array_equal(np.asarray(model(x)), before)
    # the copy equals the model with that kernel multiplied by hand
    manual = model_zoo.rgb_classifier()
    manual.set_weights(model.get_weights())
    manual.get_layer("conv2").kernel.assign(original * MASK[:, :, None, None])
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(manual(x)), rtol=1e-6)
    assert not np.allclose(np.asarray(copy(x)), before)


def test_nested_model_and_bad_requests(keras_mod):
    from maskviewer.core.errors import MaskviewerError
    from maskviewer.inference.kernel_mask import conv_layer_paths, kernel_weights, masked_copy
    from tests import model_zoo

    model = model_zoo.nested()
    assert conv_layer_paths(model) == ["backbone/inner_conv"]
    copy = masked_copy(model, "backbone/inner_conv", MASK)
    np.testing.assert_array_equal(
        kernel_weights(copy, "backbone/inner_conv"),
        kernel_weights(model, "backbone/inner_conv") * MASK[:, :, None, None],
    )
    with pytest.raises(MaskviewerError, match="2×2 but layer"):
        masked_copy(model, "backbone/inner_conv", np.ones((2, 2)))
    with pytest.raises(MaskviewerError, match="no layer"):
        masked_copy(model, "nope", MASK)
    with pytest.raises(MaskviewerError, match="kernel masks apply to Conv2D"):
        masked_copy(model, "probs", MASK)


def test_host_runs_the_copy_until_reset(keras_mod, model_files, rng):
    from maskviewer.inference.kernel_mask import (
        applied_kernel_mask,
        apply_kernel_mask,
        reset_kernel_mask,
    )
    from maskviewer.inference.runner import ModelHost

    host = ModelHost()
    host.load(model_files["rgb"])
    loaded = host.loaded
    x = {"image": rng.random((1, 32, 32, 3)).astype(np.float32)}
    before = host.predict(x)["probs"]
    kernel = apply_kernel_mask(host, "conv1", MASK)
    assert applied_kernel_mask(host)[0] == "conv1"
    masked = host.predict(x)["probs"]
    assert not np.allclose(masked, before)
    expected = loaded.model.get_layer("conv1").kernel.numpy() * MASK[:, :, None, None]
    np.testing.assert_array_equal(kernel, expected)
    # applying another mask starts again from the model as loaded, not from the masked copy
    apply_kernel_mask(host, "conv1", np.ones((3, 3)))
    np.testing.assert_allclose(host.predict(x)["probs"], before, rtol=1e-6)
    assert reset_kernel_mask(host)
    assert host.loaded is loaded and applied_kernel_mask(host) is None
    np.testing.assert_array_equal(host.predict(x)["probs"], before)
    assert not reset_kernel_mask(host)
