"""The masks and kernels tools in the real window: mouse painting, feeding, ablation, files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from tests.conftest import wait_prediction

MASK3 = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32)


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _discard_on_close(request):
    """Closing the window after a test must not wait on the unsaved-masks question."""
    if "window" in request.fixturenames:
        request.getfixturevalue("window").tools["masks"].ask_unsaved = lambda: "discard"


def settle(qtbot, win, timeout=30_000):
    """Wait until no prediction is pending or running; return the latest prediction."""
    c = win.controller
    qtbot.waitUntil(lambda: not c._predict_timer.isActive() and not c.worker.busy(), timeout=timeout)
    return win.state.prediction


def view_pos(win, x, y):
    """Viewport position of image point (x, y) (view coordinates: pixel (r, c) spans c..c+1)."""
    scene = win.canvas.view.mapViewToScene(QPointF(x, y))
    return win.canvas.mapFromScene(scene)


def tf_resize(a, h, w):
    import tensorflow as tf

    return tf.image.resize(a[None], (h, w), method="bilinear", antialias=False).numpy()[0]


@pytest.fixture(scope="module")
def echo_models(tmp_path_factory, keras_mod):
    """Models whose outputs are their inputs: the app's prediction shows what the model received."""
    keras = keras_mod
    folder = tmp_path_factory.mktemp("echo")
    x = keras.Input((16, 16, 4), name="image")
    keras.Model(x, keras.layers.Activation("linear", name="echo")(x)).save(folder / "rgbm.keras")
    img = keras.Input((12, 12, 3), name="image")
    msk = keras.Input((12, 12, 1), name="attention_mask")
    outs = {
        "img": keras.layers.Activation("linear", name="img")(img),
        "msk": keras.layers.Activation("linear", name="msk")(msk),
    }
    keras.Model({"image": img, "attention_mask": msk}, outs).save(folder / "two.keras")
    return {"rgbm": folder / "rgbm.keras", "two": folder / "two.keras"}


@pytest.fixture
def rgb_png(tmp_path):
    arr = np.random.default_rng(7).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return path, arr


def open_both(qtbot, win, image_path, model_path):
    win.controller.open_image(image_path)
    win.controller.open_model(model_path)
    qtbot.waitUntil(lambda: win.state.model_info is not None, timeout=60_000)
    wait_prediction(qtbot, win)
    return settle(qtbot, win)


def paint_stroke(qtbot, win, points, modifier=Qt.KeyboardModifier.NoModifier):
    vp = win.canvas.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, modifier, view_pos(win, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, view_pos(win, *p))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, modifier, view_pos(win, *points[-1]))


# -- painting with the mouse updates the prediction -------------------------------------------


def test_mouse_stroke_updates_the_prediction(qtbot, window, model_files, rgb_png, keras_mod):
    path, arr = rgb_png
    tool = window.tools["masks"]
    open_both(qtbot, window, path, model_files["rgb"])
    tool.set_feed("multiply", "image")
    before = settle(qtbot, window)
    # an empty mask multiplied in: the model saw a black image
    assert not before.inputs["image"].any()
    tool.panel.size.setValue(8)
    tool.mode_bar.actions["brush"].trigger()  # painting needs paint mode (pan/zoom is the default)
    assert tool.tool == "brush"
    paint_stroke(qtbot, window, [(4, 5), (20, 20), (44, 36)])  # few, far-apart events
    mask = tool.current_mask().copy()
    assert mask.max() == 1.0
    # the painted band has no gaps: every pixel on the path is painted
    from skimage.draw import line

    for (x0, y0), (x1, y1) in (((4, 5), (20, 20)), ((20, 20), (44, 36))):
        rr, cc = line(int(y0 - 0.5), int(x0 - 0.5), int(y1 - 0.5), int(x1 - 0.5))
        assert np.all(mask[rr, cc] > 0)
    qtbot.waitUntil(lambda: window.state.prediction is not before, timeout=30_000)
    after = settle(qtbot, window)
    # the app's numbers are the model's numbers on image * mask
    x = tf_resize(arr / np.float32(255) * mask[:, :, None], 32, 32)
    np.testing.assert_allclose(after.inputs["image"], x, atol=1e-5)
    model = keras_mod.saving.load_model(model_files["rgb"])
    np.testing.assert_allclose(after.outputs["probs"], np.asarray(model(x[None]))[0], atol=1e-5)
    # the overlay shows the mask: its alpha channel is the mask, updated in place
    overlay = tool.overlays[id(tool.maskset.active)]
    np.testing.assert_array_equal(overlay.buffer()[:, :, 3], (mask * 255 + 0.5).astype(np.uint8))
    window.grab().save(str(path.parent / "painted.png"))


