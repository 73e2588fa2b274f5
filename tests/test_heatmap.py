"""Heatmap colouring, normalisation, upsampling, grids and mask weights (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core import heatmap as hm
from maskviewer.core.mapping import Frame
from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo


def test_luts_match_pyqtgraph_and_matplotlib_anchors():
    import pyqtgraph as pg

    for name, theirs in (("viridis", "viridis"), ("inferno", "inferno"), ("magma", "magma"),
                         ("turbo", "turbo"), ("diverging", "CET-D1")):
        lut = hm.colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        ref = pg.colormap.get(theirs).getLookupTable(0.0, 1.0, 256, alpha=False)
        np.testing.assert_array_equal(lut, ref)
    # the published end points of viridis (#440154 .. #fde725)
    np.testing.assert_array_equal(hm.colormap_lut("viridis")[0], [0x44, 0x01, 0x54])
    np.testing.assert_array_equal(hm.colormap_lut("viridis")[-1], [0xFD, 0xE7, 0x25])
    grey = hm.colormap_lut("grey")
    np.testing.assert_array_equal(grey[:, 0], np.arange(256))
    # the diverging map is light in the middle and dark-ish at both ends
    div = hm.colormap_lut("diverging").astype(int).sum(axis=1)
    assert div[128] > div[0] and div[128] > div[255]
    with pytest.raises(ValueError, match="Unknown colour map"):
        hm.colormap_lut("jet")


def test_normalize_modes(rng):
    v = rng.normal(size=(7, 9)).astype(np.float32)
    unit, (lo, hi) = hm.normalize(v, "per_map")
    np.testing.assert_allclose(unit, (v - v.min()) / (v.max() - v.min()), atol=1e-6)
    assert (lo, hi) == (pytest.approx(v.min()), pytest.approx(v.max()))

    unit, (lo, hi) = hm.normalize(v, "percentile", percentiles=(5, 95))
    plo, phi = np.percentile(v.astype(np.float64), [5, 95])
    assert lo == pytest.approx(plo) and hi == pytest.approx(phi)
    np.testing.assert_allclose(unit, np.clip((v - plo) / (phi - plo), 0, 1), atol=1e-6)

    unit, rng_used = hm.normalize(v, "shared", vrange=(-4.0, 4.0))
    assert rng_used == (-4.0, 4.0)
    np.testing.assert_allclose(unit, (v + 4) / 8, atol=1e-6)
    with pytest.raises(ValueError, match="vrange"):
        hm.normalize(v, "shared")

    flat, _ = hm.normalize(np.full((3, 3), 2.0), "per_map")
    assert np.all(flat == 0)
    withnan = v.copy()
    withnan[0, 0] = np.nan
    unit, (lo, hi) = hm.normalize(withnan)
    assert np.isfinite(unit).all() and lo == pytest.approx(np.nanmin(withnan))


def test_colorize_is_lut_lookup(rng):
    unit = rng.random((5, 6)).astype(np.float32)
    rgba = hm.colorize(unit, "magma", alpha=0.5)
    assert rgba.shape == (5, 6, 4) and rgba.dtype == np.uint8
    idx = np.round(unit * 255).astype(int)
    np.testing.assert_array_equal(rgba[..., :3], hm.colormap_lut("magma")[idx])
    assert np.all(rgba[..., 3] == 128)


def test_upsample_matches_tf_image_resize(rng):
    import tensorflow as tf

    small = rng.random((7, 5)).astype(np.float32)
    ours = hm.upsample(small, 40, 31)
    ref = tf.image.resize(small[None, :, :, None], (40, 31), method="bilinear", antialias=False)
    np.testing.assert_allclose(ours, ref.numpy()[0, :, :, 0], atol=1e-6)
    frame = Frame(0, 0, 4000, 2000)
    assert hm.display_size(frame) == (512, 1024)
    assert hm.upsample_to_frame(small, Frame(-3, 2, 500, 600)).shape == (600, 500)
    assert hm.display_size(Frame(0, 0, 28, 14)) == (128, 256)  # small images: smooth


def test_composite_is_alpha_blend(rng):
    img = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    heat = hm.colorize(rng.random((4, 5)), "turbo")
    out = hm.composite(img, heat, 0.25)
    ref = np.clip(np.round(img * 0.75 + heat[..., :3] * 0.25), 0, 255)
    np.testing.assert_allclose(out, ref, atol=1)
    with pytest.raises(ValueError, match="upsample"):
        hm.composite(img, heat[:2], 0.5)


def test_channel_grid_tiles_each_normalised(rng):
    maps = rng.normal(size=(5, 3, 4)).astype(np.float32) * np.arange(1, 6)[:, None, None]
    grid, layout = hm.channel_grid(maps, "per_map", pad=1)
    assert (layout.rows, layout.cols) == (2, 3)
    assert grid.shape == (2 * 4 - 1, 3 * 5 - 1)
    for i in range(5):
        x, y = layout.tile_origin(i)
        tile = grid[y : y + 3, x : x + 4]
        m = maps[i]
        np.testing.assert_allclose(tile, (m - m.min()) / (m.max() - m.min()), atol=1e-6)
        assert layout.tile_at(x + 3.5, y + 2.2) == i
    assert np.isnan(grid[3, :]).all()  # padding row
    assert layout.tile_at(4, 0) is None  # padding column
    assert layout.tile_at(10, 5) is None  # empty 6th tile
    shared, _ = hm.channel_grid(maps, "shared")
    x, y = layout.tile_origin(4)
    lo, hi = maps.min(), maps.max()
    np.testing.assert_allclose(shared[y : y + 3, x : x + 4], (maps[4] - lo) / (hi - lo), atol=1e-6)


def test_mask_to_grid_cell_coverage():
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    w = hm.mask_to_grid(mask, Frame(0, 0, 8, 8), 2, 2)
    np.testing.assert_allclose(w, [[1, 0], [0, 0]])
    w = hm.mask_to_grid(mask, Frame(0, 0, 8, 8), 4, 4)
    np.testing.assert_allclose(w[:2, :2], 1)
    assert w[2:, :].sum() == 0
    # each 8x8 cell of a 1-pixel-thick diagonal is 1/8 covered
    diag = np.eye(16, dtype=bool)
    np.testing.assert_allclose(np.diag(hm.mask_to_grid(diag, Frame(0, 0, 16, 16), 2, 2)), 1 / 8)
    # a finer grid than the image: nearest pixel; a frame beyond the image ("fit") weighs 0 outside
    w = hm.mask_to_grid(mask, Frame(-8, 0, 16, 8), 2, 4)
    np.testing.assert_allclose(w, [[0, 0, 1, 0], [0, 0, 0, 0]])
    w = hm.mask_to_grid(mask, Frame(0, 0, 8, 8), 16, 16)
    np.testing.assert_array_equal(w, np.kron(mask, np.ones((2, 2))))


def test_default_cam_layer_is_last_spatial_before_head():
    def L(name, shape, children=()):  # noqa: N802
        return LayerInfo(name, name, "X", shape, children=list(children))

    inner = LayerInfo("inner", "bb/inner", "Conv2D", (None, 4, 4, 2))
    info = ModelInfo(
        "m", "m", "functional", [TensorInfo("img", (None, 8, 8, 3))],
        [TensorInfo("probs", (None, 3)), TensorInfo("seg", (None, 8, 8, 1))],
        [L("img", (None, 8, 8, 3)), L("bb", (None, 4, 4, 2), [inner]), L("gap", (None, 2)),
         L("probs", (None, 3)), L("seg", (None, 8, 8, 1))],
    )
    assert hm.default_cam_layer(info).path == "bb/inner"
    assert [x.path for x in hm.spatial_layers(info)] == ["img", "bb", "bb/inner", "seg"]
    flat = ModelInfo("m", "m", "functional", [], [TensorInfo("p", (None, 3))], [L("d", (None, 3))])
    assert hm.default_cam_layer(flat) is None
