"""Large images from small files: work follows what the model needs, not the pixel count.

The model's input is read from only the pixels the resize samples (the same numbers), export
pictures are made and encoded band by band (the same pixels), the window shows a reduced
copy, blank masks take no memory, an image that runs out of memory fails alone, and a 6,000²
export stays within a peak-RSS bound measured in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.core import mapping
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import Frame, InputMapping, prepare_input
from maskviewer.io.export import ArtifactWriter, ExportItem, ExportStyle, pictures

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo"


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_large_image_input_reads_only_sampled_pixels_with_the_same_numbers(monkeypatch, channels, dtype):
    rng = np.random.default_rng(channels)
    a = (rng.random((301, 457, channels)) * (255 if dtype == np.uint8 else 60000)).astype(dtype)
    image = ImageData(a, None, 255.0 if dtype == np.uint8 else 65535.0)
    for resize in ("stretch", "fit", "crop"):
        for scale in ("0..1", "raw", "-1..1", "mean/std"):
            for shape in ((28, 28, 1), (32, 40, 3), (20, 24)):
                m = InputMapping(resize=resize, scale=scale)
                monkeypatch.setattr(mapping, "SPARSE_RESIZE_ABOVE", 10**12)
                dense, f0 = prepare_input(image, m, shape)
                monkeypatch.setattr(mapping, "SPARSE_RESIZE_ABOVE", 0)
                sparse, f1 = prepare_input(image, m, shape)
                assert f0 == f1
                np.testing.assert_array_equal(sparse, dense)


def test_the_sparse_resize_equals_tf_image_resize():
    import tensorflow as tf

    a = np.random.default_rng(1).integers(0, 256, (2100, 2300, 3)).astype(np.uint8)
    x, _ = prepare_input(ImageData(a), InputMapping(resize="stretch", scale="0..1"), (28, 28, 3))
    assert a.shape[0] * a.shape[1] > mapping.SPARSE_RESIZE_ABOVE
    want = tf.image.resize(a[None].astype(np.float32) / 255.0, (28, 28), antialias=False).numpy()[0]
    np.testing.assert_allclose(x, want, rtol=0, atol=5e-4)  # TF's float32 positions: last digits


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize("kind", ["activation", "mask"])
@pytest.mark.parametrize("frame", [Frame(0.0, 0.0, 157.0, 103.0), Frame(-20.5, 10.0, 200.0, 80.0)])
def test_banded_pictures_equal_the_whole_ones(tmp_path, monkeypatch, kind, frame):
    rng = np.random.default_rng(2)
    h, w = 103, 157
    image = ImageData((rng.random((h, w, 3)) * 255).astype(np.uint8))
    if kind == "mask":
        values = (rng.random((h, w)) > 0.5).astype(np.float32)
        frame = Frame(0.0, 0.0, float(w), float(h))
    else:
        values = rng.random((7, 9)).astype(np.float32)
    style = ExportStyle(legend=True)
    item = ExportItem(kind, "conv1", values, frame, "mean", image="x.png")
    whole = ArtifactWriter(tmp_path / "whole", style).write(item, image)
    monkeypatch.setattr(pictures, "BAND_ABOVE", 100)
    monkeypatch.setattr(pictures, "BAND_PIXELS", 1000)  # bands of 6 rows: many, and a short last one
    banded = ArtifactWriter(tmp_path / "banded", style).write(item, image)
    assert banded == whole
    for role in ("png", "overlay"):
        rec = whole["files"][role]
        got, want = _read(tmp_path / "banded" / rec["path"]), _read(tmp_path / "whole" / rec["path"])
        assert got.shape == tuple(rec["shape"])
        np.testing.assert_array_equal(got, want)


def test_png_stream_refuses_a_short_or_wrong_picture(tmp_path):
    import io

    from maskviewer.io.export.encoding import PngStream, encode_png

    a = np.random.default_rng(3).integers(0, 65535, (50, 30, 2)).astype(np.uint16)
    buf = io.BytesIO()
    stream = PngStream(buf, a.shape, a.dtype)
    for r in range(0, 50, 7):
        stream.write(a[r : r + 7])
    stream.close()
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    (tmp_path / "b.png").write_bytes(encode_png(a))
    np.testing.assert_array_equal(_read(tmp_path / "a.png"), _read(tmp_path / "b.png"))
    short = PngStream(io.BytesIO(), a.shape, a.dtype)
    short.write(a[:10])
    with pytest.raises(ValueError, match="10 of the picture's 50 rows"):
        short.close()
    with pytest.raises(ValueError, match="do not fit"):
        short.write(a[:5, :20])


def test_a_memory_error_fails_that_image_only(tmp_path, monkeypatch, capsys):
    from maskviewer.cli.export import export_main
    from maskviewer.io.export import read_manifest, writing

    real = writing.heat_pictures

    def heat_pictures(items, images, *args, **kwargs):
        if any(it.image and it.image.endswith("digit_3.png") for it in items):
            raise MemoryError
        return real(items, images, *args, **kwargs)

    monkeypatch.setattr(writing, "heat_pictures", heat_pictures)
    images = [str(DEMO / f"digit_{i}.png") for i in (1, 3, 5)]
    out = tmp_path / "out"
    rc = export_main([*images, "--model", str(DEMO / "digits_cnn.keras"), "--out", str(out),
                      "--layer", "conv1", "--batch-size", "3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "digit_3.png" in err and "not enough memory" in err and "Traceback" not in err
    manifest = read_manifest(out)
    assert [f["image"] for f in manifest["failures"]] == [images[1]]
    written = {e["image"] for e in manifest["artifacts"] if e["kind"] == "activation"}
    assert written == {images[0], images[2]}
    for e in manifest["artifacts"]:
        if e["kind"] == "activation":
            assert (out / e["files"]["overlay"]["path"]).is_file()


def test_the_window_shows_a_reduced_copy_over_the_full_image_rectangle(qtbot, monkeypatch):
    from maskviewer.gui import image_canvas
    from maskviewer.gui.image_canvas import ImageCanvas, display_factor

    monkeypatch.setattr(image_canvas, "DISPLAY_MAX_PIXELS", 4096 * 4096)

    a = np.zeros((4500, 3800, 1), dtype=np.uint8)
    a[1000:2000, 400:800] = 200
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_image(ImageData(a))
    shown = canvas.image_item.image
    factor = display_factor(4500, 3800)
    assert factor == 2 and shown.shape == (2250, 1900)
    assert shown[500:1000, 200:400].min() == 200 and shown[:400].max() == 0
    rect = canvas.image_item.mapRectToParent(canvas.image_item.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (0, 0, 3800, 4500)
    assert canvas.value_text(401, 1001) == "200"  # the cursor reads the full image


def test_blank_masks_of_a_large_image_take_no_memory():
    from maskviewer.core.masks import LAZY_ABOVE, MaskSet

    def rss_kb() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    side = 8000
    assert side * side > LAZY_ABOVE
    before = rss_kb()
    ms = MaskSet(side, side)
    ms.add("a")
    ms.add("b")
    assert rss_kb() - before < 50_000  # two 256 MB masks, untouched
    ms.rectangle(10, 10, 20, 20)
    assert ms.get("b").data[15, 15] == 1.0 and ms.get("a").data.sum() == 0


_EXPORT_PEAK = """
import json, sys
from maskviewer.cli.export import export_main
rc = export_main([sys.argv[1], '--model', sys.argv[2], '--out', sys.argv[3], '--layer', 'conv1'])
peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(json.dumps({'rc': rc, 'peak_kb': peak}))
"""


def test_a_6000_square_export_stays_within_its_memory_bound(tmp_path):
    """One layer map of a 6,000² grey PNG (a small file): peak RSS of the whole process
    (TensorFlow included) under 1.2 GB; the old code needed several GB (float copies of the
    image and of every picture)."""
    from PIL import ImageDraw

    im = Image.new("L", (6000, 6000), 30)
    ImageDraw.Draw(im).ellipse((1000, 1000, 4000, 5000), fill=220)
    path = tmp_path / "large.png"
    im.save(path)
    assert path.stat().st_size < 200_000
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", _EXPORT_PEAK, str(path), str(DEMO / "digits_cnn.keras"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[-1])
    assert result["rc"] == 0, proc.stderr[-2000:]
    assert result["peak_kb"] < 1_200_000, f"peak RSS {result['peak_kb'] / 1024:.0f} MB"
    pic = next((tmp_path / "out").rglob("*_overlay.png"))
    with Image.open(pic) as png:
        assert png.size == (6000, 6000)


def _png_with_every_filter(path: Path, a: np.ndarray) -> None:
    """``a`` (H, W, C) uint8 written as a PNG whose row y uses filter y % 5 (None, Sub, Up,
    Average, Paeth): every filter meets every band edge, whatever an encoder would pick."""
    import struct
    import zlib

    h, w, c = a.shape
    x = a.reshape(h, w * c).astype(np.int16)
    up = np.vstack([np.zeros((1, w * c), np.int16), x[:-1]])
    left = np.hstack([np.zeros((h, c), np.int16), x[:, :-c]])
    upleft = np.hstack([np.zeros((h, c), np.int16), up[:, :-c]])
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predict = [np.zeros_like(x), left, up, (left + up) // 2, paeth]
    rows = b"".join(bytes([y % 5]) + ((x[y] - predict[y % 5][y]) % 256).astype(np.uint8).tobytes()
                    for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = {1: 0, 3: 2, 4: 6}[c]
    stream = zlib.compress(rows)
    idat = b"".join(chunk(b"IDAT", stream[i : i + 5000]) for i in range(0, len(stream), 5000))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
                     + idat + chunk(b"IEND", b""))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_a_png_decoded_in_bands_equals_pillows_decode(tmp_path, monkeypatch, mode):
    """Bands of a few rows over a file whose rows use every filter type; the pixels equal
    the file's and Pillow's whole decode."""
    from maskviewer.io import images, png_bands

    c = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    a = np.random.default_rng(c).integers(0, 256, (301, 457, c)).astype(np.uint8)
    a[:100] //= 16  # some near-flat rows too
    path = tmp_path / "filters.png"
    _png_with_every_filter(path, a)
    with Image.open(path) as im:
        pillow = np.asarray(im)
    np.testing.assert_array_equal(pillow.reshape(a.shape), a)
    monkeypatch.setattr(png_bands, "BAND_BYTES", 3 * (457 * c + 1))
    monkeypatch.setattr(images, "BAND_COPY_ABOVE", 0)
    calls = []
    monkeypatch.setattr(images, "read_png_banded", lambda *a: calls.append(a) or png_bands.read_png_banded(*a))
    image = images.load_image(path)
    assert calls and calls[0][1] == mode
    assert png_bands.read_png_banded(path, mode) is not None  # the band reader, not a fallback
    np.testing.assert_array_equal(image.array, a)
    assert image.value_max == 255.0


def test_pngs_the_band_reader_does_not_take_are_read_by_pillow(tmp_path, monkeypatch):
    """Interlaced, 16-bit, palette and truncated files: the same pixels (or the same error)
    as the whole-image decode."""
    import zlib

    from maskviewer.core.errors import ImageLoadError
    from maskviewer.io import images, png_bands

    monkeypatch.setattr(images, "BAND_COPY_ABOVE", 0)
    a = np.random.default_rng(0).integers(0, 256, (64, 80, 3)).astype(np.uint8)
    _png_with_every_filter(tmp_path / "flat.png", a)
    head = bytearray((tmp_path / "flat.png").read_bytes())
    head[28] = 1  # the IHDR's interlace byte (Pillow writes no interlaced PNG to test with)
    head[29:33] = zlib.crc32(head[12:29]).to_bytes(4, "big")
    (tmp_path / "interlaced.png").write_bytes(bytes(head))
    assert png_bands.read_png_banded(tmp_path / "interlaced.png", "RGB") is None
    Image.fromarray(a).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("palette.png", "deep.png"):
        assert png_bands.read_png_banded(tmp_path / name, "RGB") is None
        with Image.open(tmp_path / name) as im:
            want = np.asarray(im.convert("RGB") if im.mode == "P" else im)
        got = images.load_image(tmp_path / name).array
        np.testing.assert_array_equal(got.reshape(want.shape), want)
    Image.fromarray(a).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert png_bands.read_png_banded(tmp_path / "cut.png", "RGB") is None
    with pytest.raises(ImageLoadError, match="cut.png"):
        images.load_image(tmp_path / "cut.png")


_LOAD_PEAK = """
import json, sys
from maskviewer.io import images
if sys.argv[2] == 'whole':
    images.read_png_banded = lambda *a: None