def test_shortcuts_undo_redo_and_tools(qtbot, window, rgb_png):
    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    for key, name in ((Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"), (Qt.Key.Key_B, "brush")):
        qtbot.keyClick(window, key)
        assert tool.tool == name
    size = tool.panel.size.value()
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert tool.panel.size.value() > size
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    assert tool.panel.size.value() < size
    blank = tool.current_mask().copy()
    paint_stroke(qtbot, window, [(10, 10), (30, 12)])
    painted = tool.current_mask().copy()
    assert painted.any()
    qtbot.keyClick(window, Qt.Key.Key_F)
    paint_stroke(qtbot, window, [(40, 35)])  # fill the background
    filled = tool.current_mask().copy()
    assert (filled == 1).all()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(tool.current_mask(), painted)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(tool.current_mask(), blank)
    redo = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window, Qt.Key.Key_Z, redo)
    np.testing.assert_array_equal(tool.current_mask(), painted)
    # shapes with the mouse
    tool.clear()
    tool.set_tool("rectangle")
    paint_stroke(qtbot, window, [(5.5, 6.5), (12.5, 20.5)])
    expected = np.zeros((40, 48), np.float32)
    expected[6:21, 5:13] = 1
    np.testing.assert_array_equal(tool.current_mask(), expected)


def test_several_masks_outline_and_current_mask(qtbot, window, rgb_png):
    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    first = tool.maskset.active
    second = tool.add_mask("ground truth")
    assert tool.maskset.names == ["mask", "ground truth"]
    assert tool.panel.mask_list.count() == 2
    tool.maskset.rectangle(2, 2, 9, 9)
    assert second.data.any() and not first.data.any()
    view = tool.current_mask()
    assert view is not None and not view.flags.writeable
    np.testing.assert_array_equal(view, second.data)
    tool.set_outline(True)
    alpha = tool.overlays[id(second)].buffer()[:, :, 3]
    ring = np.zeros((40, 48), bool)
    ring[2:10, 2:10] = True
    ring[3:9, 3:9] = False
    np.testing.assert_array_equal(alpha > 0, ring)
    tool.set_opacity(0.3)
    assert tool.overlays[id(first)].opacity() == pytest.approx(0.3)
    window.grab().save(str(path.parent / "outline.png"))


# -- feeding modes through the app: the model receives exactly the expected tensor ------------


def test_channel_mode_is_proposed_and_received(qtbot, window, echo_models, rgb_png):
    path, arr = rgb_png
    tool = window.tools["masks"]
    window.controller.open_image(path)
    mask = np.zeros((40, 48), np.float32)
    mask[10:30, 5:40] = 0.6  # soft: resized bilinearly like the image
    tool.maskset.replace(mask)
    open_both(qtbot, window, path, echo_models["rgbm"])
    assert tool.feed().mode == "channel" and tool.feed().input_name == "image"
    pred = settle(qtbot, window)
    expected = np.concatenate(
        [tf_resize(arr / np.float32(255), 16, 16), tf_resize(mask[:, :, None], 16, 16)], axis=2
    )
    np.testing.assert_allclose(pred.outputs["echo"], expected, atol=1e-6)


def test_separate_input_mode_is_proposed_and_received(qtbot, window, echo_models, rgb_png):
    path, arr = rgb_png
    tool = window.tools["masks"]
    window.controller.open_image(path)
    mask = np.zeros((40, 48), np.float32)
    mask[::3, ::2] = 1.0  # binary: nearest neighbour
    tool.maskset.replace(mask)
    open_both(qtbot, window, path, echo_models["two"])
    assert tool.feed().label == "input:attention_mask"
    pred = settle(qtbot, window)
    ys = np.minimum(np.floor((np.arange(12) + 0.5) * 40 / 12).astype(int), 39)
    xs = np.minimum(np.floor((np.arange(12) + 0.5) * 48 / 12).astype(int), 47)
    np.testing.assert_array_equal(pred.outputs["msk"][:, :, 0], mask[ys][:, xs])
    np.testing.assert_allclose(pred.outputs["img"], tf_resize(arr / np.float32(255), 12, 12), atol=1e-6)
    # switching to "none" feeds the image converted to grey instead of the mask
    tool.set_feed("none")
    pred = settle(qtbot, window)
    assert not np.array_equal(pred.outputs["msk"][:, :, 0], mask[ys][:, xs])


def test_ablation_numbers_are_the_models_numbers(qtbot, window, model_files, rgb_png, keras_mod):
    path, arr = rgb_png
    tool = window.tools["masks"]
    open_both(qtbot, window, path, model_files["rgb"])
    tool.set_feed("multiply", "image")
    tool.maskset.ellipse(5, 5, 30, 25)
    settle(qtbot, window)
    tool.run_ablation()
    qtbot.waitUntil(lambda: tool.ablation_results is not None, timeout=30_000)
    from maskviewer.core.mask_feed import ablation_masks

    model = keras_mod.saving.load_model(model_files["rgb"])
    variants = ablation_masks(tool.current_mask(), seed=0)
    assert list(tool.ablation_results) == list(variants)
    for name, m in variants.items():
        x = tf_resize(arr / np.float32(255) * m[:, :, None], 32, 32)
        np.testing.assert_allclose(
            tool.ablation_results[name]["probs"], np.asarray(model(x[None]))[0], atol=1e-5
        )
    table = tool.ablation_panel.table
    assert table.rowCount() == 5 and table.columnCount() == 7
    assert tool.ablation_dock.isVisible()
    window.grab().save(str(path.parent / "ablation.png"))


def test_ablation_without_a_fed_mask_explains(qtbot, window, model_files, rgb_png):
    path, _ = rgb_png
    open_both(qtbot, window, path, model_files["rgb"])
    tool = window.tools["masks"]
    assert tool.feed().mode == "none"  # an RGB model: nothing proposed
    assert tool.run_ablation() is None
    assert "not fed to the model" in window.last_error[1]


# -- files and closing ------------------------------------------------------------------------


def test_bad_mask_files_leave_the_mask_untouched(qtbot, window, rgb_png, tmp_path):
    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    tool.maskset.rectangle(1, 1, 5, 5)
    before = tool.current_mask().copy()
    (tmp_path / "text.png").write_text("not an image")
    np.save(tmp_path / "big.npy", np.full((40, 48), 3.0, np.float32))
    for bad, words in (("text.png", "could not be read"), ("big.npy", "values range from 3 to 3")):
        assert not tool.load_mask_file(tmp_path / bad)
        assert words in window.last_error[1]
        np.testing.assert_array_equal(tool.current_mask(), before)
    # another size: asked; "no" leaves the mask as it was, "yes" resizes with nearest neighbour
    small = np.zeros((20, 24), np.uint8)
    small[5:10, 6:12] = 255
    Image.fromarray(small).save(tmp_path / "small.png")
    questions = []
    tool.ask = lambda title, text: questions.append(text) or False
    assert not tool.load_mask_file(tmp_path / "small.png")
    assert "24×20" in questions[0] and "48×40" in questions[0]
    np.testing.assert_array_equal(tool.current_mask(), before)
    tool.ask = lambda title, text: True
    assert tool.load_mask_file(tmp_path / "small.png")
    np.testing.assert_array_equal(tool.current_mask(), np.kron(small / 255.0, np.ones((2, 2))))
    tool.undo()  # loading is one undoable edit (the error boxes still hold the keyboard focus)
    np.testing.assert_array_equal(tool.current_mask(), before)


def test_save_and_closing_with_unsaved_masks_asks(qtbot, window, rgb_png, tmp_path):
    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    assert tool.can_close()  # nothing painted: no question
    tool.maskset.rectangle(3, 3, 10, 10)
    asked = []
    tool.ask_unsaved = lambda: asked.append(1) or "cancel"
    window.close()
    assert asked and window.isVisible()  # cancelled: the window stays
    out = tmp_path / "saved"
    out.mkdir()
    tool.ask_unsaved = lambda: "save"
    tool.pick_save_dir = lambda: str(out)
    assert tool.can_close()
    saved = out / "photo_mask.png"
    from maskviewer.io.masks import load_mask

    np.testing.assert_array_equal(load_mask(saved), tool.current_mask())
    assert not tool.maskset.dirty
    assert tool.save_mask_file(tmp_path / "m.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), tool.current_mask())


# -- kernel masks -----------------------------------------------------------------------------


def test_kernel_mask_changes_predictions_and_resets(qtbot, window, model_files, rgb_png, keras_mod):
    path, arr = rgb_png
    before = open_both(qtbot, window, path, model_files["rgb"])
    kt = window.tools["kernels"]
    assert [kt.panel.layer.itemText(i) for i in range(kt.panel.layer.count())] == ["conv1", "conv2"]
    qtbot.waitUntil(lambda: kt.kernel is not None, timeout=30_000)
    assert kt.kernel.shape == (3, 3, 3, 8) and len(kt.panel.cells) == 3
    kt.panel.cells[0][2].setChecked(False)
    kt.panel.cells[2][0].setChecked(False)
    np.testing.assert_array_equal(kt.panel.mask(), MASK3)
    kt.apply_mask()
    qtbot.waitUntil(lambda: kt.applied is not None, timeout=30_000)
    qtbot.waitUntil(lambda: window.state.prediction is not before, timeout=30_000)
    masked = settle(qtbot, window)
    model = keras_mod.saving.load_model(model_files["rgb"])
    x = tf_resize(arr / np.float32(255), 32, 32)[None]
    original = np.asarray(model(x))[0]
    np.testing.assert_allclose(before.outputs["probs"], original, atol=1e-5)
    layer = model.get_layer("conv1")
    layer.kernel.assign(layer.kernel.numpy() * MASK3[:, :, None, None])
    np.testing.assert_allclose(masked.outputs["probs"], np.asarray(model(x))[0], atol=1e-5)
    assert not np.allclose(masked.outputs["probs"], original, atol=1e-6)
    np.testing.assert_allclose(kt.kernel[0, 2], 0)  # the grid shows the masked kernels
    assert "unchanged" in kt.panel.status.text()
    window.grab().save(str(path.parent / "kernels.png"))
    kt.reset()
    qtbot.waitUntil(lambda: kt.applied is None and "as loaded" in kt.panel.status.text(), timeout=30_000)
    reset = settle(qtbot, window)
    np.testing.assert_allclose(reset.outputs["probs"], original, atol=1e-5)


def test_lasso_eraser_and_brush_cursor(qtbot, window, rgb_png):
    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert tool.tool == "lasso"
    square = [(5.5, 5.5), (18, 5.5), (30.5, 5.5), (30.5, 15), (30.5, 25.5), (18, 25.5), (5.5, 25.5), (5.5, 15)]
    paint_stroke(qtbot, window, square)  # a freehand lasso: drag and release
    m = tool.current_mask()
    assert m[7:24, 7:29].all() and m[6:25, 6:30].sum() <= m.sum()
    outside = np.ones_like(m, bool)
    outside[4:28, 4:33] = False
    assert not m[outside].any()
    # a click-by-click polygon closed with a double click
    tool.clear()
    vp = window.canvas.viewport()
    for p in [(35.5, 5.5), (45.5, 5.5), (45.5, 30.5)]:
        qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=view_pos(window, *p))
    qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, pos=view_pos(window, 45.5, 30.5))
    m = tool.current_mask()
    assert m[6, 44] == 1 and m[20, 44] == 1 and m[20, 38] == 0 and m[:, :30].sum() == 0
    # the eraser removes along its stroke, and the cursor circle has the brush's radius
    qtbot.keyClick(window, Qt.Key.Key_E)
    tool.panel.size.setValue(6)
    paint_stroke(qtbot, window, [(44.5, 6.5), (44.5, 28.5)])
    assert tool.current_mask()[8:27, 44].sum() == 0
    qtbot.mouseMove(vp, view_pos(window, 20.5, 20.5))
    assert tool.cursor.isVisible()
    assert tool.cursor.rect().width() == pytest.approx(6.0)
    assert tool.cursor.rect().center().x() == pytest.approx(20.5, abs=0.6)
    qtbot.keyClick(window, Qt.Key.Key_H)  # pan: no cursor, the mouse pans again
    qtbot.mouseMove(vp, view_pos(window, 25.5, 20.5))
    assert not tool.cursor.isVisible()


def test_mask_files_and_closing_ask_through_the_dialog_service(qtbot, window, rgb_png, tmp_path):
    from maskviewer.gui.dialogs import ScriptedDialogs
    from maskviewer.io.masks import load_mask

    path, _ = rgb_png
    window.controller.open_image(path)
    tool = window.tools["masks"]
    del tool.ask_unsaved  # the fixture's answer: ask the dialog service instead
    tool.maskset.rectangle(2, 2, 8, 8)
    painted = tool.current_mask().copy()
    out = tmp_path / "out"
    out.mkdir()
    window.dialogs = ScriptedDialogs(str(out / "m.png"), str(out / "m.png"), "save", str(out))
    tool.actions["save"].trigger()
    np.testing.assert_array_equal(load_mask(out / "m.png"), painted)
    tool.clear()
    tool.actions["load"].trigger()
    np.testing.assert_array_equal(tool.current_mask(), painted)
    tool.maskset.rectangle(20, 20, 25, 25)
    assert tool.can_close()
    assert [m for m, _t in window.dialogs.asked] == ["save_file", "open_file", "save_discard_cancel", "folder"]
    np.testing.assert_array_equal(load_mask(out / "photo_mask.png"), tool.current_mask())
    assert not tool.maskset.dirty
