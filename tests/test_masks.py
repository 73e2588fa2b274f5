"""Mask painting, fill, shapes and the byte-capped undo history, against numpy/scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import ellipse as sk_ellipse
from skimage.draw import line as sk_line
from skimage.draw import polygon as sk_polygon
from skimage.segmentation import flood

from maskviewer.core.masks import (
    Brush,
    History,
    MaskSet,
    Recorder,
    dab,
    dab_kernel,
    flood_region,
    runs_to_mask,
    stroke_points,
)


def _disk(shape, cx, cy, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _segment_distance(shape, p0, p1):
    """Distance of every pixel centre to the segment p0-p1 (x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))


# -- brush ------------------------------------------------------------------------------------


def test_hard_dab_is_the_disk_of_its_radius():
    data = np.zeros((40, 50), np.float32)
    box = dab(data, 20, 15, Brush(radius=6.0))
    np.testing.assert_array_equal(data, _disk(data.shape, 20, 15, 6.0).astype(np.float32))
    assert box == (9, 22, 14, 27)


def test_soft_dab_profile_and_intensity():
    r, h = 8.0, 0.5
    k = dab_kernel(r, h)
    c = k.shape[0] // 2
    yy, xx = np.mgrid[-c : c + 1, -c : c + 1]
    d = np.hypot(yy, xx)
    assert np.all(k[d <= r * h] == 1.0)
    assert np.all(k[d > r] == 0.0)
    ring = (d > r * h) & (d < r)
    assert np.all((k[ring] > 0) & (k[ring] < 1))
    # monotone fall with distance along a row
    row = k[c, c:]
    assert np.all(np.diff(row) <= 0)
    data = np.zeros((30, 30), np.float32)
    dab(data, 15, 15, Brush(r, h, intensity=0.4))
    np.testing.assert_allclose(data[15 - c : 15 + c + 1, 15 - c : 15 + c + 1], k * 0.4, rtol=1e-6)


def test_brush_takes_the_max_and_repeated_dabs_do_not_accumulate():
    data = np.full((20, 20), 0.3, np.float32)
    b = Brush(4.0, 0.0, 0.5)
    dab(data, 10, 10, b)
    once = data.copy()
    for _ in range(5):
        dab(data, 10, 10, b)
    np.testing.assert_array_equal(data, once)
    expected = np.maximum(0.3, np.zeros((20, 20), np.float32))
    k = dab_kernel(4.0, 0.0) * np.float32(0.5)
    expected[6:15, 6:15] = np.maximum(expected[6:15, 6:15], k)
    np.testing.assert_array_equal(data, expected)


def test_eraser_lowers_toward_zero():
    data = np.ones((20, 20), np.float32)
    dab(data, 10, 10, Brush(3.0, 1.0, 1.0), erase=True)
    assert np.all(data[_disk(data.shape, 10, 10, 3)] == 0)
    assert np.all(data[~_disk(data.shape, 10, 10, 3)] == 1)
    half = np.full((20, 20), 0.8, np.float32)
    dab(half, 10, 10, Brush(3.0, 1.0, 0.5), erase=True)
    assert half[10, 10] == pytest.approx(0.5)  # min(0.8, 1 - 0.5)
    dab(half, 10, 10, Brush(3.0, 1.0, 0.5), erase=True)
    assert half[10, 10] == pytest.approx(0.5)  # no accumulation


def test_dab_at_the_border_is_clipped():
    data = np.zeros((10, 10), np.float32)
    box = dab(data, 0, 9, Brush(3.0))
    assert box == (6, 10, 0, 4)
    np.testing.assert_array_equal(data, _disk(data.shape, 0, 9, 3).astype(np.float32))
    assert dab(data, -20, -20, Brush(3.0)) is None


@pytest.mark.parametrize("radius", [0.5, 1.0, 3.0, 12.0])
def test_fast_stroke_leaves_no_gaps(radius):
    """Two far-apart mouse events (a fast mouse) still paint a continuous band."""
    ms = MaskSet(120, 160)
    ms.add("m")
    stroke = ms.begin_stroke(Brush(radius))
    p0, p1 = (5.0, 7.0), (150.0, 111.0)
    ms.stroke_to(stroke, *p0)
    ms.stroke_to(stroke, *p1)
    ms.end_stroke(stroke)
    data = ms.active.data
    rr, cc = sk_line(7, 5, 111, 150)
    assert np.all(data[rr, cc] == 1.0), "a pixel on the path was not painted"
    # every pixel well inside the band is painted: dabs overlap (spacing <= radius / 2)
    dist = _segment_distance(data.shape, p0, p1)
    inside = dist <= max(radius * 0.85 - 0.75, 0)
    assert np.all(data[inside] == 1.0)
    # and nothing far outside it
    assert np.all(data[dist > radius + 1.0] == 0.0)


