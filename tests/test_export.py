"""Writing artifacts and manifests: pictures at image resolution, raw maps, legends, grids."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from maskviewer.core.heatmap import colormap_lut, normalize, to_indices
from maskviewer.core.image import ImageData, resize_bilinear
from maskviewer.core.mapping import Frame
from maskviewer.io.export import (
    ArtifactWriter,
    ExportError,
    ExportItem,
    ExportStyle,
    Manifest,
    check_writable,
    export_items,
    image_rgb,
    iter_files,
    map_on_image,
    read_manifest,
)


def _png(path):
    return np.asarray(Image.open(path))


def test_map_on_full_frame_is_tf_image_resize(rng):
    tf = pytest.importorskip("tensorflow")
    values = rng.random((7, 5)).astype(np.float32)
    ours = map_on_image(values, Frame(0, 0, 23, 31), 31, 23)
    ref = tf.image.resize(values[None, :, :, None], (31, 23), method="bilinear", antialias=False)
    np.testing.assert_allclose(ours, ref.numpy()[0, :, :, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours, resize_bilinear(values[:, :, None], 31, 23)[:, :, 0], atol=1e-6)


def test_map_outside_the_frame_is_transparent():
    # "fit" of a 20x10 image into a square input: the frame is taller than the image
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    frame = Frame(-5.0, 0.0, 20.0, 20.0)  # image 10 wide, 20 high; 5 px of padding each side
    on = map_on_image(values, frame, 20, 10, order="nearest")
    assert on.shape == (20, 10) and not np.isnan(on).any()
    # every image pixel takes the map cell its centre falls in
    ys, xs = np.mgrid[0:20, 0:10] + 0.5
    cells = values[np.floor(ys / 5).astype(int), np.floor((xs + 5) / 5).astype(int)]
    np.testing.assert_array_equal(on, cells)
    crop = Frame(2.0, 0.0, 6.0, 20.0)  # the map covers only x in [2, 8)
    on = map_on_image(values, crop, 20, 10)
    assert np.isnan(on[:, :2]).all() and np.isnan(on[:, 8:]).all() and not np.isnan(on[:, 2:8]).any()


def test_heatmap_files_match_the_colour_map(tmp_path, rng):
    image = ImageData(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "img.png")
    values = rng.normal(size=(3, 4)).astype(np.float32)
    item = ExportItem("activation", "block/conv", values, Frame(0, 0, 16, 12), "mean", image="img.png")
    style = ExportStyle("inferno", "per_map", alpha=0.4, legend=True)
    entry = ArtifactWriter(tmp_path, style).write(item, image, "img/act")
    png = _png(tmp_path / entry["png"])
    unit, (lo, hi) = normalize(values, "per_map")
    expected = colormap_lut("inferno")[to_indices(resize_bilinear(unit[:, :, None], 12, 16)[:, :, 0])]
    assert png.shape == (12, 16, 4) and (png[:, :, 3] == 255).all()
    assert np.abs(png[:, :, :3].astype(int) - expected).max() <= 1  # rounding at bin edges
    raw = np.load(tmp_path / entry["npy"])
    assert raw.dtype == np.float32 and np.array_equal(raw, values)
    over = _png(tmp_path / entry["files"]["overlay"]["path"])
    blend = image.array * 0.6 + png[:, :, :3] * 0.4
    assert np.abs(over.astype(float) - blend).max() <= 1.0
    assert entry["colour_range"] == pytest.approx([lo, hi])
    legend = _png(tmp_path / entry["files"]["legend"]["path"])
    assert legend.shape == tuple(entry["files"]["legend"]["shape"])
    # the bar runs through the colour map from left to right
    bar = legend[16, 8:-8, :3].astype(int)
    assert np.abs(bar[0] - colormap_lut("inferno")[0]).max() <= 2
    assert np.abs(bar[-1] - colormap_lut("inferno")[255]).max() <= 2
    assert entry["layer"] == "block/conv" and entry["kind"] == "activation" and entry["method"] == "mean"


def test_grid_montage_and_masks_and_binary(tmp_path, rng):
    image = ImageData(rng.integers(0, 65535, (8, 8, 1), dtype=np.uint16), "g.tif", 65535.0)
    tiles = rng.random((5, 4, 4)).astype(np.float32)
    writer = ArtifactWriter(tmp_path, ExportStyle())
    grid = writer.write(ExportItem("activation", "c", tiles, Frame(0, 0, 8, 8), "grid", tiles=tiles), image, "grid")
    montage = _png(tmp_path / grid["files"]["grid"]["path"])
    # 3x2 tiles of 4 px with 1 px gaps, enlarged 12x; transparent gaps and unused tile
    assert montage.shape == ((2 * 5 - 1) * 12, (3 * 5 - 1) * 12, 4)
    assert montage[4 * 12, 0, 3] == 0 and montage[0, 0, 3] == 255
    assert np.load(tmp_path / grid["npy"]).shape == (5, 4, 4)

    soft = rng.random((8, 8)).astype(np.float32)
    m = writer.write(ExportItem("mask", "m", soft, Frame(0, 0, 8, 8)), image, "mask")
    png = _png(tmp_path / m["png"])
    assert png.dtype == np.uint16 and np.abs(png / 65535.0 - soft).max() <= 1 / 65535
    assert np.array_equal(np.load(tmp_path / m["npy"]), soft)

    binary = rng.random((4, 4)) > 0.5
    b = writer.write(ExportItem("binary", "seg", binary, Frame(0, 0, 8, 8), "otsu"), image, "bin")
    assert np.array_equal(_png(tmp_path / b["png"]), binary.astype(np.uint8) * 255)
    assert np.load(tmp_path / b["npy"]).dtype == np.bool_
    over = _png(tmp_path / b["files"]["overlay"]["path"]).astype(int)
    grey = image_rgb(image).astype(int)
    inside = np.repeat(np.repeat(binary, 2, axis=0), 2, axis=1)
    assert (over[~inside] == grey[~inside]).all() and (over[inside] != grey[inside]).any()


def test_vector_predictions_are_npy_only(tmp_path):
    scores = np.array([0.1, 0.7, 0.2], np.float32)
    entry = ArtifactWriter(tmp_path, ExportStyle(formats=("png",))).write(
        ExportItem("prediction", "probs", scores, None, "scores"), None, "p"
    )
    assert entry["png"] is None and np.array_equal(np.load(tmp_path / entry["npy"]), scores)


def test_manifest_streams_entries_and_lists_failures(tmp_path):
    m = Manifest(tmp_path)
    for i in range(1000):
        m.add({"image": f"{i}.png", "kind": "activation", "value": np.float32(i) / 2, "bad": float("nan")})
    m.add_failure("x.png", "no such file")
    path = m.finish({"model": {"path": "m.keras", "sha256": "ab"}, "settings": {"reduce": "mean"}})
    data = read_manifest(tmp_path)
    assert path.name == "manifest.json" and data["artifact_count"] == 1000
    assert [a["value"] for a in data["artifacts"][:3]] == [0.0, 0.5, 1.0]
    assert data["artifacts"][0]["bad"] is None  # NaN is not JSON
    assert data["failures"] == [{"image": "x.png", "error": "no such file"}]
    assert data["tool"] == "maskviewer" and data["version"]
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # the spool is gone


def test_export_items_refuses_to_overwrite(tmp_path, rng):
    image = ImageData(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "a.png")
    item = ExportItem("cam", "conv", rng.random((3, 3)).astype(np.float32), Frame(0, 0, 6, 6), "gradcam", 2, "a.png")
    export_items(tmp_path, [item], {"a.png": image})
    before = (tmp_path / "cam_conv_gradcam_class2.png").read_bytes()
    with pytest.raises(ExportError, match="exist"):
        export_items(tmp_path, [item], {"a.png": image}, style=ExportStyle("turbo"))
    assert (tmp_path / "cam_conv_gradcam_class2.png").read_bytes() == before
    manifest = export_items(tmp_path, [item], {"a.png": image}, style=ExportStyle("turbo"), overwrite=True)
    data = json.loads(manifest.read_text())
    for entry in data["artifacts"]:
        for _role, rec in iter_files(entry):
            assert (tmp_path / rec["path"]).exists()


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        check_writable(blocker)
    with pytest.raises(ExportError, match="Cannot write to the output folder"):
        check_writable(blocker / "sub")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ExportError, match="Permission denied"):
                check_writable(locked)
        finally:
            locked.chmod(0o700)


def test_bad_style_is_explained():
    with pytest.raises(ExportError, match="colour map"):
        ExportStyle("rainbow")
    with pytest.raises(ExportError, match="format"):
        ExportStyle(formats=("jpg",))
    with pytest.raises(ExportError, match="opacity"):
        ExportStyle(alpha=2.0)


@pytest.mark.parametrize(
    "shape,dtype", [((9, 7), np.uint8), ((9, 7), np.uint16), ((9, 7, 2), np.uint8), ((9, 7, 3), np.uint8), ((9, 7, 4), np.uint8)]
)
def test_png_encoder_round_trips_through_pillow(tmp_path, rng, shape, dtype):
    from maskviewer.io.export import save_png

    a = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    save_png(tmp_path / "a.png", a)
    back = np.asarray(Image.open(tmp_path / "a.png"))
    assert back.shape == a.shape and np.array_equal(back, a)


def test_a_batch_writes_the_same_files_as_item_by_item(tmp_path, rng):
    """write_batch colours same-sized maps together: every byte equals writing them one by one."""
    from maskviewer.io.export import ArtifactWriter, ExportItem, ExportStyle

    images = [ImageData(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), f"i{k}.png") for k in range(3)]
    grey = ImageData(rng.integers(0, 256, (9, 9, 1), dtype=np.uint8), "g.png")
    full, fit = Frame(0, 0, 16, 12), Frame(0.0, -2.0, 16.0, 16.0)
    flat = np.full((3, 4), 2.0, np.float32)  # no range: all one colour
    with_nan = rng.normal(size=(3, 4)).astype(np.float32)
    with_nan[1, 2] = np.nan
    jobs = []
    for k, image in enumerate(images):
        for name, frame in (("a", full), ("b", fit)):
            jobs.append((ExportItem("activation", name, rng.normal(size=(3, 4)).astype(np.float32), frame,
                                    "mean", image=image.path), image, f"{k}/{name}"))
        jobs.append((ExportItem("cam", "c", rng.random((6, 8)).astype(np.float32), full, "gradcam",
                                class_index=1, image=image.path, vrange=(0.0, 1.0)), image, f"{k}/cam"))
    jobs += [
        (ExportItem("activation", "a", flat, full, "mean", image="i0.png"), images[0], "0/flat"),
        (ExportItem("activation", "a", with_nan, full, "mean", image="i1.png"), images[1], "1/nan"),
        (ExportItem("activation", "a", rng.normal(size=(3, 3)).astype(np.float32), Frame(0, 0, 9, 9), "mean",
                    image="g.png"), grey, "g/a"),
        (ExportItem("activation", "a", rng.normal(size=(3, 4)).astype(np.float32), full, "mean"), None, "none/a"),
        (ExportItem("mask", "m", (rng.random((12, 16)) > 0.5).astype(np.float32), full, "m", image="i2.png"),
         images[2], "2/mask"),
        (ExportItem("prediction", "p", rng.random(5).astype(np.float32), None, "scores", image="i2.png"),
         images[2], "2/p"),
    ]
    for style in (ExportStyle(), ExportStyle("magma", "percentile", 0.3), ExportStyle("grey", "shared", 1.0)):
        one, many = tmp_path / f"one_{style.colormap}", tmp_path / f"many_{style.colormap}"
        w1, w2 = ArtifactWriter(one, style, durable=False), ArtifactWriter(many, style, durable=False)
        singles = [w1.write(item, image, stem) for item, image, stem in jobs]
        batch = w2.write_batch(jobs)
        assert singles == batch
        names = sorted(p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(many).as_posix() for p in many.rglob("*") if p.is_file())
        assert len(names) == 12 * 3 + 2 + 3 + 1  # npy, png, overlay per map; none without an image
        for name in names:
            assert (one / name).read_bytes() == (many / name).read_bytes(), name


def test_a_batch_reports_a_taken_file_in_its_place(tmp_path, rng):
    from maskviewer.io.export import ArtifactWriter, ExportError, ExportItem

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "b.npy").write_bytes(b"mine")
    writer = ArtifactWriter(tmp_path, durable=False)
    item = ExportItem("prediction", "p", rng.random(3).astype(np.float32), None, "scores")
    results = writer.write_batch([(item, None, "x/a"), (item, None, "x/b"), (item, None, "x/a")])
    assert isinstance(results[0], dict) and isinstance(results[1], ExportError) and isinstance(results[2], ExportError)
    assert (tmp_path / "x" / "b.npy").read_bytes() == b"mine"


def test_stacked_npy_rows_and_no_partial_file(tmp_path, rng):
    from maskviewer.io.export.writing import NpyStack
    from maskviewer.io.npy import read_npy_header

    rows = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(11)]
    stack = NpyStack(tmp_path / "s.npy", (4, 3), np.float32)
    assert [stack.append(r) for r in rows] == list(range(11))
    assert not (tmp_path / "s.npy").exists()  # in place only when finished
    with pytest.raises(ValueError, match="does not fit"):
        stack.append(np.zeros((3, 4), np.float32))
    stack.close()
    assert read_npy_header(tmp_path / "s.npy") == ((11, 4, 3), np.dtype(np.float32))
    assert np.array_equal(np.load(tmp_path / "s.npy"), np.stack(rows))
    bools = NpyStack(tmp_path / "b.npy", (), np.bool_)
    bools.append(np.bool_(True))
    bools.close()
    assert np.load(tmp_path / "b.npy").tolist() == [True]
    dropped = NpyStack(tmp_path / "d.npy", (2,), np.float32)
    dropped.append(np.ones(2, np.float32))
    dropped.abandon()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy", "s.npy"]


@pytest.mark.parametrize("shape,dtype", [((3, 4), "<f4"), ((), "|b1"), ((10,), "<f4"), ((2, 3, 4, 5), "<u2")])
def test_npy_files_are_what_numpy_save_writes(tmp_path, rng, shape, dtype):
    import io

    from maskviewer.io.export import save_npy

    a = (rng.random(shape) * 100).astype(dtype)
    save_npy(tmp_path / "a.npy", a)
    expected = io.BytesIO()
    np.save(expected, a)
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()
    assert oct(os.stat(tmp_path / "a.npy").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_only_the_naming_module_makes_file_names():
    """No module of the export but naming spells a file suffix or joins a relative path."""
    import ast
    from pathlib import Path

    import maskviewer.io.export as package

    root = Path(package.__file__).parent
    suffixes = (".png", ".npy", ".json", "_overlay.", "_legend.", "_grid.")
    found = []
    for path in sorted(root.glob("*.py")):
        if path.name == "naming.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
                if any(s in text for s in suffixes) and " " not in text:
                    found.append(f"{path.name}:{node.lineno}: {text!r}")
            if isinstance(node, ast.JoinedStr):
                parts = [p.value for p in node.values if isinstance(p, ast.Constant)]
                if any("/" in p or any(s in p for s in suffixes) for p in parts):
                    found.append(f"{path.name}:{node.lineno}: f-string {parts!r}")
    assert found == []


def test_written_files_are_the_planned_names(tmp_path, rng):
    from maskviewer.io.export import naming

    image = ImageData(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "dir/my image.png")
    frame = Frame(0, 0, 8, 8)
    items = [
        ExportItem("activation", "block/conv 1", rng.random((4, 4)).astype(np.float32), frame, "top3",
                   image=image.path),
        ExportItem("cam", "conv", rng.random((4, 4)).astype(np.float32), frame, "gradcam++", 2, image.path),
        ExportItem("activation", "c", rng.random((3, 2, 2)).astype(np.float32), frame, "grid", image=image.path,
                   tiles=rng.random((3, 2, 2)).astype(np.float32)),
        ExportItem("mask", "m", (rng.random((8, 8)) > 0.5).astype(np.float32), frame, image=image.path),
        ExportItem("prediction", "probs", rng.random(3).astype(np.float32), None, "scores", image=image.path),
    ]
    style = ExportStyle(legend=True)
    prefix = naming.image_prefix(image.path)
    assert prefix == "my_image"
    manifest = export_items(tmp_path, items, {image.path: image}, style=style, prefix=prefix)
    written = {p for p in tmp_path.rglob("*") if p.is_file() and p != manifest}
    planned = set(naming.planned(ArtifactWriter(tmp_path, style), items, {image.path: image}, prefix))
    assert written and written <= planned
    for item, entry in zip(items, read_manifest(manifest)["artifacts"], strict=True):
        stem = naming.prefixed(prefix, item.stem())
        for role, rec in iter_files(entry):
            assert rec["path"] == naming.file_name(stem, role)
