"""Image -> model input: resizing equals tf.image.resize, scaling, channels, frames, proposals."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.errors import InputMappingError
from maskviewer.core.image import ImageData, convert_channels, resize_bilinear, resize_nearest
from maskviewer.core.mapping import InputMapping, prepare_input, propose_mapping


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


@pytest.mark.parametrize(
    "src,dst", [((28, 28), (56, 56)), ((37, 53), (28, 28)), ((10, 7), (31, 4)), ((5, 5), (5, 5))]
)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_bilinear_resize_equals_tf(tf, src, dst, channels):
    x = np.random.default_rng(1).random(src + (channels,), dtype=np.float32)
    ours = resize_bilinear(x, *dst)
    ref = tf.image.resize(x, dst, method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize(
    "src,dst",
    [((7, 5), (23, 17)), ((299, 301), (97, 113)), ((33, 65), (224, 224)), ((480, 641), (299, 299)),
     ((13, 11), (13, 37)), ((1, 1), (5, 3)), ((101, 3), (7, 9))],
)
def test_bilinear_resize_is_bitwise_tf(tf, src, dst):
    """Odd sizes, up and down: the same bits as tf.image.resize (float32 positions, half-pixel
    centres, x then y), also on 0..255 values where float64 positions were off by ~1e-5."""
    x = (np.random.default_rng(5).random(src + (3,)) * 255).astype(np.float32)
    ref = tf.image.resize(x[None], dst, method="bilinear", antialias=False).numpy()[0]
    np.testing.assert_array_equal(resize_bilinear(x, *dst), ref)


def test_prepare_input_resizes_like_keras_users_do(tf):
    """0..255 mapping: the input equals tf.image.resize of the 8-bit image, bit for bit."""
    pixels = np.random.default_rng(6).integers(0, 256, (299, 401, 3), dtype=np.uint8)
    x, _ = prepare_input(ImageData(pixels), InputMapping(scale="0..255"), (None, 75, 75, 3))
    ref = tf.image.resize(pixels[None], (75, 75), method="bilinear", antialias=False).numpy()[0]
    np.testing.assert_array_equal(x, ref)


@pytest.mark.parametrize("src,dst", [((28, 28), (56, 56)), ((37, 53), (28, 28)), ((10, 7), (31, 4))])
def test_nearest_resize_equals_tf(tf, src, dst):
    x = np.random.default_rng(2).random(src + (2,), dtype=np.float32)
    ref = tf.image.resize(x, dst, method="nearest").numpy()
    np.testing.assert_array_equal(resize_nearest(x, *dst), ref)


def test_channel_conversions():
    rgb = np.random.default_rng(3).random((4, 5, 3), dtype=np.float32)
    grey = convert_channels(rgb, 1)
    np.testing.assert_allclose(grey[..., 0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), rtol=1e-6)
    np.testing.assert_array_equal(convert_channels(grey, 3), np.repeat(grey, 3, axis=2))
    rgba = convert_channels(rgb, 4)
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    np.testing.assert_array_equal(rgba[..., 3], 1.0)
    np.testing.assert_array_equal(convert_channels(rgba, 3), rgb)
    with pytest.raises(InputMappingError, match="channel"):
        convert_channels(rgb, 2)


def _image(h=20, w=30, c=3, seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return ImageData(arr, "x.png", 255.0)


@pytest.mark.parametrize(
    "scale,fn",
    [
        ("0..1", lambda u: u),
        ("0..255", lambda u: u * 255),
        ("-1..1", lambda u: u * 2 - 1),
        ("mean/std", lambda u: (u - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])),
    ],
)
def test_scaling_modes(scale, fn):
    img = _image()
    x, frame = prepare_input(img, InputMapping(resize="none", scale=scale), (None, 20, 30, 3))
    np.testing.assert_allclose(x, fn(img.array / 255.0), rtol=1e-5, atol=1e-5)
    assert (frame.x, frame.y, frame.width, frame.height) == (0, 0, 30, 20)


def test_stretch_equals_tf_resize_of_unit_image(tf):
    img = _image(20, 30, 3)
    x, frame = prepare_input(img, InputMapping(), (None, 28, 28, 1))
    grey = (img.array / 255.0).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    ref = tf.image.resize(grey[..., None], (28, 28)).numpy()
    np.testing.assert_allclose(x, ref, atol=1e-5)
    assert x.shape == (28, 28, 1) and x.dtype == np.float32
    assert (frame.width, frame.height) == (30, 20)


def test_fit_pads_and_frame_maps_input_onto_image():
    img = _image(10, 20, 3)  # wide image into a square input: padded top and bottom
    x, frame = prepare_input(img, InputMapping(resize="fit"), (None, 40, 40, 3))
    assert np.all(x[:10] == 0) and np.all(x[30:] == 0)
    assert np.any(x[10:30] != 0)
    # the 40x40 input frame covers the 20-wide image exactly and extends beyond it vertically
    assert frame.x == pytest.approx(0) and frame.width == pytest.approx(20)
    assert frame.y == pytest.approx(-5) and frame.height == pytest.approx(20)


def test_crop_takes_the_centre():
    img = _image(10, 20, 3)
    x, frame = prepare_input(img, InputMapping(resize="crop", scale="0..255"), (None, 10, 10, 3))
    np.testing.assert_allclose(x, img.array[:, 5:15].astype(np.float32), atol=1e-4)
    assert (frame.x, frame.y, frame.width, frame.height) == (5, 0, 10, 10)


def test_none_resize_requires_matching_size():
    with pytest.raises(InputMappingError, match="resize mode"):
        prepare_input(_image(10, 20), InputMapping(resize="none"), (None, 28, 28, 3))


def test_channel_mismatch_is_explained():
    with pytest.raises(InputMappingError, match="expects 2 channel"):
        prepare_input(_image(), InputMapping(), (None, 28, 28, 2))


def test_npy_of_input_shape_is_fed_as_is():
    raw = np.random.default_rng(5).normal(size=(1, 8, 8, 5)).astype(np.float32)
    img = ImageData(raw[0].mean(axis=2, keepdims=True), "x.npy", 1.0, raw=raw)
    m = propose_mapping((None, 8, 8, 5), img)
    assert (m.resize, m.scale) == ("none", "raw")
    x, _ = prepare_input(img, m, (None, 8, 8, 5))
    np.testing.assert_array_equal(x, raw[0])


def test_proposal_for_rescaling_models_and_mapping_round_trip():
    assert propose_mapping((None, 28, 28, 1), _image(), expects_0_255=True).scale == "0..255"
    m = InputMapping(source="file:/a.png", resize="fit", scale="mean/std", mean=(0.5,), std=(0.25,))
    assert InputMapping.from_dict(m.to_dict()) == m
    assert InputMapping.from_dict({"resize": "bogus"}).resize == "stretch"


def test_raw_values_resized_keep_their_scale():
    arr = np.arange(4 * 6, dtype=np.float32).reshape(4, 6, 1) * 10
    img = ImageData(arr, "x.npy", 255.0)
    x, _ = prepare_input(img, InputMapping(resize="stretch", scale="raw"), (None, 8, 12, 1))
    np.testing.assert_allclose(x, resize_bilinear(arr, 8, 12), rtol=1e-6)