def test_stroke_points_are_at_most_the_spacing_apart():
    pts = [(0.0, 0.0)] + stroke_points(0, 0, 97.3, -41.2, 2.5)
    steps = np.hypot(*np.diff(np.asarray(pts), axis=0).T)
    assert steps.max() <= 2.5 + 1e-9
    assert pts[-1] == (97.3, -41.2)


# -- undo / redo ------------------------------------------------------------------------------


def _painted_set(rng, shape=(300, 400)):
    ms = MaskSet(*shape)
    ms.add("a")
    ms.active.data[:] = rng.random(shape).astype(np.float32) * 0.2
    return ms


def test_undo_redo_restore_exact_arrays(rng):
    ms = _painted_set(rng)
    states = [ms.active.data.copy()]
    s = ms.begin_stroke(Brush(9.0, 0.3, 0.8))
    for x, y in [(10, 10), (200, 150), (390, 20), (395, 295)]:
        ms.stroke_to(s, x, y)
    ms.end_stroke(s)
    states.append(ms.active.data.copy())
    ms.fill(150, 200, 0.6, tolerance=0.5)
    states.append(ms.active.data.copy())
    ms.rectangle(20, 30, 120, 90, 0.9, erase=True)
    states.append(ms.active.data.copy())
    ms.ellipse(200, 100, 300, 250)
    states.append(ms.active.data.copy())
    ms.polygon([(10, 290), (100, 200), (190, 290)], 0.7)
    states.append(ms.active.data.copy())
    ms.invert()
    states.append(ms.active.data.copy())
    ms.clear()
    states.append(ms.active.data.copy())
    assert len({s.tobytes() for s in states}) == len(states)  # every edit changed something
    for i in range(len(states) - 1, 0, -1):
        entry = ms.undo()
        assert entry is not None
        np.testing.assert_array_equal(ms.active.data, states[i - 1])
    assert ms.undo() is None
    for i in range(1, len(states)):
        ms.redo()
        np.testing.assert_array_equal(ms.active.data, states[i])
    assert ms.redo() is None


def test_history_stores_only_the_changed_boxes():
    ms = MaskSet(2048, 2048)
    ms.add("a")
    s = ms.begin_stroke(Brush(3.0))
    ms.stroke_to(s, 1000, 1000)
    entry = ms.end_stroke(s)
    # a 7x7 dab: before (constant 0) is a scalar, after at most the 7x7 box
    assert entry.nbytes <= 2 * 7 * 7 * 4 + 4 * 64
    assert entry.box == (997, 1004, 997, 1004)
    # a fill of the blank mask: constant before and after, no pixel arrays at all
    ms2 = MaskSet(1024, 1024)
    ms2.add("b")
    fill = ms2.fill(5, 5, 1.0)
    assert all(not isinstance(p.before, np.ndarray) for p in fill.patches)
    assert all(not isinstance(p.after, np.ndarray) for p in fill.patches)
    assert fill.nbytes < 10_000
    ms2.undo()
    assert not ms2.active.data.any()


def test_history_stays_under_its_byte_cap(rng):
    cap = 600_000
    ms = MaskSet(512, 512, history_bytes=cap)
    ms.add("a")
    for i in range(40):
        s = ms.begin_stroke(Brush(20.0, 0.2, 0.5 + i / 100))
        ms.stroke_to(s, rng.uniform(0, 511), rng.uniform(0, 511))
        ms.stroke_to(s, rng.uniform(0, 511), rng.uniform(0, 511))
        ms.end_stroke(s)
        assert ms.history.nbytes <= cap
    kept = len(ms.history)
    assert 0 < kept < 40  # the oldest entries were dropped
    for _ in range(kept):
        assert ms.undo() is not None
        assert ms.history.nbytes <= cap
    assert ms.undo() is None


def test_redo_is_cleared_by_a_new_edit_and_forget_drops_a_deleted_mask():
    ms = MaskSet(50, 50)
    ms.add("a")
    ms.rectangle(1, 1, 10, 10)
    ms.undo()
    assert ms.history.can_redo
    ms.rectangle(20, 20, 30, 30)
    assert not ms.history.can_redo
    b = ms.add("b")
    ms.rectangle(0, 0, 5, 5, name="b")
    before = ms.history.nbytes
    ms.remove("b")
    assert ms.history.nbytes < before
    assert all(e.mask is not b for e in ms.history._undo)


def test_history_drops_an_entry_larger_than_the_cap():
    h = History(max_bytes=1000)
    ms = MaskSet(100, 100, history_bytes=1000)
    ms.add("a")
    ms.active.data[:] = np.random.default_rng(1).random((100, 100)).astype(np.float32)
    entry = ms.invert()
    assert entry.nbytes > 1000
    assert ms.history.nbytes == 0 and not ms.history.can_undo
    assert h.nbytes == 0


