"""Patch geometry, extraction, preprocessing, combination, maps and occlusion against TF / numpy / Keras."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, prepare_input
from maskviewer.core.patches import (
    PatchSettingsError,
    PatchSpec,
    combine,
    coverage_map,
    extract_patches,
    make_grid,
    occlude,
    parse_pair,
    prepare_patches,
    preset_corners,
    preset_grid,
    preset_sliding,
    validate,
)

# (H, W, C, size, stride, rate, padding): VALID and SAME, several strides, rates, odd sizes, 1/3/4 channels
CASES = [
    (28, 28, 1, (18, 18), (10, 10), (1, 1), "VALID"),
    (28, 28, 1, (18, 18), (10, 10), (1, 1), "SAME"),
    (17, 23, 3, (5, 7), (3, 4), (1, 1), "VALID"),
    (17, 23, 3, (5, 7), (3, 4), (1, 1), "SAME"),
    (19, 15, 4, (3, 3), (2, 5), (2, 3), "VALID"),
    (19, 15, 4, (3, 3), (2, 5), (2, 3), "SAME"),
    (10, 7, 1, (3, 2), (3, 3), (2, 2), "SAME"),
    (9, 9, 3, (4, 4), (3, 3), (1, 1), "SAME"),
    (5, 5, 1, (2, 2), (1, 1), (3, 4), "SAME"),
    (12, 12, 3, (1, 1), (1, 1), (1, 1), "VALID"),
    (13, 11, 4, (13, 11), (1, 1), (1, 1), "VALID"),
    (13, 11, 1, (6, 5), (7, 9), (2, 2), "SAME"),
]


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def _tf_patches(tf, image, spec):
    kh, kw = spec.size
    out = tf.image.extract_patches(
        image[None],
        sizes=[1, kh, kw, 1],
        strides=[1, *spec.stride, 1],
        rates=[1, *spec.rate, 1],
        padding=spec.padding,
    ).numpy()
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}-k{c[3]}-s{c[4]}-r{c[5]}-{c[6]}")
def test_extract_equals_tf(tf, case):
    h, w, c, size, stride, rate, padding = case
    spec = PatchSpec(size, stride, rate, padding)
    image = np.random.default_rng(h * w + c).integers(1, 256, (h, w, c)).astype(np.float32)
    grid = make_grid(spec, h, w)
    expected = _tf_patches(tf, image, spec)
    assert (grid.rows, grid.cols) == expected.shape[1:3]
    got = extract_patches(image, grid)
    np.testing.assert_array_equal(got, expected.reshape(-1, size[0], size[1], c))
    # a subset in any order, and uint8 input keep their dtype and values
    sub = [grid.count - 1, 0]
    u8 = image.astype(np.uint8)
    got8 = extract_patches(u8, grid, sub)
    assert got8.dtype == np.uint8
    np.testing.assert_array_equal(got8, got[sub].astype(np.uint8))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}-k{c[3]}-s{c[4]}-r{c[5]}-{c[6]}")
def test_rects_match_sampled_pixels(tf, case):
    """Each rectangle spans the patch's sampled pixels, as TF samples them (coordinates image)."""
    h, w, _c, size, stride, rate, padding = case
    spec = PatchSpec(size, stride, rate, padding)
    grid = make_grid(spec, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    coords = np.stack([yy + 1, xx + 1], axis=-1).astype(np.float32)  # 0 marks the padding
    sampled = _tf_patches(tf, coords, spec).reshape(grid.count, size[0], size[1], 2)
    rects = grid.rects()
    eh, ew = spec.span
    for n in range(grid.count):
        x, y, rw, rh = rects[n]
        assert (rw, rh) == (ew, eh)
        # the patch's sampled pixels are the lattice from the rectangle's corner every `rate`
        # pixels to its far corner; TF gives the same ones (those in the padding are zeros)
        lat_y = y + np.arange(size[0]) * rate[0]
        lat_x = x + np.arange(size[1]) * rate[1]
        assert lat_y[-1] == y + rh - 1 and lat_x[-1] == x + rw - 1
        inside = (lat_y[:, None] >= 0) & (lat_y[:, None] < h) & (lat_x[None] >= 0) & (lat_x[None] < w)
        want = np.stack(np.broadcast_arrays(lat_y[:, None] + 1, lat_x[None] + 1), axis=-1)
        want = np.where(inside[..., None], want, 0)
        np.testing.assert_array_equal(sampled[n], want)
        assert grid.origin(n) == (y, x)
    if padding == "VALID":  # every rectangle lies inside the image
        assert rects[:, 0].min() >= 0 and (rects[:, 0] + rects[:, 2]).max() <= w
        assert rects[:, 1].min() >= 0 and (rects[:, 1] + rects[:, 3]).max() <= h


def test_validation_messages():
    with pytest.raises(PatchSettingsError, match="larger than the image"):
        validate(PatchSpec((30, 10), (1, 1)), 28, 28)
    with pytest.raises(PatchSettingsError, match="rate"):
        validate(PatchSpec((10, 10), (1, 1), (4, 1)), 28, 28)  # spans 37 rows
    for bad in (PatchSpec((0, 5)), PatchSpec((5, 5), (0, 1)), PatchSpec((5, 5), (2, -3)), PatchSpec((5, 5), (1, 1), (0, 1))):
        with pytest.raises(PatchSettingsError, match="at least 1"):
            validate(bad, 28, 28)
    with pytest.raises(PatchSettingsError, match="VALID or SAME"):
        validate(PatchSpec(padding="same-ish"), 28, 28)
    assert parse_pair("18", "size") == (18, 18)
    assert parse_pair(" 18, 20 ", "size") == (18, 20)
    assert parse_pair("3x4", "size") == (3, 4)
    with pytest.raises(PatchSettingsError, match="whole numbers"):
        parse_pair("abc", "Patch size")
    with pytest.raises(PatchSettingsError, match="whole numbers"):
        parse_pair("1,2,3", "Patch size")


def test_presets(tf):
    corners = preset_corners(28, 28, 18)
    assert corners == PatchSpec((18, 18), (10, 10), (1, 1), "VALID")
    grid = make_grid(corners, 28, 28)
    assert grid.count == 4
    assert [grid.origin(i) for i in range(4)] == [(0, 0), (0, 10), (10, 0), (10, 10)]
    # non-square: still the four corners
    g = make_grid(preset_corners(30, 40, 12), 30, 40)
    assert [g.origin(i) for i in range(4)] == [(0, 0), (0, 28), (18, 0), (18, 28)]
    for rows, cols, h, w in ((3, 4, 28, 28), (2, 5, 31, 47), (1, 1, 9, 9), (7, 3, 28, 28)):
        spec = preset_grid(h, w, rows, cols)
        g = make_grid(spec, h, w)
        assert (g.rows, g.cols) == (rows, cols)
        # non-overlapping: every covered pixel is covered once
        assert np.nanmax(coverage_map(g, np.ones(g.count))) == 1
        img = np.zeros((h, w, 1), np.float32)
        assert _tf_patches(tf, img, spec).shape[1:3] == (rows, cols)
    s = preset_sliding(8, 4)
    assert make_grid(s, 28, 28).count == 6 * 6
    with pytest.raises(PatchSettingsError):
        preset_corners(10, 10, 12)
    with pytest.raises(PatchSettingsError):
        preset_grid(5, 5, 6, 1)


@pytest.mark.parametrize(
    "mapping",
    [
        InputMapping(resize="stretch", scale="0..1"),
        InputMapping(resize="fit", scale="-1..1"),
        InputMapping(resize="crop", scale="mean/std"),
        InputMapping(resize="stretch", scale="0..255"),
        InputMapping(resize="stretch", scale="raw"),
    ],
    ids=lambda m: f"{m.resize}-{m.scale}",
)
@pytest.mark.parametrize(
    "channels,shape",
    [(1, (None, 28, 28, 1)), (3, (None, 20, 14, 3)), (4, (None, 16, 16, 1)), (1, (None, 12, 12, 3)), (3, (28, 28))],
)
def test_prepare_patches_equals_prepare_input(mapping, channels, shape):
    image = np.random.default_rng(channels).integers(0, 256, (26, 21, channels), dtype=np.uint8)
    grid = make_grid(PatchSpec((9, 7), (4, 5), (1, 2), "SAME"), 26, 21)
    patches = extract_patches(image, grid)
    got = prepare_patches(patches, 255.0, mapping, shape)
    if mapping.scale == "raw":  # raw: the stored values, resized (prepare_input's own path)
        ref, vmax = InputMapping(resize=mapping.resize, scale="0..1"), 1.0
    else:
        ref, vmax = mapping, 255.0
    want = np.stack(
        [prepare_input(ImageData(p.astype(np.float32), value_max=vmax), ref, shape)[0] for p in patches]
    )
    if mapping.scale != "raw":  # the uint8 patch itself, as the app's ImageData holds it
        np.testing.assert_array_equal(
            want[0], prepare_input(ImageData(patches[0], value_max=255.0), mapping, shape)[0]
        )
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_prepare_patches_in_chunks_equals_one_pass(monkeypatch):
    from maskviewer.core import patches as patches_mod

    image = np.random.default_rng(2).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    grid = make_grid(PatchSpec((10, 10), (3, 3)), 30, 30)
    patches = extract_patches(image, grid)
    mapping = InputMapping(resize="crop", scale="mean/std")
    whole = prepare_patches(patches, 255.0, mapping, (None, 20, 14, 3))
    monkeypatch.setattr(patches_mod, "PREPARE_CHUNK_BYTES", 3 * 4 * 20 * 14 * 3)  # 3 per chunk
    chunked = prepare_patches(patches, 255.0, mapping, (None, 20, 14, 3))
    np.testing.assert_array_equal(chunked, whole)
    want = prepare_input(ImageData(patches[-1]), mapping, (None, 20, 14, 3))[0]
    np.testing.assert_allclose(chunked[-1], want, rtol=0, atol=1e-6)


def test_prepare_patches_none_resize_and_free_size():
    image = np.random.default_rng(1).random((20, 20, 3)).astype(np.float32)
    grid = make_grid(PatchSpec((8, 8), (4, 4)), 20, 20)
    patches = extract_patches(image, grid)
    m = InputMapping(resize="none", scale="0..1")
    got = prepare_patches(patches, 1.0, m, (None, 8, 8, 3))
    np.testing.assert_array_equal(got, patches)
    got = prepare_patches(patches, 1.0, InputMapping(), (None, None, None, 3))  # free size
    np.testing.assert_array_equal(got, patches)


def test_combine_equals_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(9, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mean = combine(p, "mean")
    np.testing.assert_allclose(mean.scores, p.mean(0))
    assert mean.label == int(np.argmax(p.mean(0))) and mean.probability == pytest.approx(p.mean(0).max())
    mx = combine(p, "max")
    np.testing.assert_allclose(mx.scores, p.max(0))
    assert mx.label == int(np.argmax(p.max(0)))
    vote = combine(p, "vote")
    counts = np.array([(p.argmax(1) == k).sum() for k in range(5)])
    np.testing.assert_allclose(vote.scores, counts / 9)
    assert vote.label == int(np.argmax(counts))
    geo = combine(p, "geometric")
    g = np.prod(p, axis=0) ** (1 / 9)
    np.testing.assert_allclose(geo.scores, g / g.sum())
    assert geo.label == int(np.argmax(g))
    with pytest.raises(PatchSettingsError):
        combine(np.zeros((0, 3)), "mean")


def test_coverage_map_equals_brute_force():
    for spec, h, w in (
        (PatchSpec((5, 4), (3, 2), (1, 2), "SAME"), 14, 11),
        (PatchSpec((18, 18), (10, 10)), 28, 28),
        (PatchSpec((3, 3), (6, 6)), 20, 20),  # gaps: uncovered pixels are NaN
    ):
        grid = make_grid(spec, h, w)
        values = np.random.default_rng(0).random(grid.count)
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for n, (x, y, rw, rh) in enumerate(grid.rects()):
            ys, xs = slice(max(y, 0), max(y + rh, 0)), slice(max(x, 0), max(x + rw, 0))
            total[ys, xs] += values[n]
            count[ys, xs] += 1
        with np.errstate(invalid="ignore"):
            want = total / count
        got = coverage_map(grid, values)
        np.testing.assert_allclose(got, want, equal_nan=True)
        # the display version samples the same map
        small = coverage_map(grid, values, max_side=7)
        assert max(small.shape) == 7


def test_occlude_greys_the_rectangle_only():
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    grid = make_grid(PatchSpec((4, 4), (3, 5), (1, 1), "SAME"), 10, 12)
    for n in range(grid.count):
        out = occlude(image, grid, n, 128)
        x, y, rw, rh = grid.rects()[n]
        mask = np.zeros((10, 12), bool)
        mask[max(y, 0) : y + rh, max(x, 0) : x + rw] = True
        assert np.all(out[mask] == 128)
        np.testing.assert_array_equal(out[~mask], image[~mask])


# ---------------------------------------------------------------------------------------------
# Running patches through a model


@pytest.fixture(scope="module")
def host(keras_mod):
    from maskviewer.inference.loading import describe_model
    from maskviewer.inference.runner import ModelHost
    from tests import model_zoo

    model = model_zoo.rgb_classifier()
    h = ModelHost()
    h.loaded = describe_model(model, "rgb.keras")
    return h


def _model_probs(host, x):
    return np.asarray(host.model(x, training=False))


def test_run_patches_equals_model_on_each_patch(host):
    from maskviewer.inference.patch_runner import check_patch_fits, plan_feed, run_patches

    image = ImageData(np.random.default_rng(5).integers(0, 256, (40, 36, 3), dtype=np.uint8))
    grid = make_grid(PatchSpec((18, 14), (7, 9), (1, 2), "SAME"), 40, 36)
    mapping = InputMapping(resize="stretch", scale="-1..1")
    feed = plan_feed(host.info, {"image": mapping})
    check_patch_fits(image, grid, feed)
    seen = []
    run = run_patches(host.predict, image, grid, feed, batch_size=7, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (grid.count, grid.count) and len(seen) == -(-grid.count // 7)
    x = np.stack(
        [prepare_input(ImageData(p), mapping, (None, 32, 32, 3))[0] for p in extract_patches(image.array, grid)]
    )
    want = _model_probs(host, x)
    (got,) = run.outputs.values()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # larger batches start with a small one (prepared alone); same numbers, all patches once
    sizes = []

    def counting(arrays):
        sizes.append(len(arrays["image"]))
        return host.predict(arrays)

    again = run_patches(counting, image, grid, feed, batch_size=16)
    assert sizes == [2, 14, grid.count - 16]
    np.testing.assert_allclose(again.outputs["probs"], want, rtol=1e-5, atol=1e-6)
    # the combination of what the app ran equals numpy on the model's own numbers
    np.testing.assert_allclose(combine(got, "mean").scores, want.mean(0), rtol=1e-5, atol=1e-6)


def test_occlusion_equals_model_on_occluded_images(host):
    from maskviewer.core.patches import grey_value
    from maskviewer.inference.patch_runner import plan_feed, run_occlusion

    image = ImageData(np.random.default_rng(6).integers(0, 256, (30, 30, 3), dtype=np.uint8))
    grid = make_grid(preset_grid(30, 30, 3, 2), 30, 30)
    mapping = InputMapping(resize="fit", scale="0..1")
    feed = plan_feed(host.info, {"image": mapping})
    fill = grey_value(image)
    assert fill == 128.0
    run = run_occlusion(host.predict, image, grid, feed, fill, batch_size=4)
    base = _model_probs(host, prepare_input(image, mapping, (None, 32, 32, 3))[0][None])[0]
    np.testing.assert_allclose(run.base["probs"], base, rtol=1e-5, atol=1e-6)
    for n in range(grid.count):
        occluded = image.array.copy()
        x, y, w, h = grid.rects()[n]
        occluded[y : y + h, x : x + w] = 128
        want = _model_probs(host, prepare_input(ImageData(occluded), mapping, (None, 32, 32, 3))[0][None])[0]
        np.testing.assert_allclose(run.occluded["probs"][n], want, rtol=1e-5, atol=1e-6)
    drop = run.base["probs"][None] - run.occluded["probs"]
    assert drop.shape == (grid.count, 5)


def test_models_that_cannot_take_a_patch(keras_mod, host):
    from maskviewer.inference.loading import describe_model
    from maskviewer.inference.patch_runner import check_patch_fits, plan_feed

    keras = keras_mod
    vec = keras.Input((5,), name="meta")
    img = keras.Input((8, 8, 1), name="img")
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(img), vec])
    model = keras.Model([img, vec], keras.layers.Dense(2)(merged))
    info = describe_model(model, "two.keras").info
    with pytest.raises(PatchSettingsError, match="'meta'.*not an image"):
        plan_feed(info, {})
    # a fixed-size input with "no resize": the patch must have the input's size
    image = ImageData(np.zeros((40, 40, 3), np.uint8))
    grid = make_grid(PatchSpec((18, 18), (10, 10)), 40, 40)
    feed = plan_feed(host.info, {"image": InputMapping(resize="none")})
    with pytest.raises(PatchSettingsError, match="18×18 patch cannot feed.*32×32 pixels and the patch is 18×18"):
        check_patch_fits(image, grid, feed)
    # channels with no conversion
    two = keras.Input((8, 8, 2), name="two")
    info2 = describe_model(keras.Model(two, keras.layers.Flatten()(two)), "c2.keras").info
    grid2 = make_grid(PatchSpec((8, 8), (8, 8)), 16, 16)
    feed2 = plan_feed(info2, {"two": InputMapping()})
    with pytest.raises(PatchSettingsError, match="2 channel.*image has 3"):
        check_patch_fits(ImageData(np.zeros((16, 16, 3), np.uint8)), grid2, feed2)