def hwm():
    return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
base = hwm()
image = images.load_image(sys.argv[1])
print(json.dumps({'grow_kb': hwm() - base, 'array_kb': image.array.nbytes // 1024}))
"""


def test_a_6000_square_rgb_png_opens_with_little_more_than_its_array(tmp_path):
    """Peak RSS growth while opening a 6,000² RGB PNG, in a fresh process: under 1.4 times the
    array (the bands decoded one at a time); Pillow's whole decode holds 4 bytes a pixel
    beside the 3-byte array (about 2.4 times), and is measured here to show the bound bites."""
    from PIL import ImageDraw

    im = Image.new("RGB", (6000, 6000), (30, 40, 50))
    ImageDraw.Draw(im).ellipse((1000, 1000, 4000, 5000), fill=(220, 90, 40))
    path = tmp_path / "large_rgb.png"
    im.save(path)
    del im
    grow = {}
    for how in ("bands", "whole"):
        proc = subprocess.run([sys.executable, "-c", _LOAD_PEAK, str(path), how], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert lines, proc.stderr[-2000:]
        result = json.loads(lines[-1])
        assert result["array_kb"] == 6000 * 6000 * 3 // 1024
        grow[how] = result["grow_kb"] / result["array_kb"]
    assert grow["bands"] < 1.4, grow
    assert grow["whole"] > 1.4, grow  # the bound fails on the whole-image decode


def _zoomed_canvas(qtbot, monkeypatch, array: np.ndarray, value_max: float = 255.0):
    from maskviewer.gui import image_canvas

    monkeypatch.setattr(image_canvas, "DISPLAY_MAX_PIXELS", 200 * 200)
    canvas = image_canvas.ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(ImageData(array, None, value_max))
    assert canvas.tiles.factor == image_canvas.display_factor(*array.shape[:2], 200 * 200) > 2
    return canvas


def _show_region(qtbot, canvas, x: float, y: float, w: float, h: float) -> None:
    canvas.view.setRange(xRange=(x, x + w), yRange=(y, y + h), padding=0)
    canvas.tiles.update_now()
    qtbot.waitUntil(lambda: not canvas.tiles.pending)  # read on its own thread


def test_the_zoomed_in_view_shows_the_full_resolution_pixels_and_the_overview_zoomed_out(qtbot, monkeypatch):
    """Columns alternate black and white: the overview (a reduced copy) can only show grey,
    zoomed in the screen shows the image's own black and white pixels, in place."""
    rng = np.random.default_rng(7)
    a = np.zeros((640, 560, 3), np.uint8)
    a[:, ::2] = 255
    a[:, :, 1] = rng.integers(0, 256, a.shape[:2])  # green: random, to compare pixel for pixel
    canvas = _zoomed_canvas(qtbot, monkeypatch, a)
    tiles = canvas.tiles
    assert tiles.factor == 4
    _show_region(qtbot, canvas, -900.0, -800.0, 2400.0, 2200.0)  # 7 image pixels a screen pixel: the overview is enough
    assert tiles.tile is None and not tiles.item.isVisible()  # the overview alone
    assert canvas.image_item.image.shape[:2] == (160, 140)

    _show_region(qtbot, canvas, 301.0, 203.0, 30.0, 22.0)  # about 13 screen pixels an image pixel
    t = tiles.tile
    assert t is not None and t.level == 1 and tiles.item.isVisible()
    np.testing.assert_array_equal(tiles.item.image, a[t.y0 : t.y1, t.x0 : t.x1])
    rect = tiles.item.mapRectToParent(tiles.item.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (t.x0, t.y0, t.x1 - t.x0, t.y1 - t.y0)
    shot = canvas.grab().toImage()
    from PySide6.QtCore import QPointF

    for x, y in ((305, 207), (306, 207), (320, 215), (327, 222)):
        p = canvas.view.mapViewToDevice(QPointF(x + 0.5, y + 0.5))
        c = shot.pixelColor(int(p.x()), int(p.y()))
        assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in a[y, x]), (x, y)

    tile_before = tiles.tile
    _show_region(qtbot, canvas, 305.0, 205.0, 30.0, 22.0)  # a short pan stays inside the tile's margin
    assert tiles.tile is tile_before
    _show_region(qtbot, canvas, 10.0, 500.0, 30.0, 22.0)  # far away: a new tile there
    assert tiles.tile.x0 <= 10 and tiles.tile.y1 >= 522
    np.testing.assert_array_equal(tiles.item.image, a[tiles.tile.y0 : tiles.tile.y1, tiles.tile.x0 : tiles.tile.x1])

    _show_region(qtbot, canvas, -900.0, -800.0, 2400.0, 2200.0)
    assert tiles.tile is None and not tiles.item.isVisible()


def test_a_middle_zoom_shows_block_means_at_its_own_level(qtbot, monkeypatch):
    rng = np.random.default_rng(8)
    a = rng.integers(0, 65536, (601, 533, 1)).astype(np.uint16)
    canvas = _zoomed_canvas(qtbot, monkeypatch, a, 65535.0)
    tiles = canvas.tiles
    _show_region(qtbot, canvas, 100.0, 90.0, 800.0, 600.0)  # about 2 image pixels a screen pixel
    t = tiles.tile
    assert t is not None and t.level == 2 and t.x0 % 2 == 0 and t.y0 % 2 == 0
    region = a[t.y0 : t.y1, t.x0 : t.x1, 0].astype(np.float64) / 65535.0 * 255.0  # full scale
    h, w = region.shape
    padded = np.full((-(-h // 2) * 2, -(-w // 2) * 2), np.nan)
    padded[:h, :w] = region
    means = np.nanmean(padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2), axis=(1, 3))
    got = tiles.item.image.astype(np.int64)
    assert got.shape == means.shape
    assert np.abs(got - np.round(means)).max() <= 1  # display rounding of the same means
    # the overview is the same means at its coarser level: the same display scale
    assert abs(float(got.mean()) - float(canvas.image_item.image.mean())) < 2.0


def test_mask_files_are_read_compact_and_give_the_same_values(tmp_path):
    """8-bit and 1-bit files stay uint8 (a quarter of float32), 16-bit ones uint16; the 0..1
    values are the ones the float read gives."""
    from maskviewer.core.mask_values import as_float_mask
    from maskviewer.io.masks import load_mask

    rng = np.random.default_rng(4)
    levels = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    labels = (rng.random((40, 50)) > 0.5).astype(np.uint8)
    deep = rng.integers(0, 65536, (40, 50)).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "levels.png")
    Image.fromarray(labels).save(tmp_path / "labels.png")
    Image.fromarray(labels.astype(bool)).save(tmp_path / "bits.png")
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.save(tmp_path / "labels.npy", labels.astype(bool))
    want = {"levels.png": levels / 255.0, "labels.png": labels, "bits.png": labels, "deep.png": deep / 65535.0,
            "labels.npy": labels}
    for name, values in want.items():
        compact = load_mask(tmp_path / name, (40, 50), compact=True)
        assert compact.dtype == (np.uint16 if name == "deep.png" else np.uint8), name
        floats = load_mask(tmp_path / name, (40, 50))
        assert floats.dtype == np.float32
        np.testing.assert_array_equal(as_float_mask(compact), floats)
        np.testing.assert_allclose(floats, values, rtol=0, atol=1e-7)


def test_the_export_reads_its_mask_as_uint8(tmp_path, monkeypatch):
    from maskviewer.cli.export import export_main
    from maskviewer.io import masks

    levels = np.random.default_rng(5).integers(0, 256, (28, 28)).astype(np.uint8)
    Image.fromarray(levels).save(tmp_path / "m.png")
    seen = []
    real = masks.load_mask

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(masks, "load_mask", spy)
    out = tmp_path / "out"
    rc = export_main([str(DEMO / "digit_3.png"), "--model", str(DEMO / "digits_cnn.keras"), "--out", str(out),
                      "--layer", "conv1", "--mask", str(tmp_path / "m.png"), "--mask-mode", "multiply"])
    assert rc == 0
    assert [m.dtype for m in seen] == [np.uint8]
    np.testing.assert_array_equal(seen[0], levels)
    from maskviewer.io.export import read_manifest

    entry = next(e for e in read_manifest(out)["artifacts"] if e["kind"] == "mask")
    png = _read(out / entry["files"]["png"]["path"])
    np.testing.assert_array_equal(png, levels.astype(np.uint16) * 257)  # the soft mask, 16-bit


def test_too_many_patches_are_refused_with_the_count_and_a_stride_that_fits(monkeypatch):
    from maskviewer.core import patch_grid
    from maskviewer.core.patches import PatchSettingsError, PatchSpec, make_grid

    monkeypatch.setattr(patch_grid, "MAX_PATCHES", 1000)
    spec = PatchSpec((18, 18), (10, 10))
    with pytest.raises(PatchSettingsError) as err:
        make_grid(spec, 1400, 1400)
    text = str(err.value)
    assert "19,321 patches" in text and "at most 1,000" in text  # 139² patches of 18 every 10
    stride = int(text.split("Use a stride of ")[1].split()[0])
    assert make_grid(PatchSpec((18, 18), (stride, stride)), 1400, 1400).count <= 1000
    with pytest.raises(PatchSettingsError):
        make_grid(PatchSpec((18, 18), (stride - 1, stride - 1)), 1400, 1400)
    assert make_grid(spec, 300, 300).count == 29 * 29  # under the bound: the grid as before


def test_the_patches_tool_and_the_export_say_so(tmp_path, monkeypatch, capsys):
    from maskviewer.cli.export import export_main
    from maskviewer.core import patch_grid
    from maskviewer.core.patches import PatchSpec
    from maskviewer.core.state import AppState
    from maskviewer.gui.patches.model import PatchModel

    monkeypatch.setattr(patch_grid, "MAX_PATCHES", 50)
    state = AppState()
    model = PatchModel(state)
    state.set_image(ImageData(np.zeros((200, 200, 3), np.uint8)))
    assert not model.set_spec(PatchSpec((8, 8), (4, 4)))
    assert "2,401 patches" in model.message and "at most 50" in model.message
    out = tmp_path / "out"
    rc = export_main([str(DEMO / "digit_3.png"), "--model", str(DEMO / "digits_cnn.keras"), "--out", str(out),
                      "--patch-size", "4", "--patch-stride", "2"])
    err = capsys.readouterr().err
    assert rc != 0 and "169 patches" in err and "at most 50" in err and "Traceback" not in err


def test_occlusion_batches_are_bounded_by_the_whole_image_copies(monkeypatch):
    """Each occluded image is a whole copy of the image: on a large image the batch holds as
    many as fit the batch budget (one at least), whatever the model's input size."""
    from maskviewer.core.model_info import ModelInfo, TensorInfo
    from maskviewer.core.patches import PatchSpec, make_grid
    from maskviewer.inference import patch_runner

    info = ModelInfo("m", "m.keras", "functional", [TensorInfo("image", (None, 32, 32, 3))],
                     [TensorInfo("probs", (None, 5))], [])
    feed = patch_runner.plan_feed(info, {"image": InputMapping(resize="stretch", scale="0..1")})
    image = ImageData(np.random.default_rng(9).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    grid = make_grid(PatchSpec((60, 60), (60, 60)), 300, 300)
    sizes = []

    def predict(arrays):
        sizes.append(len(arrays["image"]))
        return {"probs": np.zeros((len(arrays["image"]), 5), np.float32)}

    monkeypatch.setattr(patch_runner, "BATCH_BYTES", 1_000_000)  # 81 model inputs, 3 image copies
    run = patch_runner.run_occlusion(predict, image, grid, feed, 128.0)
    assert sizes[0] == 1 and max(sizes[1:]) == 3 and sum(sizes[1:]) == grid.count == 25
    assert run.occluded["probs"].shape == (25, 5)


def test_tiles_are_read_off_the_gui_thread_and_follow_a_view_that_moved_on(qtbot, monkeypatch):
    import threading

    from maskviewer.gui import image_tiles

    a = np.random.default_rng(10).integers(0, 256, (640, 560, 3)).astype(np.uint8)
    canvas = _zoomed_canvas(qtbot, monkeypatch, a)
    threads = []
    real = image_tiles.tile_pixels

    def spy(*args):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args)

    monkeypatch.setattr(image_tiles, "tile_pixels", spy)
    tiles = canvas.tiles
    canvas.view.setRange(xRange=(20, 50), yRange=(20, 42), padding=0)
    tiles.update_now()  # a read starts ...
    canvas.view.setRange(xRange=(500, 530), yRange=(600, 622), padding=0)
    tiles.update_now()  # ... and the view moves on before it ends
    qtbot.waitUntil(lambda: not tiles.pending)
    t = tiles.tile
    assert t is not None and t.x0 <= 500 and t.x1 >= 530 and t.y0 <= 600 and t.y1 >= 622
    np.testing.assert_array_equal(tiles.item.image, a[t.y0 : t.y1, t.x0 : t.x1])
    assert threads and not any(threads)


def test_a_float_image_tile_uses_the_whole_image_display_range(qtbot, monkeypatch):
    """Values outside 0..1 show on the whole image's own range, in the tile as in the overview."""
    from maskviewer.core.image import display_uint8

    a = np.random.default_rng(11).normal(0.0, 2.0, (640, 560, 1)).astype(np.float32)
    a[600:, 500:] = 20.0  # the maximum lies outside the zoomed region
    canvas = _zoomed_canvas(qtbot, monkeypatch, a, 1.0)
    _show_region(qtbot, canvas, 100.0, 100.0, 30.0, 22.0)
    t = canvas.tiles.tile
    assert t is not None and t.level == 1
    want = display_uint8(a[t.y0 : t.y1, t.x0 : t.x1, 0], float(a.min()), 20.0)
    np.testing.assert_array_equal(canvas.tiles.item.image, want)