# -- fill and shapes --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_flood_region_equals_skimage_flood(seed):
    rng = np.random.default_rng(seed)
    data = (rng.random((60, 70)) > 0.45).astype(np.float32)
    y, x = int(rng.integers(0, 60)), int(rng.integers(0, 70))
    rows, starts, ends = flood_region(data, x, y)
    got = runs_to_mask(rows, starts, ends, data.shape)
    np.testing.assert_array_equal(got, flood(data, (y, x), connectivity=1))


def test_fill_with_tolerance_equals_skimage_flood():
    rng = np.random.default_rng(5)
    data = rng.random((64, 64)).astype(np.float32)
    ms = MaskSet(64, 64)
    ms.add("a", data)
    ms.fill(30, 31, 1.0, tolerance=0.3)
    region = flood(data, (31, 30), connectivity=1, tolerance=0.3)
    expected = data.copy()
    expected[region] = 1.0
    np.testing.assert_array_equal(ms.active.data, expected)


def test_fill_inside_a_painted_ring_stays_inside():
    ms = MaskSet(100, 100)
    ms.add("a")
    ms.active.data[:] = np.logical_xor(_disk((100, 100), 50, 50, 30), _disk((100, 100), 50, 50, 27))
    ms.fill(50, 50, 1.0)
    np.testing.assert_array_equal(ms.active.data, _disk((100, 100), 50, 50, 30).astype(np.float32))


def test_rectangle_ellipse_polygon_match_numpy_and_skimage():
    shape = (80, 90)
    ms = MaskSet(*shape)
    ms.add("a")
    ms.rectangle(70, 50, 10, 20, 0.5)  # corners in any order
    expected = np.zeros(shape, np.float32)
    expected[20:51, 10:71] = 0.5
    np.testing.assert_array_equal(ms.active.data, expected)

    ms.clear()
    ms.ellipse(10, 20, 50, 60)
    rr, cc = sk_ellipse(40, 30, 20.5, 20.5, shape=shape)
    expected = np.zeros(shape, np.float32)
    expected[rr, cc] = 1
    np.testing.assert_array_equal(ms.active.data, expected)

    ms.clear()
    pts = [(5, 5), (80, 10), (60, 70), (15, 60)]
    ms.polygon(pts, 0.8)
    rr, cc = sk_polygon([p[1] for p in pts], [p[0] for p in pts], shape=shape)
    expected = np.zeros(shape, np.float32)
    expected[rr, cc] = 0.8
    np.testing.assert_array_equal(ms.active.data, expected)

    ms.rectangle(0, 0, 89, 79, 0.5, erase=True)  # erase: min(current, 1 - 0.5)
    np.testing.assert_array_equal(ms.active.data, np.minimum(expected, 0.5))


def test_invert_and_clear():
    rng = np.random.default_rng(2)
    data = rng.random((30, 40)).astype(np.float32)
    ms = MaskSet(30, 40)
    ms.add("a", data)
    ms.invert()
    np.testing.assert_array_equal(ms.active.data, np.float32(1) - data)
    ms.clear()
    assert not ms.active.data.any()


def test_recorder_commit_ignores_untouched_and_unchanged_tiles():
    ms = MaskSet(600, 600)
    mask = ms.add("a")
    rec = Recorder(mask)
    rec.touch((0, 600, 0, 600))
    assert rec.commit() is None  # nothing changed
    rec.touch((0, 600, 0, 600))
    mask.data[300, 301] = 1
    entry = rec.commit()
    assert len(entry.patches) == 1 and entry.patches[0].box == (300, 301, 301, 302)


# -- the mask set -----------------------------------------------------------------------------


def test_mask_set_names_active_dirty_and_events():
    ms = MaskSet(10, 10)
    events = []
    ms.masks_changed.connect(lambda: events.append("list"))
    ms.changed.connect(lambda m, box: events.append((m.name, box)))
    a = ms.add("attention")
    b = ms.add("attention")  # made unique
    assert b.name == "attention 2" and ms.active is b
    assert a.color != b.color
    assert ms.rename("attention 2", "ground truth") == "ground truth"
    ms.set_active("attention")
    assert ms.active is a
    assert not ms.dirty
    ms.rectangle(1, 1, 2, 2)
    assert ms.dirty and a.dirty and not b.dirty
    assert ("attention", (1, 3, 1, 3)) in events
    ms.mark_saved("attention", "/tmp/x.png")
    assert not ms.dirty and a.path == "/tmp/x.png"
    ms.remove("attention")
    assert ms.active is b and ms.names == ["ground truth"]
    with pytest.raises(ValueError):
        ms.add("bad", np.zeros((3, 3)))
