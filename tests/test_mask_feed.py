"""How a mask feeds the model: proposals, mapping sources, and the exact tensors built."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.errors import InputMappingError
from maskviewer.core.image import ImageData, resize_bilinear
from maskviewer.core.mapping import InputMapping, prepare_input
from maskviewer.core.mask_feed import (
    MaskFeed,
    ablation_masks,
    ablation_rows,
    apply_feed,
    current_feed,
    feed_options,
    mask_source,
    masks_needed,
    parse_source,
    prepare_masked_input,
    propose_mask_mode,
    resize_like_image,
)
from maskviewer.core.model_info import ModelInfo, TensorInfo


def _info(*inputs):
    return ModelInfo("m", "/m.keras", "functional", [TensorInfo(n, s) for n, s in inputs], [], [])


def _image(rng, h=20, w=30, c=3):
    return ImageData(rng.integers(0, 256, (h, w, c), dtype=np.uint8), "/img.png", 255.0)


# -- proposals --------------------------------------------------------------------------------


def test_propose_channel_for_rgb_plus_one_and_grey_plus_one():
    assert propose_mask_mode(_info(("x", (None, 32, 32, 4))), 3) == MaskFeed("channel", "x")
    assert propose_mask_mode(_info(("x", (None, 32, 32, 2))), 1) == MaskFeed("channel", "x")
    assert propose_mask_mode(_info(("x", (None, 32, 32, 4))), None) == MaskFeed("channel", "x")
    # an RGB model with an RGB image: nothing to propose
    assert propose_mask_mode(_info(("x", (None, 32, 32, 3))), 3).mode == "none"
    # 4 channels but a grey image: not image + mask
    assert propose_mask_mode(_info(("x", (None, 32, 32, 4))), 1).mode == "none"


def test_propose_named_mask_input():
    info = _info(("image", (None, 64, 64, 3)), ("attention_mask", (None, 64, 64, 1)))
    assert propose_mask_mode(info, 3) == MaskFeed("input", "attention_mask")
    info = _info(("rgb", (None, 64, 64, 3)), ("weights", (None, 64, 64, 1)))
    assert propose_mask_mode(info, 3) == MaskFeed("input", "weights")
    # two same-sized inputs, one with a single channel, unnamed
    info = _info(("a", (None, 24, 24, 3)), ("b", (None, 24, 24, 1)))
    assert propose_mask_mode(info, 3) == MaskFeed("input", "b")
    # a 3-channel input named "mask" is not a mask input
    info = _info(("mask", (None, 8, 8, 3)), ("img", (None, 8, 8, 3)))
    assert propose_mask_mode(info, 3).mode == "none"


def test_feed_options_and_sources_round_trip():
    info = _info(("image", (None, 8, 8, 3)), ("m", (None, 8, 8, 1)))
    labels = [o.label for o in feed_options(info)]
    assert labels == ["none", "channel", "multiply", "multiply", "input:m"]
    for mode in ("channel", "multiply", "input"):
        assert parse_source(mask_source(mode, "ground truth")) == (mode, "ground truth")
    assert parse_source("image") == ("none", None)
    assert parse_source("file:/x.png") == ("none", None)


def test_apply_feed_moves_the_mask_and_keeps_the_rest():
    base = {
        "image": InputMapping(resize="fit", scale="-1..1"),
        "m": InputMapping(scale="0..255"),
    }
    fed = apply_feed(base, MaskFeed("input", "m", "attention"))
    assert fed["m"].source == "mask:attention" and fed["m"].scale == "0..1"
    assert fed["image"] == base["image"]
    assert current_feed(fed) == MaskFeed("input", "m", "attention")
    assert masks_needed(fed) == {"attention"}
    moved = apply_feed(fed, MaskFeed("channel", "image", "attention"))
    assert moved["m"].source == "image"
    assert moved["image"].source == "image+mask:attention" and moved["image"].resize == "fit"
    assert current_feed(apply_feed(moved, MaskFeed())) == MaskFeed()


# -- the tensors ------------------------------------------------------------------------------


def _tf_resize(a, h, w, method):
    import tensorflow as tf

    return tf.image.resize(a[None, :, :, None], (h, w), method=method, antialias=False).numpy()[0, :, :, 0]


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_resize_like_image_matches_tf_image_resize(method, rng, keras_mod):
    mask = rng.random((21, 33)).astype(np.float32)
    if method == "nearest":
        mask = (mask > 0.5).astype(np.float32)
    out, frame = resize_like_image(mask, "stretch", 16, 16, method)
    np.testing.assert_allclose(out, _tf_resize(mask, 16, 16, method), atol=1e-6)
    assert (frame.width, frame.height) == (33, 21)


@pytest.mark.parametrize("resize", ["stretch", "fit", "crop"])
def test_soft_mask_resizes_and_frames_exactly_like_the_image(resize, rng):
    mask = rng.random((20, 30)).astype(np.float32)
    as_image = ImageData(mask[:, :, None], None, 1.0)
    expected, expected_frame = prepare_input(as_image, InputMapping(resize=resize), (None, 16, 16, 1))
    out, frame = resize_like_image(mask, resize, 16, 16)
    np.testing.assert_array_equal(out, expected[:, :, 0])
    assert frame == expected_frame


def test_binary_mask_stays_binary_with_nearest(rng):
    mask = (rng.random((20, 30)) > 0.5).astype(np.float32)
    out, _ = resize_like_image(mask, "stretch", 13, 17)
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_channel_mode_appends_the_mask_after_the_scaled_image(rng):
    image = _image(rng)
    mask = (rng.random((20, 30)) > 0.5).astype(np.float32)
    m = InputMapping(source="image+mask:a", scale="-1..1")
    x, frame = prepare_masked_input(image, m, (None, 16, 16, 4), {"a": mask})
    rgb = resize_bilinear(image.array / np.float32(255), 16, 16) * 2 - 1
    np.testing.assert_allclose(x[:, :, :3], rgb, atol=1e-6)
    np.testing.assert_array_equal(x[:, :, 3], _nearest(mask, 16, 16))
    assert x.shape == (16, 16, 4) and x.dtype == np.float32


def _nearest(a, h, w):
    ys = np.minimum(np.floor((np.arange(h) + 0.5) * a.shape[0] / h).astype(int), a.shape[0] - 1)
    xs = np.minimum(np.floor((np.arange(w) + 0.5) * a.shape[1] / w).astype(int), a.shape[1] - 1)
    return a[ys][:, xs]


def test_grey_channel_mode(rng):
    image = _image(rng, c=1)
    mask = rng.random((20, 30)).astype(np.float32)  # soft: bilinear
    x, _ = prepare_masked_input(image, InputMapping(source="image+mask:a"), (20, 30, 2), {"a": mask})
    np.testing.assert_allclose(x[:, :, 0], image.array[:, :, 0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(x[:, :, 1], mask)


def test_multiply_mode_multiplies_pixels_before_scaling(rng):
    image = _image(rng)
    mask = rng.random((20, 30)).astype(np.float32)
    m = InputMapping(source="image*mask:a", scale="mean/std")
    x, _ = prepare_masked_input(image, m, (None, 20, 30, 3), {"a": mask})
    mean, std = np.array(m.mean, np.float32), np.array(m.std, np.float32)
    expected = (image.array / np.float32(255) * mask[:, :, None] - mean) / std
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)


def test_separate_input_mode_gets_the_mask_alone(rng):
    image = _image(rng)
    mask = (rng.random((20, 30)) > 0.3).astype(np.float32)
    x, _ = prepare_masked_input(image, InputMapping(source="mask:a"), (None, 10, 15, 1), {"a": mask})
    np.testing.assert_array_equal(x[:, :, 0], _nearest(mask, 10, 15))
    x2, _ = prepare_masked_input(
        image, InputMapping(source="mask:a", scale="0..255"), (20, 30), {"a": mask}
    )
    np.testing.assert_array_equal(x2, mask * 255)


def test_feeding_errors_say_what_to_do(rng):
    image = _image(rng)
    mask = np.zeros((20, 30), np.float32)
    with pytest.raises(InputMappingError, match="Pick the mask to feed"):
        prepare_masked_input(image, InputMapping(source="mask:b"), (None, 8, 8, 1), {"a": mask})
    with pytest.raises(InputMappingError, match="1-channel"):
        prepare_masked_input(image, InputMapping(source="mask:a"), (None, 8, 8, 3), {"a": mask})
    with pytest.raises(InputMappingError, match="no room for a mask channel"):
        prepare_masked_input(image, InputMapping(source="image+mask:a"), (None, 8, 8, 1), {"a": mask})
    with pytest.raises(InputMappingError, match="but the image is"):
        prepare_masked_input(
            image, InputMapping(source="mask:a"), (None, 8, 8, 1), {"a": np.zeros((3, 3))}
        )


# -- ablation ---------------------------------------------------------------------------------


def test_ablation_masks():
    mask = np.zeros((40, 50), np.float32)
    mask[5:25, 10:30] = 1.0  # 20% coverage
    v = ablation_masks(mask, seed=3)
    assert list(v) == ["painted", "zeros", "ones", "random", "inverted"]
    np.testing.assert_array_equal(v["painted"], mask)
    assert not v["zeros"].any() and v["ones"].all()
    np.testing.assert_array_equal(v["inverted"], 1 - mask)
    assert abs(v["random"].mean() - 0.2) < 0.05 and set(np.unique(v["random"])) == {0.0, 1.0}
    np.testing.assert_array_equal(v["random"], ablation_masks(mask, seed=3)["random"])  # seeded
    assert not np.array_equal(v["random"], ablation_masks(mask, seed=4)["random"])


def test_ablation_rows():
    results = {
        "painted": {"p": np.array([0.1, 0.7, 0.2]), "seg": np.full((2, 2), 0.5)},
        "zeros": {"p": np.array([0.6, 0.3, 0.1]), "seg": np.full((2, 2), 0.25)},
    }
    rows = ablation_rows(results, labels=["a", "b", "c"], max_entries=2)
    assert [(r.output, r.entry) for r in rows] == [
        ("p", "b"), ("p", "c"), ("seg", "mean"), ("seg", "mean |Δ painted|")
    ]
    assert rows[0].values == {"painted": 0.7, "zeros": 0.3}
    assert rows[0].delta("zeros") == pytest.approx(-0.4)
    assert rows[3].values["zeros"] == pytest.approx(0.25)
