"""The Binarise tool in the real window: slider, shown Dice, methods, references, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import filters

from maskviewer.core.metrics import DICE_EPS
from tests.conftest import wait_prediction


@pytest.fixture(scope="module")
def seg_files(tmp_path_factory):
    """A tiny conv net with a 1-channel sigmoid head, an autoencoder with two heads, an image."""
    import keras
    from PIL import Image

    folder = tmp_path_factory.mktemp("binarise")
    keras.utils.set_random_seed(5)
    inp = keras.Input((24, 24, 1), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    keras.Model(inp, out, name="seg").save(folder / "seg.keras")

    inp = keras.Input((24, 24, 3), name="rgb")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="enc")(inp)
    recon = keras.layers.Conv2D(3, 1, activation="sigmoid", name="recon")(x)
    wm = keras.layers.Conv2D(1, 1, activation="sigmoid", name="watermark")(x)
    count = keras.layers.Dense(1, name="count")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, {"recon": recon, "watermark": wm, "count": count}, name="ae").save(folder / "ae.keras")

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    grey = ((yy - 12) ** 2 + (xx - 10) ** 2 < 40) * 180 + rng.integers(0, 60, (24, 24))
    Image.fromarray(grey.astype(np.uint8)).save(folder / "img.png")
    Image.fromarray(np.dstack([grey, grey[::-1], grey[:, ::-1]]).astype(np.uint8)).save(folder / "rgb.png")
    return folder


def _open(qtbot, win, model, image):
    tool = win.tools["binarise"]
    win.controller.open_image(str(image))
    win.controller.open_model(str(model))
    pred = wait_prediction(qtbot, win)
    assert pred is not None, win.controller.last_prediction_error
    qtbot.waitUntil(lambda: tool.cache is not None, timeout=20_000)
    return tool, pred


def _keras_output(path, pred, input_name, output=None):
    """The model's own numbers for the inputs the app fed."""
    import keras

    model = keras.models.load_model(path)
    y = model(pred.inputs[input_name][None], training=False)
    y = y[output] if output is not None else y
    return np.asarray(y)[0]


def _dice(a, b, eps=DICE_EPS):
    a, b = a.astype(bool), b.astype(bool)
    return (2 * np.sum(a & b) + eps) / (a.sum() + b.sum() + eps)


def test_slider_moves_and_shown_dice_follows(qtbot, window, seg_files, tmp_path):
    tool, pred = _open(qtbot, window, seg_files / "seg.keras", seg_files / "img.png")
    y = _keras_output(seg_files / "seg.keras", pred, "pixels")[:, :, 0]
    np.testing.assert_allclose(tool.cache.values, y, rtol=1e-5, atol=1e-6)
    assert tool.threshold == 0.5 and tool.panel.spin.value() == 0.5

    rng = np.random.default_rng(1)
    ref = y > np.quantile(y, 0.6)
    ref ^= rng.random(ref.shape) > 0.9  # a reference that disagrees here and there
    assert tool.set_reference(ref, "hand-made")
    qtbot.waitUntil(lambda: tool.scorer is not None, timeout=10_000)

    p = tool.panel
    for step in (250, 500, 730):
        p.slider.setValue(step)
        t = y.min() + (y.max() - y.min()) * step / 1000
        assert tool.threshold == pytest.approx(t, rel=1e-6)
        want = _dice(y > tool.threshold, ref)
        assert p.shown_score("dice") == f"{want:.4f}"
        assert float(p.shown_score("dice")) == pytest.approx(want, abs=5e-5)
        inter = np.sum((y > tool.threshold) & ref)
        assert p.shown_score("iou") == f"{(inter + DICE_EPS) / (np.sum((y > tool.threshold) | ref) + DICE_EPS):.4f}"
        assert p.shown_score("tp") == f"{inter:,}"
        # what the canvas shows is the exact binary mask
        lut = tool.map_item.lut
        shown = np.asarray(lut)[tool.map_item.image][..., 3] > 0
        np.testing.assert_array_equal(shown, y > tool.threshold)
        # the error overlay: TP/FN inside the reference, FP outside
        p.errors.setChecked(True)
        tp_fn = np.asarray(tool.err_in.lut)[tool.err_in.image]
        assert np.array_equal(np.all(tp_fn[..., :3] == (40, 200, 60), axis=2), (y > tool.threshold) & ref)

    # the Dice curve's best threshold beats every threshold on its grid
    c = tool.curve
    brute = [_dice(y > t, ref) for t in c.thresholds]
    assert c.best_dice == pytest.approx(max(brute), abs=1e-12)
    p.use_best.click()
    assert tool.threshold == c.best_threshold
    assert float(p.shown_score("dice")) == pytest.approx(max(brute), abs=5e-5)

    # inverted polarity
    p.invert.setChecked(True)
    assert p.shown_score("dice") == f"{_dice(y <= tool.threshold, ref):.4f}"
    p.invert.setChecked(False)

    # methods equal scikit-image on the same output
    for method in ("otsu", "yen", "isodata"):
        tool.apply_method(method)
        assert tool.threshold == float(getattr(filters, f"threshold_{method}")(tool.cache.values))
    tool.apply_method("li")  # on the worker
    want_li = float(filters.threshold_li(tool.cache.values))
    qtbot.waitUntil(lambda: tool.threshold == want_li, timeout=10_000)
    assert "Li" in p.method_label.text()

    # exports: the exact mask and the scores on screen
    assert tool.export_mask(tmp_path / "m.png") and tool.export_mask(tmp_path / "m.npy")
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "m.png"))
    np.testing.assert_array_equal(png, (y > tool.threshold) * 255)
    npy = np.load(tmp_path / "m.npy")
    assert npy.dtype == bool
    np.testing.assert_array_equal(npy, y > tool.threshold)
    assert tool.export_scores(tmp_path / "s.json") and tool.export_scores(tmp_path / "s.csv")
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["dice"] == pytest.approx(_dice(y > tool.threshold, ref), rel=1e-12)
    assert rec["method"] == "li" and rec["threshold"] == want_li
    csv_rows = dict(line.split(",", 1) for line in (tmp_path / "s.csv").read_text().splitlines()[1:])
    assert float(csv_rows["dice"]) == pytest.approx(rec["dice"], rel=1e-12)
    assert not tool.export_mask(tmp_path / "m.jpg")  # refused with a message
    assert "png or .npy" in window.last_error[1]


