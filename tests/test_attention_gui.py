"""The Attention page: its Qt-free model (requests, clicks on patches, overrides, empty states)
and the page end to end on a small vision transformer: per-head maps, overview, rollout and
attribution equal to the inference functions on the same input, a click picks the patch."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.mapping import Frame
from maskviewer.core.tokens import TokenGrid, TokenOverride
from maskviewer.gui.attention.jobs import AttentionOutcome, AttentionRequest
from maskviewer.gui.attention.model import NO_ATTENTION, AttentionModel

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


def test_model_requests_clicks_and_overrides_without_qt():
    m = AttentionModel()
    changes = []
    m.request_changed.connect(lambda: changes.append(m.request))
    m.set_layers("no model")
    assert m.message == "no model" and not m.ready
    m.set_layers([])
    assert m.message == NO_ATTENTION
    m.set_layers([("block0_mha", 2), ("block1_mha", 2)])
    assert m.ready and m.request.layer == "block1_mha"
    m.set_mode("rollout")
    m.set_discard(0.3)
    m.set_class(-1)
    assert m.request.mode == "rollout" and m.request.discard == 0.3 and m.request.class_index is None
    with pytest.raises(ValueError):
        m.set_mode("nonsense")
    # a click before any map says what to do
    assert m.pick_pixel(3, 3) is None and "first" in m.message
    grid = TokenGrid(4, 4, 1)
    frame = Frame(x=10, y=0, width=40, height=40)
    m.set_outcome(AttentionOutcome(AttentionRequest(mode="heads"), {"image": frame}, map=np.ones((4, 4)),
                                   tiles=np.ones((2, 4, 4)), rows=["block1_mha"], cols=2, grid=grid))
    assert m.pick_pixel(10 + 25, 12) == 1 + 1 * 4 + 2  # row 1, column 2 of the grid
    assert m.request.token == 7
    assert m.pick_pixel(5, 5) is None and m.request.token == 7  # outside the model input
    m.use_class_token()
    assert m.request.token is None
    assert m.set_override("8x8", 1) and m.request.override == TokenOverride((8, 8), 1)
    assert not m.set_override("8 by 8", None) and "HxW" in m.message
    assert m.set_override("", None) and m.request.override is None
    m.set_head(1)
    assert np.array_equal(m.current_map(), np.ones((4, 4)))
    indices, fr = m.heatmap()
    assert indices.dtype == np.uint8 and indices.ndim == 2 and fr == frame
    rgba, layout = m.tiles()
    assert layout.count == 2 and rgba.shape[-1] == 4
    m.set_outcome(AttentionOutcome(AttentionRequest(), error="bad"))
    assert m.outcome is None and m.message == "bad"


@pytest.fixture
def vit_file(tmp_path):
    from tests import vit_zoo

    path = tmp_path / "vit.keras"
    vit_zoo.builtin_vit().save(path)
    return path


@pytest.fixture
def image_file(tmp_path):
    from PIL import Image

    from tests import model_zoo

    path = tmp_path / "picture.png"
    Image.fromarray(model_zoo.random_image(32, 32, 3, seed=4)).save(path)
    return path


def _wait(qtbot, tool, mode, token="any"):
    def done():
        o = tool.model.outcome
        return o is not None and o.request.mode == mode and (token == "any" or o.request.token == token)

    qtbot.waitUntil(done, timeout=60_000)
    return tool.model.outcome


def test_attention_page_end_to_end(qtbot, window, vit_file, image_file, keras_mod):
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.attention_maps import attribution_maps, head_maps, rollout_maps
    from maskviewer.inference.probe import ActivationProbe
    from tests.conftest import wait_prediction

    win = window
    win.show_panel("Attention")
    tool = win.tools["attention"]
    assert "Open a vision transformer" in tool.model.message  # the empty state
    win.controller.open_image(image_file)
    win.controller.open_model(vit_file)
    pred = wait_prediction(qtbot, win)
    qtbot.waitUntil(lambda: tool.model.ready, timeout=30_000)
    x = pred.inputs["image"][None]
    model = keras_mod.saving.load_model(vit_file)
    cap = AttentionCapture(ActivationProbe(model))

    tool.run_now()
    o = _wait(qtbot, tool, "heads")
    want = head_maps(cap, x, "block1_mha")
    np.testing.assert_allclose(o.tiles, want.heads[0], atol=1e-5)
    assert tool.overlay.isVisible() and tool.panel.tiles.item.image is not None

    tool.show_mode("overview")
    o = _wait(qtbot, tool, "overview")
    assert o.rows == ["block0_mha", "block1_mha"] and o.tiles.shape == (4, 8, 8)

    tool.show_mode("rollout")
    o = _wait(qtbot, tool, "rollout")
    np.testing.assert_allclose(o.map, rollout_maps(cap, x).maps[0], atol=1e-5)

    # a click on the image makes the patch under it the query
    frame = pred.frames["image"]
    token = tool.model.pick_pixel(frame.x + frame.width * 0.9, frame.y + frame.height * 0.1)
    assert token == 1 + 0 * 8 + 7
    o = _wait(qtbot, tool, "rollout", token)
    np.testing.assert_allclose(o.map, rollout_maps(cap, x, token=token).maps[0], atol=1e-5)

    tool.model.use_class_token()
    tool.panel.class_index.setValue(2)
    tool.show_mode("attribution")
    o = _wait(qtbot, tool, "attribution", None)
    assert o.classes == 2
    np.testing.assert_allclose(o.map, attribution_maps(cap, x, class_index=2).maps[0], rtol=1e-4, atol=1e-6)

    # a wrong override is a message, the app keeps going
    tool.model.set_override("5x5", 0)
    qtbot.waitUntil(lambda: "does not fit" in tool.model.message, timeout=30_000)


def test_model_without_attention_shows_the_empty_state(qtbot, window, model_files, image_file):
    win = window
    tool = win.tools["attention"]
    win.controller.open_image(image_file)
    win.controller.open_model(model_files["rgb"])
    qtbot.waitUntil(lambda: tool.model.message == NO_ATTENTION, timeout=60_000)
    assert tool.run_now() is None and not tool.overlay.isVisible()
