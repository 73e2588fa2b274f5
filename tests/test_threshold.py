"""Thresholds equal scikit-image, binarisation equals numpy, the live preview equals both."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import exposure, filters

from maskviewer.core.threshold import (
    CODE_HIDDEN,
    METHODS,
    NonFinite,
    SortedValues,
    ThresholdCache,
    binarise,
)


def _maps():
    rng = np.random.default_rng(7)
    yield "uniform f32", rng.random((48, 64), dtype=np.float32)
    yield "normal f64", rng.normal(2.0, 3.0, (40, 40))
    # a sigmoid-like output: most pixels near 0, a blob near 1
    yy, xx = np.mgrid[:64, :64]
    blob = ((yy - 30) ** 2 + (xx - 25) ** 2 < 200).astype(np.float32)
    yield "sigmoid-like", np.clip(blob * 0.9 + rng.normal(0.05, 0.08, blob.shape), 0, 1).astype(np.float32)
    yield "bimodal", np.concatenate([rng.normal(0.2, 0.05, 900), rng.normal(0.7, 0.1, 700)]).reshape(40, 40).astype(np.float32)
    yield "two values", (rng.random((30, 30)) > 0.4).astype(np.float32)
    yield "saturated", np.where(rng.random((32, 32)) > 0.5, 1.0, 0.0).astype(np.float32) * rng.random((32, 32), dtype=np.float32)


MAPS = list(_maps())


@pytest.mark.parametrize("name,x", MAPS, ids=[m[0] for m in MAPS])
def test_histogram_equals_skimage(name, x):
    cache = ThresholdCache(x)
    hist, centers = exposure.histogram(x, 256, source_range="image")
    np.testing.assert_array_equal(cache.hist, hist)
    np.testing.assert_array_equal(cache.centers, centers)
    edges = np.histogram(x, 256)[1]
    np.testing.assert_array_equal(cache.edges, edges)


@pytest.mark.parametrize("name,x", MAPS, ids=[m[0] for m in MAPS])
@pytest.mark.parametrize("method", METHODS)
def test_methods_equal_skimage(name, x, method):
    expected = getattr(filters, f"threshold_{method}")(x)
    assert ThresholdCache(x).threshold(method) == float(expected)


@pytest.mark.parametrize("method", METHODS)
def test_methods_skip_non_finite_values(method):
    rng = np.random.default_rng(3)
    x = rng.random((40, 50)).astype(np.float32)
    bad = x.copy()
    bad[0, :5] = np.nan
    bad[1, :3] = np.inf
    bad[2, :2] = -np.inf
    cache = ThresholdCache(bad)
    assert cache.counts.nonfinite == NonFinite(nan=5, posinf=3, neginf=2)
    finite = bad[np.isfinite(bad)]
    np.testing.assert_array_equal(cache.hist, exposure.histogram(finite, 256)[0])
    assert cache.hist.sum() == bad.size - 10
    expected = getattr(filters, f"threshold_{method}")(finite)
    assert cache.threshold(method) == float(expected)
    assert "5 NaN" in cache.counts.nonfinite.describe()


def test_constant_map_gives_its_value():
    x = np.full((12, 9), 0.25, dtype=np.float32)
    cache = ThresholdCache(x)
    assert cache.constant
    for method in METHODS:
        assert cache.threshold(method) == 0.25
    # the value agrees with what scikit-image's Otsu says for a constant image
    assert cache.threshold("otsu") == float(filters.threshold_otsu(x))
    # and makes everything background
    assert not binarise(x, cache.threshold("otsu")).any()


def test_no_finite_values_is_explained():
    cache = ThresholdCache(np.full((4, 4), np.nan, dtype=np.float32))
    assert cache.hist.sum() == 0
    with pytest.raises(ValueError, match="no finite values"):
        cache.threshold("otsu")


def test_unknown_method():
    with pytest.raises(ValueError, match="Unknown threshold method"):
        ThresholdCache(np.eye(3)).threshold("magic")


def test_binarise_equals_numpy_on_hand_made_arrays():
    x = np.array([[0.0, 0.2, 0.5], [0.51, 1.0, np.nan], [np.inf, -np.inf, 0.5]], dtype=np.float32)
    got = binarise(x, 0.5)
    want = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, x > 0.5)
    inv = binarise(x, 0.5, invert=True)
    np.testing.assert_array_equal(inv, np.array([[1, 1, 1], [0, 0, 0], [0, 1, 1]], dtype=bool))
    # inverted is the complement except for NaN, which is background both ways
    np.testing.assert_array_equal(inv | got, ~np.isnan(x))
    assert not binarise(np.zeros((3, 3)), 0.5).any()  # empty
    assert binarise(np.ones((3, 3)), 0.5).all()  # all ones


def test_sorted_counts_equal_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=500).astype(np.float32)
    x[:7] = np.nan
    x[7:10] = np.inf
    x[10:12] = -np.inf
    sv = SortedValues(x)
    ts = np.concatenate([rng.normal(size=50), [x[20], x[30], -np.inf, np.inf]])
    for invert in (False, True):
        got = sv.count_positive(ts, invert)
        want = [int(binarise(x, t, invert).sum()) for t in ts]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,x", MAPS + [("with nonfinite", None)], ids=[m[0] for m in MAPS] + ["nonfinite"])
def test_preview_equals_exact_binarisation(name, x):
    """The LUT preview on the cached codes shows exactly ``binarise`` at every threshold."""
    rng = np.random.default_rng(11)
    if x is None:
        x = rng.random((30, 40)).astype(np.float32)
        x[3, 3], x[4, 4], x[5, 5] = np.nan, np.inf, -np.inf
    cache = ThresholdCache(x)
    ref = rng.random(x.shape) > 0.5
    inside, outside = cache.add_layer(ref), cache.add_layer(~ref)
    finite = x[np.isfinite(x)]
    thresholds = [0.5, cache.lo - 1, cache.lo, cache.hi, cache.hi + 1, *rng.choice(finite, 8), *rng.uniform(cache.lo, cache.hi, 8)]
    thresholds += [float(filters.threshold_otsu(finite))]
    for t in thresholds:
        above = cache.set_threshold(t)
        for invert in (False, True):
            lut = cache.binary_lut(t, invert, on=(255, 255, 255, 255), off=(0, 0, 0, 255), above=above)
            want = binarise(x, t, invert)
            np.testing.assert_array_equal(lut[cache.codes][..., 0] == 255, want, err_msg=f"t={t}")
            # the layers show the same pixels, and nothing outside their mask
            np.testing.assert_array_equal(lut[inside][..., 0] == 255, want & ref)
            np.testing.assert_array_equal(lut[outside][..., 0] == 255, want & ~ref)
            assert np.all((inside == CODE_HIDDEN) == ~ref)


def test_two_dimensional_maps_only():
    with pytest.raises(ValueError, match="2-D"):
        ThresholdCache(np.zeros((2, 3, 4)))


def test_thresholds_between_float32_values_are_exact():
    """0.1 is not a float32: the pixel equal to float32(0.1) lies above 0.1 and counts."""
    x = np.array([[np.float32(0.1), 0.05], [0.2, np.nextafter(np.float32(0.1), np.float32(0))]], np.float32)
    assert float(x[0, 0]) > 0.1
    want = x.astype(np.float64) > 0.1
    np.testing.assert_array_equal(binarise(x, 0.1), want)
    np.testing.assert_array_equal(binarise(x, 0.1, invert=True), ~want)
    assert SortedValues(x).count_positive(0.1) == want.sum()
    cache = ThresholdCache(x)
    above = cache.set_threshold(0.1)
    lut = cache.binary_lut(0.1, False, (1, 1, 1, 1), (0, 0, 0, 0), above=above)
    np.testing.assert_array_equal(lut[cache.codes][..., 0] == 1, want)


def test_display_bins_stay_small_even_with_saturated_values():
    """Saturated outputs (many exact 0.0 and 1.0) get bins of their own, never split."""
    rng = np.random.default_rng(8)
    x = rng.random((200, 200)).astype(np.float32)
    x[:60] = 0.0
    x[60:100] = 1.0
    cache = ThresholdCache(x)
    assert cache.codes.max() < 251
    zero_bin, one_bin = cache.codes[0, 0], cache.codes[70, 0]
    assert np.all(cache.codes[:60] == zero_bin) and np.count_nonzero(cache.codes == zero_bin) == 60 * 200
    assert np.count_nonzero(cache.codes == one_bin) == 40 * 200
    # any bin that can straddle a threshold (more than one value) holds a small share
    counts = np.bincount(cache.codes.ravel(), minlength=256)
    for code in np.flatnonzero(counts):
        vals = x[cache.codes == code]
        if vals.min() != vals.max():
            assert counts[code] <= x.size / 40


def test_continuous_lut_follows_values():
    x = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    cache = ThresholdCache(x)
    cache.set_threshold(0.5)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    shown = cache.continuous_lut(grey)[cache.codes][..., 0].astype(float)
    assert np.all(np.diff(shown.ravel()) >= 0)  # monotone in the value
    np.testing.assert_allclose(shown / 255, x, atol=0.02)
