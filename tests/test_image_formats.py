"""Image files of every kind the viewer opens, compared with Pillow, tifffile, numpy and
scikit-image reading the same file; and files it must refuse, refused before allocating."""

from __future__ import annotations

import shutil
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskviewer.core.errors import ImageLoadError
from maskviewer.io.images import MAX_PIXELS, load_image

RNG = np.random.default_rng(7)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _hwc(a: np.ndarray) -> np.ndarray:
    return a[:, :, None] if a.ndim == 2 else a


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: any header, optionally no pixel data at all."""
    head = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    body = _png_chunk(b"IDAT", zlib.compress(rows)) if rows else b""
    return b"\x89PNG\r\n\x1a\n" + head + body + _png_chunk(b"IEND", b"")


# -- 8-bit formats through Pillow ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lossless_8bit_equals_the_pixels_written(tmp_path, suffix, channels):
    if suffix == ".bmp" and channels == 4:
        pytest.skip("BMP has no standard alpha")
    pixels = _u8(9, 11, channels)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(path)
    image = load_image(path)
    assert image.array.dtype == np.uint8 and image.value_max == 255.0
    np.testing.assert_array_equal(image.array, pixels)
    if suffix == ".png":
        import skimage.io

        np.testing.assert_array_equal(image.array, _hwc(skimage.io.imread(path)))


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_equals_pillow_decode(tmp_path, mode):
    path = tmp_path / "photo.jpg"
    Image.fromarray(_u8(16, 24, 3)).convert(mode).save(path, quality=90)
    image = load_image(path)
    with Image.open(path) as im:
        assert im.mode == mode
        expected = np.asarray(im.convert("L" if mode == "L" else "RGB"))
    np.testing.assert_array_equal(image.array, _hwc(expected))


def test_palette_png_becomes_rgb_and_rgba(tmp_path):
    rgb = _u8(8, 10, 3)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "pal.png")
    lut = np.array(pal.getpalette(), dtype=np.uint8).reshape(-1, 3)
    expected = lut[np.asarray(pal)]
    image = load_image(tmp_path / "pal.png")
    np.testing.assert_array_equal(image.array, expected)

    pal.info["transparency"] = 0  # index 0 transparent: the alpha channel must say so
    pal.save(tmp_path / "pal_alpha.png", transparency=0)
    image = load_image(tmp_path / "pal_alpha.png")
    assert image.channels == 4
    np.testing.assert_array_equal(image.array[..., :3], expected)
    np.testing.assert_array_equal(image.array[..., 3], np.where(np.asarray(pal) == 0, 0, 255))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_one_bit_images_become_0_and_255(tmp_path, suffix):
    bits = _u8(7, 13) > 127
    Image.fromarray(bits).save(tmp_path / f"bits{suffix}")
    image = load_image(tmp_path / f"bits{suffix}")
    assert image.array.dtype == np.uint8 and image.channels == 1
    np.testing.assert_array_equal(image.array[..., 0], np.where(bits, 255, 0))


def test_grey_alpha_png_becomes_rgba(tmp_path):
    la = _u8(6, 5, 2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(image.array[..., :3], np.repeat(la[..., :1], 3, axis=2))
    np.testing.assert_array_equal(image.array[..., 3], la[..., 1])


def test_cmyk_tiff_equals_pillow_rgb(tmp_path):
    Image.fromarray(_u8(6, 8, 4), mode="CMYK").save(tmp_path / "cmyk.tif")
    with Image.open(tmp_path / "cmyk.tif") as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "cmyk.tif").array, expected)


# -- 16-bit and float --------------------------------------------------------------------------


def test_16bit_grey_png_keeps_all_bits(tmp_path):
    grey = RNG.integers(0, 65536, (9, 7), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.array.dtype == np.uint16 and image.value_max == 65535.0
    np.testing.assert_array_equal(image.array[..., 0], grey)


def test_16bit_colour_png_is_read_as_pillow_reads_it(tmp_path):
    """Pillow (and so scikit-image) reduce 16-bit colour PNGs to their high byte: the unit
    values are then within 1/255 of the file's own."""
    rgb16 = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + rgb16[r].astype(">u2").tobytes() for r in range(5))
    (tmp_path / "rgb16.png").write_bytes(_png(6, 5, 16, 2, rows))
    image = load_image(tmp_path / "rgb16.png")
    with Image.open(tmp_path / "rgb16.png") as im:
        np.testing.assert_array_equal(image.array, np.asarray(im))
    assert np.abs(image.as_unit_float() - rgb16 / 65535).max() <= 1 / 255


