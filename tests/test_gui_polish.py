"""What a new user sees first: empty states, legends, the demo banner, kernels, side by side."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRectF

from maskviewer.core.metrics import FN_COLOUR, FP_COLOUR, TP_COLOUR
from maskviewer.demo import get_demo
from maskviewer.gui.demo_banner import DemoBanner, try_text
from tests.conftest import wait_prediction

KERNEL_MAX = 0.7  # the largest |w| of the test convolution, on a negative weight


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """A sigmoid-mask model, an autoencoder with a mask head, a 9-filter conv net, two images."""
    import keras
    from PIL import Image

    folder = tmp_path_factory.mktemp("polish")
    keras.utils.set_random_seed(3)
    inp = keras.Input((24, 32, 1), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    keras.Model(inp, out, name="seg").save(folder / "seg.keras")

    inp = keras.Input((24, 32, 3), name="rgb")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="enc")(inp)
    recon = keras.layers.Conv2D(3, 1, activation="sigmoid", name="recon")(x)
    mark = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mark")(x)
    keras.Model(inp, {"recon": recon, "mark": mark}, name="ae").save(folder / "ae.keras")

    inp = keras.Input((12, 12, 1), name="img")
    conv = keras.layers.Conv2D(9, 3, name="conv9")
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(conv(inp)))
    model = keras.Model(inp, y, name="k9")
    w = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 3, 1, 9)).astype(np.float32)
    w[2, 1, 0, 4] = -KERNEL_MAX
    conv.kernel.assign(w)
    model.save(folder / "k9.keras")
    np.save(folder / "k9_kernel.npy", w)

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :32]
    grey = ((yy - 12) ** 2 + (xx - 14) ** 2 < 50) * 180 + rng.integers(0, 60, (24, 32))
    Image.fromarray(grey.astype(np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.dstack([grey, grey[::-1], grey[:, ::-1]]).astype(np.uint8)).save(folder / "rgb.png")
    Image.fromarray(((grey > 120) * 255).astype(np.uint8)).save(folder / "ref.png")
    return folder


def _open(qtbot, win, model, image):
    win.controller.open_image(str(image))
    win.controller.open_model(str(model))
    pred = wait_prediction(qtbot, win)
    assert pred is not None, win.controller.last_prediction_error
    return pred


def _rgb(colour) -> str:
    return f"rgb({colour[0]},{colour[1]},{colour[2]})"


# -- Binarise: empty histogram, legends --------------------------------------------------------


def test_histogram_says_what_to_do_until_there_is_data_then_draws_it(qtbot, window, small_files):
    tool = window.tools["binarise"]
    p = tool.panel
    assert p.hist_box.is_empty() and "histogram" in p.hist_box.text()
    assert not p.hist_plot.isVisibleTo(p) and not p.hist_legend.isVisibleTo(p)  # no axes that mean nothing
    assert p.curve_box.is_empty() and "reference" in p.curve_box.text()

    pred = _open(qtbot, window, small_files / "seg.keras", small_files / "grey.png")
    qtbot.waitUntil(lambda: tool.cache is not None, timeout=20_000)
    assert not p.hist_box.is_empty() and p.hist_plot.isVisibleTo(p)
    values = np.asarray(pred.outputs["mask"])[..., 0]
    want, _ = np.histogram(values, bins=tool.cache.edges)  # numpy's own count of the output
    x, y = p.hist_plot.curve.getData()
    np.testing.assert_array_equal(x, tool.cache.edges)
    np.testing.assert_allclose(y, np.log10(1 + want))
    (x0, x1), _ = p.hist_plot.viewRange()
    assert x0 <= values.min() and x1 >= values.max()

    # the lines are named, with their values
    tool.set_threshold(0.3)
    legend = p.hist_legend.text()
    assert p.hist_legend.isVisibleTo(p) and "threshold 0.3" in legend and "best Dice (with a reference)" in legend
    assert tool.load_reference(small_files / "ref.png")
    qtbot.waitUntil(lambda: tool.curve is not None, timeout=20_000)
    best = tool.curve.best_threshold
    assert f"best Dice at {best:.4g}" in p.hist_legend.text()
    assert p.hist_plot.best_line.isVisible() and p.hist_plot.best_line.value() == pytest.approx(best)
    assert not p.curve_box.is_empty() and p.curve_legend.isVisibleTo(p)

    # the TP / FP / FN legend shows the colours the overlay draws with
    legend = p.errors_legend.text()
    for colour, name in ((TP_COLOUR, "TP"), (FP_COLOUR, "FP"), (FN_COLOUR, "FN")):
        assert f"{_rgb(colour)}; font-weight: bold;\">■</span> {name}" in legend
    p.errors.setChecked(True)
    lut = np.asarray(tool.err_in.lut)
    assert any(tuple(row[:3]) == TP_COLOUR[:3] for row in lut)
    assert any(tuple(row[:3]) == FN_COLOUR[:3] for row in lut)
    assert any(tuple(row[:3]) == FP_COLOUR[:3] for row in np.asarray(tool.err_out.lut))


def test_histogram_of_an_output_that_is_not_an_image_says_so(qtbot, window, small_files):
    tool = window.tools["binarise"]
    _open(qtbot, window, small_files / "k9.keras", small_files / "grey.png")
    qtbot.waitUntil(lambda: bool(tool.sources), timeout=10_000)
    name = next(iter(tool.sources))
    qtbot.waitUntil(lambda: name in tool.panel.hist_box.text(), timeout=5_000)
    assert tool.panel.hist_box.is_empty() and "is not an image" in tool.panel.hist_box.text()


# -- Demos: the banner ---------------------------------------------------------------------------


def _banner(window) -> DemoBanner:
    banners = window.findChildren(DemoBanner)
    assert len(banners) == 1
    return banners[0]


def test_demo_banner_stays_closes_is_replaced_and_goes_with_another_model(qtbot, window, small_files):
    from maskviewer.gui.demo_gallery import open_demo

    banner = _banner(window)
    assert not banner.isVisible()
    digits = open_demo(window, "digits")
    assert banner.isVisible()
    assert banner.text.text() == try_text(digits) and "Open another digit" in banner.text.text()
    assert "96.7%" in banner.title.text() and digits.title in banner.title.text()
    # it sits above the image, not in the status bar
    assert banner.mapTo(window, banner.rect().topLeft()).y() < window.canvas.mapTo(window, window.canvas.rect().topLeft()).y()
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=60_000)
    window.statusBar().showMessage("Loaded something else entirely")
    qtbot.wait(50)
    assert banner.isVisible() and banner.text.text() == try_text(digits)

    patches = open_demo(window, "patches")
    assert _banner(window) is banner and banner.isVisible()
    assert banner.text.text() == try_text(patches) and "four corner" in banner.text.text()
    assert "96.9%" in banner.title.text()
    qtbot.waitUntil(lambda: window.state.model_info is not None and "patch_digits" in window.state.model_info.path,
                    timeout=60_000)
    assert banner.isVisible()  # the demo's own model keeps it
    banner.close_button.click()
    assert not banner.isVisible()

    open_demo(window, "digits")
    assert banner.isVisible()
    qtbot.waitUntil(lambda: window.state.model_info is not None and "digits_cnn" in window.state.model_info.path,
                    timeout=60_000)
    assert banner.isVisible()
    window.controller.open_model(str(small_files / "seg.keras"))
    qtbot.waitUntil(lambda: window.state.model_info.path.endswith("seg.keras"), timeout=60_000)
    assert not banner.isVisible()


def test_every_demo_has_something_to_try():
    from maskviewer.demo import list_demos

    for demo in list_demos():
        text = try_text(demo)
        assert 20 < len(text) < 400, demo.name


def test_patches_demo_opens_with_its_vote_map_and_the_vote_in_view(qtbot, window):
    from maskviewer.gui.demo_gallery import open_demo

    window.resize(1024, 700)
    open_demo(window, "patches")
    tool = window.tools["patches"]
    qtbot.waitUntil(lambda: tool.combined is not None, timeout=60_000)
    p = tool.panel
    assert p.map_kind.currentData() == "score" and tool.model.results.map_kind == "score"
    values, kind = tool.map_values()
    np.testing.assert_allclose(values, tool.probs[:, tool.combined.label])
    assert tool.map_item.isVisible() and tool.map_item.image is not None
    label = p.result_label
    # all of the vote's line and the top of its bar chart, without scrolling
    qtbot.waitUntil(lambda: label.visibleRegion().boundingRect().height() >= label.height() - 1, timeout=5_000)
    assert p.bars.viewport().visibleRegion().boundingRect().height() >= 100


# -- Kernels -----------------------------------------------------------------------------------


def test_kernels_fill_a_near_square_grid_with_a_symmetric_colour_bar(qtbot, window, small_files):
    kt = window.tools["kernels"]
    p = kt.panel
    assert p.grid_box.is_empty() and "Open a model" in p.grid_box.text()
    _open(qtbot, window, small_files / "k9.keras", small_files / "grey.png")
    window.show_panel("Kernels")
    qtbot.waitUntil(lambda: kt.kernel is not None and p.grid is not None, timeout=30_000)
    w = np.load(small_files / "k9_kernel.npy")
    np.testing.assert_allclose(kt.kernel, w)
    assert not p.grid_box.is_empty()
    rows, cols = p.grid.rows, p.grid.cols
    assert rows * cols >= 9 and abs(rows - cols) <= 1
    lo, hi = p.color_bar.levels()
    assert lo == pytest.approx(-KERNEL_MAX) and hi == pytest.approx(KERNEL_MAX)
    shown = np.asarray(p.image.image)
    assert shown.shape[:2] == p.grid.rgb.shape[:2]

    # switch tap (1, 1) off: the editor cell and every kernel's tap are drawn differently
    def pixel(button):
        c = button.grab().toImage().pixelColor(3, 3)
        return c.red(), c.green(), c.blue()

    on_before = pixel(p.cells[1][1])
    p.cells[1][1].click()
    assert p.mask()[1, 1] == 0 and p.mask()[0, 0] == 1
    off, on = pixel(p.cells[1][1]), pixel(p.cells[0][0])
    assert on == on_before and sum(on) - sum(off) > 300  # light on, dark off
    assert p.cells[1][1].text() == "✕" and p.cells[0][0].text() == ""
    from maskviewer.gui.kernels.model import LUT

    shown = np.asarray(p.image.image)
    tap = p.grid.tap
    for (_i, o), (y, x) in p.grid.origins.items():
        for a, b in ((1, 1), (0, 0)):
            want = LUT[int(np.clip(np.round((w[a, b, 0, o] / KERNEL_MAX + 1) * 127.5), 0, 255))]
            cell = shown[y + a * tap : y + (a + 1) * tap, x + b * tap : x + (b + 1) * tap]
            if (a, b) == (0, 0):
                assert (cell == want).all()
            else:
                assert not (cell == want).all(axis=-1).any()
    assert "dimmed and crossed out" in p.mask_legend.text()


# -- Side by side ------------------------------------------------------------------------------


def _contains(view_range, w, h) -> bool:
    (x0, x1), (y0, y1) = view_range
    return x0 <= 0 and x1 >= w and y0 <= 0 and y1 >= h


def test_side_by_side_shows_every_picture_whole_with_linked_views(qtbot, window, small_files):
    window.resize(1024, 700)
    tool = window.tools["binarise"]
    _open(qtbot, window, small_files / "ae.keras", small_files / "rgb.png")
    qtbot.waitUntil(lambda: tool.cache is not None, timeout=20_000)
    tool.select_source("mark")
    window.show_panel("Binarise")
    tool.panel.side_by_side.click()
    side = tool.gallery_window
    qtbot.waitUntil(side.isVisible)
    gallery = tool.gallery
    assert {"input", "reconstruction", "map:mark", "binary:mark", "difference"} <= set(gallery.tiles)
    assert side.width() <= window.width() and side.height() <= window.height()
    w, h = 32, 24  # the input's size: every tile's picture spans it
    assert gallery.frame == (w, h)
    qtbot.waitUntil(lambda: all(_contains(t.vb.viewRange(), w, h) for t in gallery.tiles.values()), timeout=5_000)
    for key, tile in gallery.tiles.items():
        assert tile.view.width() >= 200 and tile.view.height() >= 150, key  # readable
        assert tile.item.mapRectToParent(tile.item.boundingRect()) == QRectF(0, 0, w, h)
    assert gallery.columns in (2, 3)

    # zoom one tile: all show the same part; Fit shows the whole pictures again
    first = gallery.tiles["input"].vb
    first.setRange(QRectF(4, 4, 8, 6), padding=0)
    first.sigRangeChangedManually.emit(first.state["mouseEnabled"])
    for tile in gallery.tiles.values():
        (x0, x1), (y0, y1) = tile.vb.viewRange()
        assert x0 <= 4 + 1e-6 and x1 >= 12 - 1e-6 and y0 <= 4 + 1e-6 and y1 >= 10 - 1e-6
        assert x1 - x0 < w / 2 and not _contains(tile.vb.viewRange(), w, h)
    gallery.fit_button.click()
    assert all(_contains(t.vb.viewRange(), w, h) for t in gallery.tiles.values())

    # the View menu opens the same window, filled
    side.close()
    act = next(a for a in window.view_menu.actions() if a.text().startswith("Side by Side"))
    act.trigger()
    qtbot.waitUntil(side.isVisible)
    assert len(gallery.tiles) == 5
    qtbot.waitUntil(lambda: all(_contains(t.vb.viewRange(), w, h) for t in gallery.tiles.values()), timeout=5_000)
    window.close()
    assert not side.isVisible()


def test_demo_names_in_the_banner_come_from_the_index():
    demo = get_demo("binary")
    assert "Otsu" in try_text(demo)