def test_reference_of_another_size_is_offered_a_resize(qtbot, window, seg_files, tmp_path):
    from PIL import Image

    tool, pred = _open(qtbot, window, seg_files / "seg.keras", seg_files / "img.png")
    y = tool.cache.values
    big = np.zeros((48, 48), np.uint8)
    big[10:30, 8:28] = 255
    Image.fromarray(big).save(tmp_path / "big.png")

    asked = []
    tool.confirm = lambda title, text: asked.append(text) or False
    assert not tool.load_reference(tmp_path / "big.png")
    assert asked and "48×48" in asked[0] and "24×24" in asked[0]
    assert tool.scorer is None and "not used" in tool.panel.ref_label.text()

    tool.confirm = lambda title, text: True
    assert tool.load_reference(tmp_path / "big.png")
    qtbot.waitUntil(lambda: tool.scorer is not None, timeout=10_000)
    ref = big[::2, ::2] > 0  # nearest neighbour at half size
    assert tool.panel.shown_score("dice") == f"{_dice(y > tool.threshold, ref):.4f}"

    # a painted mask (image pixels) is sampled through the input's frame, no question asked
    painted = np.zeros((24, 24), bool)
    painted[5:15, 3:20] = True
    tool.confirm = lambda title, text: pytest.fail("no resize question for a painted mask")
    tool.reference_provider = lambda: ("painted", painted)
    assert tool.use_painted_reference()
    qtbot.waitUntil(lambda: tool.reference_name == "painted" and tool.scorer is not None, timeout=10_000)
    assert tool.panel.shown_score("dice") == f"{_dice(y > tool.threshold, painted):.4f}"

    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert not tool.load_reference(tmp_path / "bad.png")
    assert window.last_error[0] == "Cannot use this reference"


def test_not_image_shaped_output_is_explained(qtbot, window, model_files, seg_files):
    tool = window.tools["binarise"]
    window.controller.open_image(str(seg_files / "rgb.png"))
    window.controller.open_model(str(model_files["rgb"]))
    wait_prediction(qtbot, window)
    qtbot.waitUntil(lambda: bool(tool.sources), timeout=10_000)
    text = tool.panel.info.text()
    assert "not an image" in text and "(5,)" in text
    assert not tool.panel.slider.isEnabled()


def test_nan_and_inf_are_reported_and_histogram_works(qtbot, window, seg_files):
    tool, _pred = _open(qtbot, window, seg_files / "seg.keras", seg_files / "img.png")
    a = np.random.default_rng(3).random((20, 30)).astype(np.float32)
    a[0, :4] = np.nan
    a[1, :2] = np.inf
    tool.add_source("activation", a)
    qtbot.waitUntil(lambda: "activation" in tool.caches, timeout=10_000)
    tool.panel.source.setCurrentIndex(list(tool.sources).index("activation"))
    assert tool.current == "activation"
    warning = tool.panel.warning.text()
    assert "4 NaN" in warning and "2 +inf" in warning
    finite = a[np.isfinite(a)]
    np.testing.assert_array_equal(tool.cache.hist, np.histogram(finite, 256)[0])
    tool.apply_method("otsu")
    assert tool.threshold == float(filters.threshold_otsu(finite))


def test_autoencoder_side_by_side(qtbot, window, seg_files):
    tool, pred = _open(qtbot, window, seg_files / "ae.keras", seg_files / "rgb.png")
    names = list(tool.sources)
    assert "watermark" in names and "recon [channel 0]" in names and "count" in names
    tool.panel.source.setCurrentIndex(names.index("watermark"))
    window.tools["binarise"].gallery_dock.show()
    tool._rebuild_gallery()
    tiles = tool.gallery.tiles
    assert {"input", "reconstruction", "map:watermark", "binary:watermark", "difference"} <= set(tiles)
    recon = _keras_output(seg_files / "ae.keras", pred, "rgb", "recon")
    want = np.abs(pred.inputs["rgb"] - recon).mean(axis=2)
    np.testing.assert_allclose(tool.difference, want, atol=1e-5)
    # the binary tile follows the threshold exactly
    tool.set_threshold(0.45)
    tile = tiles["binary:watermark"]
    shown = np.asarray(tile.item.lut)[tile.item.image][..., 0] == 255
    np.testing.assert_array_equal(shown, tool.cache.values > 0.45)
    tool.gallery.all_outputs.setChecked(True)
    assert "binary:recon [channel 2]" in tool.gallery.tiles
    window.grab().save(str(seg_files / "binarise_window.png"))