@pytest.mark.parametrize(
    "array",
    [
        RNG.integers(0, 65536, (9, 7), dtype=np.uint16),
        RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16),
        RNG.random((9, 7), dtype=np.float32),
        RNG.random((9, 7, 3), dtype=np.float32) * 1000,
        RNG.integers(0, 256, (9, 7, 4), dtype=np.uint8),
    ],
    ids=["u16-grey", "u16-rgb", "f32-grey", "f32-rgb-wide", "u8-rgba"],
)
def test_tiff_equals_tifffile(tmp_path, array):
    tifffile.imwrite(tmp_path / "t.tif", array, photometric="rgb" if array.ndim == 3 else None)
    image = load_image(tmp_path / "t.tif")
    expected = _hwc(tifffile.imread(tmp_path / "t.tif"))
    assert image.array.dtype == expected.dtype
    np.testing.assert_array_equal(image.array, expected)
    np.testing.assert_allclose(image.as_unit_float(), expected / image.value_max, rtol=1e-6)


def test_planar_rgb_tiff(tmp_path):
    planes = _u8(3, 6, 8)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(load_image(tmp_path / "planar.tif").array, np.moveaxis(planes, 0, -1))


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg", "packbits"])
def test_compressed_tiffs_open_without_imagecodecs(tmp_path, compression):
    """LZW and JPEG need the optional imagecodecs package in tifffile; Pillow reads them."""
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "c.tif", compression=compression)
    with Image.open(tmp_path / "c.tif") as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(load_image(tmp_path / "c.tif").array, expected)


# -- NPY -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array,shown",
    [
        (RNG.random((6, 5), dtype=np.float32), (6, 5, 1)),
        (_u8(6, 5, 3), (6, 5, 3)),
        (RNG.random((1, 6, 5, 2)).astype(np.float64), (6, 5, 2)),
        (RNG.integers(0, 2, (6, 5)).astype(bool), (6, 5, 1)),
        (RNG.integers(-3, 900, (6, 5), dtype=np.int32), (6, 5, 1)),
    ],
    ids=["f32-2d", "u8-hwc", "f64-batched", "bool", "i32"],
)
def test_npy_arrays(tmp_path, array, shown):
    np.save(tmp_path / "a.npy", array)
    image = load_image(tmp_path / "a.npy")
    assert image.array.shape == shown
    np.testing.assert_array_equal(image.raw, array)  # fed to a model as stored
    reference = array.reshape(shown).astype(np.float64)
    if array.dtype == bool:
        reference = reference * 255
    np.testing.assert_allclose(image.array.astype(np.float64), reference, rtol=1e-6)


def test_npy_with_many_channels_shows_their_mean(tmp_path):
    array = RNG.random((4, 5, 9), dtype=np.float32)
    np.save(tmp_path / "bands.npy", array)
    image = load_image(tmp_path / "bands.npy")
    np.testing.assert_allclose(image.array[..., 0], array.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(image.raw, array)


@pytest.mark.parametrize(
    "array,match",
    [
        (np.array([{"a": 1}, None], dtype=object), "Python objects"),
        (np.zeros((2, 3, 4, 5)), "not an image"),
        (np.array(["ab", "cd"]), "not numeric"),
        (np.array([[np.nan, 1.0]], dtype=np.float32), "NaN"),
        (np.zeros((0, 4), dtype=np.uint8), "no pixels"),
        (np.zeros((1, 12, 10, 0), dtype=np.float32), "no pixels"),  # found by the fuzzer
    ],
    ids=["objects", "4d", "strings", "nan", "empty", "no-channels"],
)
def test_npy_refusals(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    with pytest.raises(ImageLoadError, match=match):
        load_image(tmp_path / "bad.npy")


# -- names that lie ------------------------------------------------------------------------------


def test_contents_decide_not_the_suffix(tmp_path):
    pixels = _u8(5, 6, 3)
    Image.fromarray(pixels).save(tmp_path / "real.png")
    wide = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "real.tif", wide)
    np.save(tmp_path / "real.npy", wide)
    for src, name, expected in [
        ("real.png", "png_named.jpg", pixels),
        ("real.png", "png_named.tif", pixels),
        ("real.png", "png_named.npy", pixels),
        ("real.tif", "tif_named.png", wide),
        ("real.npy", "npy_named.png", wide),
    ]:
        shutil.copy(tmp_path / src, tmp_path / name)
        image = load_image(tmp_path / name)
        assert image.array.dtype == expected.dtype, name
        np.testing.assert_array_equal(image.array, expected, err_msg=name)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("notes.png", b"just some text, not pixels", "could not be read as an image"),
        ("notes.tif", b"just some text, not pixels", "could not be read as an image"),
        ("notes.npy", b"just some text, not pixels", "not a valid .npy"),
        ("empty.jpg", b"", "could not be read as an image"),
        ("empty.npy", b"", "not a valid .npy"),
    ],
)
def test_not_images_get_clear_errors(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageLoadError, match=match) as info:
        load_image(tmp_path / name)
    assert str(info.value).startswith(name)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


