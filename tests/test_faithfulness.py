"""Deletion / insertion curves and the map similarity measures, against known answers and
independent references (scipy's Spearman, scikit-image's blur and SSIM)."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core import faithfulness as fa
from maskviewer.core.similarity import rank_average, spearman, ssim

H = W = 16
REGION = (slice(4, 8), slice(2, 12))  # 40 of 256 pixels


def region_mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[REGION] = True
    return m


def region_mean(batch: np.ndarray) -> np.ndarray:
    """A 'model' whose score is the mean of the region (channels averaged)."""
    return batch[:, REGION[0], REGION[1]].reshape(batch.shape[0], -1).mean(axis=1)


def test_deletion_of_the_region_first_follows_the_known_curve():
    x = np.ones((H, W, 1), np.float32)
    sal = region_mask().astype(np.float32) + np.linspace(0, 0.5, H * W).reshape(H, W)  # region first
    c = fa.curve(region_mean, x, sal, "deletion", "black", steps=32)
    counts = fa.step_counts(H * W, 32)
    r = int(region_mask().sum())
    expected = np.clip(1.0 - counts / r, 0.0, 1.0)  # every removed pixel until r is a region pixel
    np.testing.assert_allclose(c.scores, expected, atol=1e-6)
    np.testing.assert_allclose(c.fractions, counts / (H * W))
    assert c.auc == pytest.approx(np.trapezoid(expected, counts / (H * W)))


def test_a_map_on_the_region_beats_random_and_inverted_maps():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (H, W, 3)).astype(np.float32)
    good = region_mask().astype(np.float32) * 0.5 + rng.uniform(0, 0.1, (H, W))
    coarse = good.reshape(4, 4, 4, 4).mean(axis=(1, 3))  # a 4×4 layer grid, upsampled for the order
    aucs = {}
    for name, sal in (("good", good), ("coarse", coarse), ("inverted", -good), ("random", rng.random((H, W)))):
        aucs[name] = {m: fa.curve(region_mean, x, sal, m, "black", steps=24).auc for m in fa.MODES}
    for name in ("good", "coarse"):
        assert aucs[name]["deletion"] < aucs["random"]["deletion"] < aucs["inverted"]["deletion"]
    # insertion from black: the region's own pixels restore its mean first
    assert aucs["good"]["insertion"] > aucs["random"]["insertion"] > aucs["inverted"]["insertion"]


def test_step_batches_are_bounded_and_equal_a_direct_construction():
    rng = np.random.default_rng(1)
    x = rng.random((6, 5, 2)).astype(np.float32)
    base = fa.baseline_input(x, "mean")
    ranks = fa.pixel_ranks(rng.random((6, 5)), 6, 5)
    counts = fa.step_counts(30, 7)
    for mode in fa.MODES:
        batches = list(fa.step_batches(x, base, ranks, counts, mode, batch=3))
        assert [b.shape[0] for b in batches] == [3, 3, 2]
        steps = np.concatenate(batches)
        for k, n in enumerate(counts):
            want = x.copy() if mode == "deletion" else base.copy()
            for flat in np.argsort(ranks.reshape(-1))[:n]:
                i, j = divmod(int(flat), 5)
                want[i, j] = base[i, j] if mode == "deletion" else x[i, j]
            np.testing.assert_array_equal(steps[k], want)


def test_pixel_ranks_put_the_largest_first_and_keep_reading_order_on_ties():
    sal = np.array([[0.0, 2.0], [2.0, np.nan]])
    np.testing.assert_array_equal(fa.pixel_ranks(sal, 2, 2), [[2, 0], [1, 3]])


def test_baselines():
    rng = np.random.default_rng(2)
    x = rng.random((12, 9, 3)).astype(np.float32)
    assert not fa.baseline_input(x, "black").any()
    np.testing.assert_allclose(fa.baseline_input(x, "mean")[3, 4], x.mean(axis=(0, 1)), rtol=1e-6)
    from skimage.filters import gaussian

    ref = gaussian(x, sigma=1.5, mode="mirror", truncate=3.0, channel_axis=-1, preserve_range=True)
    np.testing.assert_allclose(fa.baseline_input(x, "blur", 1.5), ref, atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        fa.baseline_input(x, "grey")


def test_rank_average_and_spearman_equal_scipy():
    from scipy.stats import rankdata, spearmanr

    rng = np.random.default_rng(3)
    for shape, ties in (((7, 7), False), ((10, 12), True), ((30,), True)):
        a = rng.integers(0, 5, shape) if ties else rng.random(shape)
        b = a + rng.normal(0, 2.0, shape) if not ties else rng.integers(0, 4, shape)
        np.testing.assert_allclose(rank_average(a.reshape(-1)), rankdata(a.reshape(-1)))
        assert spearman(a, b) == pytest.approx(spearmanr(a.reshape(-1), b.reshape(-1)).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones((3, 3)), rng.random((3, 3))))
    assert spearman(np.arange(9.0), np.arange(9.0) ** 3) == pytest.approx(1.0)


def test_ssim_is_scikit_images_on_the_scaled_maps():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(4)
    a, b = rng.random((9, 9)), rng.random((9, 9))
    assert ssim(a, a * 5 + 3) == pytest.approx(1.0)
    unit = lambda v: (v - v.min()) / (v.max() - v.min())  # noqa: E731
    assert ssim(a, b) == pytest.approx(structural_similarity(unit(a), unit(b), data_range=1.0, win_size=7))
    assert ssim(a[:5, :5], b[:5, :5]) == pytest.approx(
        structural_similarity(unit(a[:5, :5]), unit(b[:5, :5]), data_range=1.0, win_size=5))
    assert np.isnan(ssim(a[:2, :2], b[:2, :2]))


def test_model_scores_the_steps_in_batches(keras_mod):
    """The inference side: a Keras model whose class-1 output is the region's mean."""
    keras = keras_mod
    from maskviewer.inference.faithfulness import ClassScore, faithfulness_curves

    inp = keras.Input((H, W, 1), name="img")
    out = keras.layers.Dense(2, use_bias=False, name="score")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    w = np.zeros((H * W, 2), np.float32)
    w[:, 1] = region_mask().reshape(-1) / region_mask().sum()
    model.get_layer("score").set_weights([w])
    x = np.random.default_rng(5).uniform(0.5, 1, (1, H, W, 1)).astype(np.float32)
    assert ClassScore(model)(x, 1)[0] == pytest.approx(region_mean(x)[0], rel=2e-3)
    sal = region_mask().astype(np.float32)
    calls = []
    got = faithfulness_curves(model, lambda d: d["img"], {"img": x}, "img", sal, 1, steps=20, batch=8,
                              progress=lambda d, t: calls.append((d, t)))
    for mode in fa.MODES:
        want = fa.curve(region_mean, x[0], sal, mode, steps=20)
        # (a GPU's TF32 matrix products are good to about 1e-3)
        np.testing.assert_allclose(got[mode].scores, want.scores, rtol=2e-3, atol=1e-5)
    assert calls[-1] == (42, 42) and len(calls) == 6  # 21 steps per curve, batches of 8
