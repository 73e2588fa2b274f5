"""The demo gallery in the window: Help → Demos…, and each demo opened from it with its view."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.demo import get_demo, list_demos
from tests.conftest import wait_prediction

NAMES = [d.name for d in list_demos()]


def _plain_keras(demo, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The demo's model loaded by plain Keras and called on ``arrays``."""
    import keras

    import maskviewer.inference.masked_conv  # noqa: F401  (registers MaskedConv2D)

    model = keras.saving.load_model(demo.path(demo.model), compile=False)
    x = {k: v[None] for k, v in arrays.items()}  # the prediction's inputs lack the batch axis
    out = model(x if len(x) > 1 else next(iter(x.values())), training=False)
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return {"out": np.asarray(out)}


def _png01(path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return a[:, :, None] if a.ndim == 2 else a


def test_help_menu_opens_the_gallery_with_scores(qtbot, window):
    action = next(a for a in window.help_menu.actions() if a.text() == "&Demos…")
    assert window.help_menu.actions()[0] is action
    action.trigger()
    gallery = window.tools["demos"].gallery
    qtbot.waitUntil(gallery.isVisible)
    assert gallery.list.count() == len(NAMES) >= 6
    assert gallery.select("counting")
    demo = get_demo("counting")
    assert gallery.title.text() == demo.title
    assert f"{demo.score['value']:.3g}" in gallery.score.text()
    assert gallery.description.text() == demo.description
    assert "Layers" in gallery.view_note.text()
    assert not gallery.thumb.pixmap().isNull()
    gallery.close()


@pytest.mark.parametrize("name", NAMES)
def test_each_demo_opens_from_the_gallery(qtbot, window, name):
    demo = get_demo(name)
    tool = window.tools["demos"]
    gallery = tool.show_gallery()
    assert gallery.select(name)
    gallery.open_current()
    assert not gallery.isVisible()
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=60_000)
    assert window.state.model_info.path == str(demo.path(demo.model))
    pred = wait_prediction(qtbot, window)
    assert pred is not None, window.controller.last_prediction_error
    # the app fed what the demo names, and its outputs are the model's own
    want = _plain_keras(demo, pred.inputs)
    got = pred.outputs if len(want) > 1 else {"out": next(iter(pred.outputs.values()))}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v[0], rtol=1e-4, atol=1e-5)
    dock = window.docks[demo.view]
    assert dock.isVisible()
    tools = window.tools

    if name == "digits":
        assert int(np.argmax(pred.outputs["probs"])) == 0
    elif name == "mask_channel":
        feed = tools["masks"].feed()
        assert (feed.mode, feed.input_name) == ("channel", "canvas_and_mask")
        np.testing.assert_array_equal(
            pred.inputs["canvas_and_mask"], np.load(demo.path(demo.samples[0])))
    elif name == "masked_kernels":
        np.testing.assert_array_equal(pred.inputs["kernel_mask"], np.ones((5, 5), np.float32))
        qtbot.waitUntil(lambda: tools["kernels"].layer_path == "masked_conv", timeout=30_000)
    elif name == "counting":
        for input_name, rel in {"rgb": demo.images[0], **demo.inputs}.items():
            np.testing.assert_array_equal(pred.inputs[input_name], _png01(demo.path(rel)))
        qtbot.waitUntil(lambda: tools["layers"].panel.current_path() == "attention", timeout=30_000)
    elif name == "binary":
        qtbot.waitUntil(lambda: tools["binarise"].current == "mark", timeout=30_000)
        assert tools["binarise"].reference is not None
    elif name == "patches":
        spec = tools["patches"].spec
        assert (spec.size, spec.stride) == ((18, 18), (10, 10))
        qtbot.waitUntil(lambda: tools["patches"].combined is not None, timeout=30_000)
        assert tools["patches"].panel.method.currentData() == "mean"
        assert tools["patches"].probs.shape == (4, 10)
        np.testing.assert_allclose(tools["patches"].combined.scores, tools["patches"].probs.mean(0), rtol=1e-5)


def test_a_demo_with_missing_files_is_refused_with_a_message(qtbot, window, monkeypatch):
    from maskviewer.demo import Demo

    broken = Demo("broken", "Broken", "nowhere.keras", ["none.png"], "A demo whose files are gone.")
    assert window.tools["demos"].open(broken) is False
    title, message = window.last_error
    assert "nowhere.keras" in message and "build_demos.py" in message
    assert window.state.model_info is None


def test_command_line_demo_without_a_name_shows_the_gallery(qtbot, window):
    from maskviewer.gui.demo_gallery import demo_tool

    gallery = demo_tool(window).show_gallery("patches")
    assert gallery.isVisible() and gallery.current().name == "patches"
    gallery.close()


def test_the_gallery_module_opens_a_demo_by_name(qtbot, window):
    from maskviewer.gui.demo_gallery import open_demo

    demo = open_demo(window, "digits")
    assert demo.name == "digits" and window.tools["demos"].demo is demo
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=60_000)
    assert window.state.model_info.path == str(demo.path(demo.model))
    assert window.docks[demo.view].isVisible()
