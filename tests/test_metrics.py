"""Scores equal numpy on hand-made masks; the threshold-free scorer equals binarising."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.metrics import (
    DICE_EPS,
    FN_COLOUR,
    FP_COLOUR,
    TP_COLOUR,
    ReferenceScorer,
    confusion_counts,
    error_overlay,
    mask_scores,
    reference_to_mask,
    resize_nearest,
)
from maskviewer.core.threshold import binarise


def _numpy_scores(pred, ref, eps=DICE_EPS):
    """The textbook formulas, written out with numpy."""
    a, b = pred.astype(bool).ravel(), ref.astype(bool).ravel()
    inter = np.sum(a & b)
    union = np.sum(a | b)
    return {
        "dice": (2 * inter + eps) / (a.sum() + b.sum() + eps),
        "iou": (inter + eps) / (union + eps),
        "precision": inter / a.sum() if a.sum() else np.nan,
        "recall": inter / b.sum() if b.sum() else np.nan,
        "accuracy": np.mean(a == b),
    }


def _same(a, b) -> bool:
    """Scores equal, NaN (undefined precision/recall) equal to NaN."""
    da, db = a.to_dict(), b.to_dict()
    return all(da[k] == db[k] or (np.isnan(da[k]) and np.isnan(db[k])) for k in da)


HAND_MADE = {
    "overlap": (np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]]), np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])),
    "both empty": (np.zeros((3, 4)), np.zeros((3, 4))),
    "empty prediction": (np.zeros((3, 3)), np.eye(3)),
    "empty reference": (np.eye(3), np.zeros((3, 3))),
    "all ones": (np.ones((4, 4)), np.ones((4, 4))),
    "all ones vs half": (np.ones((4, 4)), np.arange(16).reshape(4, 4) < 8),
    "disjoint": (np.eye(4), np.fliplr(np.eye(4)) * (1 - np.eye(4))),
}


@pytest.mark.parametrize("name", list(HAND_MADE))
@pytest.mark.parametrize("eps", [DICE_EPS, 1.0])
def test_scores_equal_numpy(name, eps):
    pred, ref = HAND_MADE[name]
    got = mask_scores(pred, ref, eps=eps)
    want = _numpy_scores(pred, ref, eps)
    for key, value in want.items():
        np.testing.assert_allclose(getattr(got, key), value, rtol=1e-12, equal_nan=True, err_msg=key)
    a, b = pred.astype(bool), ref.astype(bool)
    assert (got.tp, got.fp, got.fn, got.tn) == (
        np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)
    )


def test_edge_case_values():
    assert mask_scores(np.zeros((2, 2)), np.zeros((2, 2))).dice == 1.0  # nothing to find, nothing found
    s = mask_scores(np.zeros((2, 2)), np.ones((2, 2)))
    assert s.dice == pytest.approx(0.0, abs=1e-7) and np.isnan(s.precision) and s.recall == 0.0
    assert mask_scores(np.ones((2, 2)), np.ones((2, 2))).dice == 1.0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_counts(np.zeros((2, 2)), np.zeros((3, 3)))


def test_error_overlay_colours():
    pred = np.array([[1, 1], [0, 0]], dtype=bool)
    ref = np.array([[1, 0], [1, 0]], dtype=bool)
    rgba = error_overlay(pred, ref)
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == TP_COLOUR and tuple(rgba[0, 1]) == FP_COLOUR
    assert tuple(rgba[1, 0]) == FN_COLOUR and rgba[1, 1, 3] == 0


def test_reference_to_mask():
    np.testing.assert_array_equal(reference_to_mask(np.array([[0, 255], [1, 0]], np.uint8)), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(reference_to_mask(np.array([[0.2, 0.7]])), [[0, 1]])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255  # alpha alone is not foreground
    rgba[0, 1, 0] = 200
    np.testing.assert_array_equal(reference_to_mask(rgba), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(reference_to_mask(np.ones((1, 2, 2, 1), bool)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="not a mask image"):
        reference_to_mask(np.zeros((2, 2, 7)))


def test_resize_nearest_matches_skimage_and_keeps_values():
    from skimage.transform import resize

    rng = np.random.default_rng(2)
    m = rng.random((10, 14)) > 0.5
    out = resize_nearest(m, (20, 28))
    assert out.dtype == bool and out.shape == (20, 28)
    np.testing.assert_array_equal(out, resize(m.astype(float), (20, 28), order=0, anti_aliasing=False) > 0.5)
    np.testing.assert_array_equal(out[::2, ::2], m)  # 2x upscale repeats every pixel


def test_scorer_equals_binarising_at_every_threshold():
    rng = np.random.default_rng(4)
    x = rng.random((40, 30)).astype(np.float32)
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    ref = rng.random(x.shape) > 0.6
    scorer = ReferenceScorer(x, ref)
    for t in [0.5, 0.0, 1.0, -5, 5, *rng.random(10), float(x[5, 5])]:
        for invert in (False, True):
            got = scorer.scores(t, invert)
            want = mask_scores(binarise(x, t, invert), ref)
            assert _same(got, want), (t, invert)


def test_dice_curve_equals_one_binarisation_per_threshold():
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:48, :48]
    ref = (yy - 20) ** 2 + (xx - 26) ** 2 < 150
    x = np.clip(ref * 0.7 + rng.normal(0.15, 0.15, ref.shape), 0, 1).astype(np.float32)
    scorer = ReferenceScorer(x, ref)
    curve = scorer.dice_curve(n=200)
    brute = np.array([mask_scores(x > t, ref).dice for t in curve.thresholds])
    np.testing.assert_allclose(curve.dice, brute, rtol=1e-12)
    assert curve.best_dice == brute.max()
    assert curve.best_threshold == curve.thresholds[np.argmax(brute)]
    assert curve.thresholds[0] == x.min() and curve.thresholds[-1] == x.max()
    inv = scorer.dice_curve(curve.thresholds, invert=True)
    np.testing.assert_allclose(inv.dice, [mask_scores(x <= t, ref).dice for t in curve.thresholds], rtol=1e-12)


def test_scorer_on_constant_map_and_empty_reference():
    x = np.full((5, 5), 0.5, np.float32)
    ref = np.zeros((5, 5), bool)
    scorer = ReferenceScorer(x, ref)
    assert _same(scorer.scores(0.5), mask_scores(np.zeros((5, 5)), ref))
    assert _same(scorer.scores(0.4), mask_scores(np.ones((5, 5)), ref))
    curve = scorer.dice_curve(n=5)
    assert curve.best_dice == 1.0  # at t = 0.5 nothing is predicted, as nothing should be


def test_sample_on_frame():
    from maskviewer.core.metrics import sample_on_frame

    m = np.zeros((8, 8), bool)
    m[2:6, 4:8] = True
    # the whole image onto a map of the same size: unchanged; half size: every other pixel
    np.testing.assert_array_equal(sample_on_frame(m, (0, 0, 8, 8), (8, 8)), m)
    np.testing.assert_array_equal(sample_on_frame(m, (0, 0, 8, 8), (4, 4)), m[::2, ::2])
    # a frame larger than the image ("fit" padding): outside the image is background
    got = sample_on_frame(m, (-4, 0, 16, 8), (8, 16))
    np.testing.assert_array_equal(got[:, 4:12], m)
    assert not got[:, :4].any() and not got[:, 12:].any()
