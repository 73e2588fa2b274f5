"""Mask files: PNG (binary, grey, 16-bit, palette), NPY, wrong size, bad values, not an image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskviewer.io.masks import (
    MaskLoadError,
    MaskSizeError,
    load_mask,
    resize_mask_nearest,
    save_mask,
)


def test_binary_png_0_255_and_0_1(tmp_path):
    m = np.zeros((12, 20), np.uint8)
    m[3:8, 5:15] = 255
    Image.fromarray(m).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "a.png"), (m > 0).astype(np.float32))
    Image.fromarray((m > 0).astype(np.uint8)).save(tmp_path / "labels.png")  # 0/1 labels
    np.testing.assert_array_equal(load_mask(tmp_path / "labels.png"), (m > 0).astype(np.float32))
    Image.fromarray(m > 0).save(tmp_path / "bits.png")  # mode "1"
    np.testing.assert_array_equal(load_mask(tmp_path / "bits.png"), (m > 0).astype(np.float32))


def test_grey_levels_8_and_16_bit(tmp_path, rng):
    g8 = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    np.testing.assert_allclose(load_mask(tmp_path / "g8.png"), g8 / 255.0, rtol=1e-6)
    g16 = rng.integers(0, 65536, (9, 11)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load_mask(tmp_path / "g16.png"), g16 / 65535.0, rtol=1e-6)


def test_grey_rgb_and_alpha_only_png(tmp_path, rng):
    g = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    Image.fromarray(np.stack([g, g, g], 2)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(load_mask(tmp_path / "rgb.png"), g / 255.0, rtol=1e-6)
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[:, :, 3] = g
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    np.testing.assert_allclose(load_mask(tmp_path / "alpha.png"), g / 255.0, rtol=1e-6)


def test_colour_png_is_refused(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(MaskLoadError, match="colour image is not a mask"):
        load_mask(tmp_path / "c.png")


def test_npy_float_bool_and_shapes(tmp_path, rng):
    f = rng.random((5, 6)).astype(np.float32)
    for name, arr in (("a", f), ("b", f[:, :, None]), ("c", f[None, :, :, None])):
        np.save(tmp_path / f"{name}.npy", arr)
        np.testing.assert_array_equal(load_mask(tmp_path / f"{name}.npy"), f)
    np.save(tmp_path / "bool.npy", f > 0.5)
    np.testing.assert_array_equal(load_mask(tmp_path / "bool.npy"), (f > 0.5).astype(np.float32))
    np.save(tmp_path / "f64.npy", f.astype(np.float64))
    assert load_mask(tmp_path / "f64.npy").dtype == np.float32


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.array([[0.0, 1.5]], np.float32), "from 0 to 1.5"),
        (np.array([[-0.2, 0.5]], np.float32), "from -0.2 to 0.5"),
        (np.array([[0, 255]], np.uint8), "from 0 to 255"),
        (np.array([[np.nan, 0.5]], np.float32), "NaN"),
        (np.zeros((2, 3, 4), np.float32), "not a mask"),
        (np.array(["a", "b"]), "not numeric"),
    ],
)
def test_bad_npy_values_and_shapes_say_why(tmp_path, arr, match):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(MaskLoadError, match=match):
        load_mask(tmp_path / "bad.npy")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("this is not a picture")
    with pytest.raises(MaskLoadError, match="could not be read as a mask image"):
        load_mask(tmp_path / "notes.png")
    (tmp_path / "junk.npy").write_bytes(b"\x00\x01garbage")
    with pytest.raises(MaskLoadError, match="not a valid .npy"):
        load_mask(tmp_path / "junk.npy")
    with pytest.raises(MaskLoadError, match="no such file"):
        load_mask(tmp_path / "missing.png")
    with pytest.raises(MaskLoadError, match="folder"):
        load_mask(tmp_path)


def test_wrong_size_raises_with_the_mask_attached(tmp_path):
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "small.png")
    with pytest.raises(MaskSizeError) as info:
        load_mask(tmp_path / "small.png", shape=(8, 12))
    assert "6×4" in str(info.value) and "12×8" in str(info.value)
    assert info.value.expected == (8, 12)
    resized = resize_mask_nearest(info.value.mask, 8, 12)
    # nearest neighbour at exactly 2x: every source pixel becomes a 2x2 block, values kept
    np.testing.assert_array_equal(resized, np.kron(m / 255.0, np.ones((2, 2))).astype(np.float32))
    assert set(np.unique(resized)) <= {0.0, 1.0}


def test_save_round_trip_png_and_npy(tmp_path, rng):
    soft = rng.random((13, 17)).astype(np.float32)
    binary = (soft > 0.5).astype(np.float32)
    save_mask(tmp_path / "b.png", binary)
    assert Image.open(tmp_path / "b.png").mode == "L"
    np.testing.assert_array_equal(load_mask(tmp_path / "b.png"), binary)
    save_mask(tmp_path / "s.png", soft)
    assert Image.open(tmp_path / "s.png").mode.startswith("I")  # 16-bit grey
    np.testing.assert_allclose(load_mask(tmp_path / "s.png"), soft, atol=0.5 / 65535 + 1e-7)
    save_mask(tmp_path / "s.npy", soft)
    np.testing.assert_array_equal(load_mask(tmp_path / "s.npy"), soft)


def test_save_is_atomic_and_refuses_unknown_suffix(tmp_path, rng):
    target = tmp_path / "keep.npy"
    np.save(target, np.zeros((2, 2), np.float32))
    with pytest.raises(Exception, match="save masks as"):
        save_mask(tmp_path / "x.jpg", np.zeros((2, 2)))
    assert not (tmp_path / "x.jpg").exists()

    # a failing write leaves the old file as it was and no temporary file behind
    import maskviewer.io.masks as masks_io

    original = masks_io.np.save

    def failing_save(fh, arr, allow_pickle=False):
        fh.write(b"partial")
        raise OSError("disk full")

    masks_io.np.save = failing_save
    try:
        with pytest.raises(OSError):
            save_mask(target, np.ones((2, 2), np.float32))
    finally:
        masks_io.np.save = original
    np.testing.assert_array_equal(np.load(target), np.zeros((2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]