# -- truncated and corrupt ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".npy"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_files_are_refused(tmp_path, suffix, keep):
    path = tmp_path / f"full{suffix}"
    pixels = _u8(64, 48, 3)
    if suffix == ".npy":
        np.save(path, pixels)
    else:
        Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageLoadError, match="cut"):
        load_image(cut)


def test_corrupt_png_checksum_is_refused(tmp_path):
    Image.fromarray(_u8(20, 20, 3)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # a flipped byte inside the compressed pixels
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="bad.png"):
        load_image(tmp_path / "bad.png")


# -- bombs and absurd sizes: refused from the header, before any pixel buffer --------------------


def _bomb_files(folder: Path) -> dict[str, Path]:
    files = {}
    files["png"] = folder / "bomb.png"
    files["png"].write_bytes(_png(100_000, 100_000, 8, 2))  # 10^10 pixels, a few bytes on disk
    files["png_wide"] = folder / "wide.png"
    files["png_wide"].write_bytes(_png(70_000, 1, 8, 0))  # over the per-side limit
    # a JPEG whose frame header claims 60000×60000
    Image.fromarray(_u8(8, 8, 3)).save(folder / "small.jpg")
    jpg = bytearray((folder / "small.jpg").read_bytes())
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    files["jpg"] = folder / "bomb.jpg"
    files["jpg"].write_bytes(bytes(jpg))
    # a BMP header claiming 50000×50000
    Image.fromarray(_u8(4, 4, 3)).save(folder / "small.bmp")
    bmp = bytearray((folder / "small.bmp").read_bytes())
    bmp[18:26] = struct.pack("<ii", 50_000, 50_000)
    files["bmp"] = folder / "bomb.bmp"
    files["bmp"].write_bytes(bytes(bmp))
    # an NPY header claiming 100000×100000×3 with almost no data behind it
    files["npy"] = folder / "bomb.npy"
    with open(files["npy"], "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (100000, 100000, 3)})
        fh.write(b"\x00" * 64)
    # an NPY of few pixels but absurdly many channels
    files["npy_channels"] = folder / "channels.npy"
    with open(files["npy_channels"], "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (100, 100, 10**6)})
        fh.write(b"\x00" * 64)
    # a TIFF whose only page claims 90000×90000 (tifffile writes the header, the data is cut)
    tifffile.imwrite(folder / "big.tif", shape=(90_000, 90_000), dtype=np.uint8)
    files["tif"] = folder / "bomb.tif"
    files["tif"].write_bytes((folder / "big.tif").read_bytes()[:4096])
    (folder / "big.tif").unlink()
    return files


def test_bombs_are_refused_before_allocation(tmp_path):
    files = _bomb_files(tmp_path)
    for kind, path in files.items():
        tracemalloc.start()
        try:
            with pytest.raises(ImageLoadError) as info:
                load_image(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        text = str(info.value)
        assert "larger than this viewer opens" in text or "more values" in text, (kind, text)
        assert "Crop" in text
        assert peak < 50 * 2**20, f"{kind}: {peak / 2**20:.0f} MiB allocated before refusing"


def test_size_limits_are_real_limits(tmp_path):
    """Just under the per-side limit, a thin image still opens."""
    path = tmp_path / "thin.png"
    Image.fromarray(_u8(1, 65_000)).save(path)
    assert load_image(path).width == 65_000
    assert 65_000 < MAX_PIXELS
