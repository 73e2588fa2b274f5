"""The Layers tool's model without Qt: layer choice, request, display options, drawing, events."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from maskviewer.core import heatmap as hm
from maskviewer.core.mapping import Frame
from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo
from maskviewer.gui.layers.model import NO_SPATIAL_NOTE, LayersModel
from maskviewer.gui.layers.probe import ProbeOutcome, ProbeRequest
from tests.recorder import Recorder


def _info(probe_supported=True, note=""):
    layers = [
        LayerInfo("conv1", "conv1", "Conv2D", (None, 8, 8, 4)),
        LayerInfo("conv2", "conv2", "Conv2D", (None, 4, 4, 6)),
        LayerInfo("gap", "gap", "GlobalAveragePooling2D", (None, 6)),
        LayerInfo("probs", "probs", "Dense", (None, 3)),
    ]
    return ModelInfo(
        "m", "m.keras", "functional",
        inputs=[TensorInfo("image", (None, 8, 8, 3)), TensorInfo("meta", (None, 2))],
        outputs=[TensorInfo("probs", (None, 3)), TensorInfo("aux", (None, 2))],
        layers=layers, probe_supported=probe_supported, note=note,
    )


def _entries():
    e = SimpleNamespace
    return [
        e(path="conv1", class_name="Conv2D", shape=(None, 8, 8, 4), spatial=True, attention=False),
        e(path="att", class_name="Conv2D", shape=(None, 8, 8, 1), spatial=True, attention=True),
        e(path="conv2", class_name="Conv2D", shape=(None, 4, 4, 6), spatial=True, attention=False),
        e(path="gap", class_name="GlobalAveragePooling2D", shape=(None, 6), spatial=False, attention=False),
    ]




@pytest.fixture
def model():
    m = LayersModel()
    assert m.set_model(_info())
    m.set_layers(_entries(), _info())
    return m


def _maps(path="conv1", method="mean", spatial=True, **kw):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(8, 8, 4)).astype(np.float32)
    base = dict(
        path=path, shape=(8, 8, 4), spatial=spatial, method=method, map=full.mean(-1),
        maps=None, channels=None, channel_means=full.mean((0, 1)), rank_scores=full.mean((0, 1)),
        value_range=(float(full.min()), float(full.max())), vector=None, notes=[],
    )
    base.update(kw)
    return SimpleNamespace(**base), full


def test_the_model_has_no_qt_at_import():
    code = (
        "import sys, maskviewer.gui.layers.model, maskviewer.gui.kernels.model\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'tensorflow', 'keras')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_model_change_fills_outputs_inputs_and_says_what_happens():
    m = LayersModel()
    rec = Recorder(m, ["message_changed", "choices_changed", "layers_changed", "cleared"])
    assert not m.set_model(None)
    assert "No model loaded" in m.message and rec.count("cleared") == 1
    assert m.set_model(_info())
    assert m.outputs == ["probs", "aux"] and m.output == "probs"
    assert m.inputs == ["image"] and m.input == "image"  # only image-like inputs are drawn over
    assert m.message == "Reading the layers…" and rec.count("choices_changed") == 1
    assert not m.set_model(_info(probe_supported=False, note="a SavedModel"))
    assert m.message == "a SavedModel" and m.entries == {}


def test_layer_list_default_layer_and_messages():
    m = LayersModel()
    m.set_model(_info())
    rec = Recorder(m, ["layers_changed", "request_changed"])
    m.set_layers(_entries(), _info())
    assert list(m.entries) == ["conv1", "att", "conv2", "gap"]
    assert m.selected == "conv2"  # the last spatial layer before the head
    assert rec.count("layers_changed") == 1 and rec.count("request_changed") == 1
    assert m.message == "" and m.channel_count == 6
    m.set_layers([e for e in _entries() if not e.spatial], None)
    assert m.selected == "gap" and m.message == NO_SPATIAL_NOTE
    m.set_layers("the layers cannot be read", None)
    assert m.message == "the layers cannot be read"


def test_selecting_layers_bounds_channels_and_switches_attention(model):
    m = model
    m.select_layer("conv2")
    m.set_channel(5)
    m.set_k(6)
    m.set_channel(99)
    assert m.channel == 5  # clamped to the layer's channels, as the spin box is
    m.select_layer("conv1")  # 4 channels
    assert (m.channel, m.k, m.channel_count) == (3, 4, 4)
    m.set_method("max")
    m.select_layer("att")
    assert m.method == "attention" and m.channel == 0 and m.k == 1
    m.select_layer("conv1")
    assert m.method == "mean"
    assert not m.select_layer("nope") and m.selected == "conv1"
    rec = Recorder(m, ["request_changed"])
    assert m.select_layer(None) and m.selected is None and m.current_request() is None
    assert rec.count("request_changed") == 1


def test_request_snapshot_and_what_cannot_be_asked(model):
    m = model
    rec = Recorder(m, ["request_changed", "display_changed"])
    m.select_layer("conv1")
    m.set_method("topk")
    m.set_k(3)
    m.set_method("topk")  # unchanged: no event
    m.set_output("aux")
    m.set_class_index(2)
    m.set_rank_in_mask(True)
    assert rec.count("request_changed") == 6 and rec.count("display_changed") == 0
    assert m.current_request() == ProbeRequest("conv1", "topk", 3, 0, "aux", 2, True, "image")
    m.set_class_index(-5)
    assert m.class_index == -1 and m.current_request().class_index is None  # the top class
    with pytest.raises(ValueError):
        m.set_method("median")
    m.select_layer("gap")
    m.set_method("gradcam")
    assert "no spatial output" in m.request_problem(m.current_request())
    m.select_layer("conv1")
    assert m.request_problem(m.current_request()) == ""


def test_select_channel_keeps_the_grid_and_asks_once(model):
    m = model
    m.select_layer("conv1")
    rec = Recorder(m, ["request_changed"])
    m.select_channel(2)
    assert (m.method, m.channel) == ("channel", 2) and rec.count("request_changed") == 1
    m.set_method("grid")
    m.select_channel(7)
    assert (m.method, m.channel) == ("grid", 3)


def test_display_options_change_only_the_look(model):
    m = model
    rec = Recorder(m, ["request_changed", "display_changed"])
    m.set_colormap("magma")
    m.set_normalisation("percentile")
    m.set_opacity(140)
    m.set_input("image")  # unchanged
    assert (m.colormap, m.normalisation, m.opacity) == ("magma", "percentile", 100)
    assert rec.count("display_changed") == 3 and rec.count("request_changed") == 0
    with pytest.raises(ValueError):
        m.set_colormap("rainbow")
    with pytest.raises(ValueError):
        m.set_normalisation("log")


def test_drawing_a_mean_map_with_its_ranking_and_description(model):
    m = model
    m.select_layer("conv1")
    maps, full = _maps()
    frame = Frame(2.0, 3.0, 16.0, 16.0)
    req = m.current_request()
    assert m.set_outcome(ProbeOutcome(req, {"image": frame}, maps=maps))
    assert m.current_frame() == frame
    d = m.drawing()
    unit, (lo, hi) = hm.normalize(full.mean(-1), "per_map")
    np.testing.assert_array_equal(d.heatmap.indices, hm.to_indices(hm.upsample_to_frame(unit, frame)))
    assert (d.heatmap.lo, d.heatmap.hi, d.heatmap.caption) == (lo, hi, "mean over channels")
    assert d.view == "none" and d.highlight is None
    np.testing.assert_array_equal(d.ranking.order, np.argsort(-full.mean((0, 1)), kind="stable"))
    assert d.ranking.scores is None and d.ranking.bold == 0  # not ranked in a mask
    assert m.describe() == "conv1 · 8×8×4 · mean over channels"
    m.set_normalisation("shared")
    unit, _ = hm.normalize(full.mean(-1), "shared", vrange=maps.value_range)
    np.testing.assert_array_equal(m.heatmap().indices, hm.to_indices(hm.upsample_to_frame(unit, frame)))


def test_drawing_the_channel_grid_and_clicking_a_tile(model):
    m = model
    m.select_layer("conv1")
    m.set_method("grid")
    m.set_channel(1)
    maps, full = _maps(method="grid", map=None)
    maps.maps = np.moveaxis(full, -1, 0)
    maps.channels = np.arange(4)
    assert m.set_outcome(ProbeOutcome(m.current_request(), {"image": Frame(0, 0, 8, 8)}, maps=maps))
    d = m.drawing()
    assert d.view == "grid" and d.heatmap is None
    grid, layout = hm.channel_grid(maps.maps, "per_map")
    assert m.grid_layout == layout and d.grid_rgba.shape == grid.shape + (4,)
    x, y = layout.tile_origin(1)
    assert d.highlight == (x - 0.5, y - 0.5, layout.tile_w + 1, layout.tile_h + 1)
    rec = Recorder(m, ["request_changed"])
    tx, ty = layout.tile_origin(3)
    assert m.click_tile(tx + 1, ty + 1) == 3
    assert (m.method, m.channel) == ("grid", 3) and rec.count("request_changed") == 1
    assert m.click_tile(-4, -4) is None
    assert m.describe().endswith("channel 1")  # the outcome's request


def test_non_spatial_layers_are_bars_and_keep_the_last_grid(model):
    m = model
    m.grid_layout = "last grid"
    maps, _ = _maps(path="gap", spatial=False, shape=(6,), map=None, vector=np.arange(6.0), channel_means=None)
    m.select_layer("gap")
    m.set_outcome(ProbeOutcome(m.current_request(), {"image": Frame(0, 0, 8, 8)}, maps=maps))
    d = m.drawing()
    assert d.view == "bars" and d.heatmap is None and d.ranking is None
    np.testing.assert_array_equal(d.bars, np.arange(6.0))
    assert m.grid_layout == "last grid"
    assert m.describe() == "gap · 6: not spatial, shown as bars"


def test_cam_outcome_is_described_with_the_class_label(model):
    m = model
    m.set_method("gradcam")
    cam = SimpleNamespace(
        heatmap=np.linspace(0, 1, 16).reshape(4, 4), weights=np.array([0.1, 0.5, -0.2]), method="gradcam",
        output="probs", class_index=1, score=0.75, layer="conv2",
    )
    m.set_outcome(ProbeOutcome(m.current_request(), {"image": Frame(0, 0, 8, 8)}, cam=cam, notes=["a note"]))
    d = m.drawing()
    assert d.heatmap.caption == "relative to the maximum"
    assert d.ranking.value_label == "CAM weight" and list(d.ranking.order) == [1, 0, 2]
    assert m.describe(["cat", "dog"]) == "Grad-CAM of probs class 1 (dog) (score 0.75) on conv2\na note"


def test_errors_are_said_and_clear_the_drawing(model):
    m = model
    rec = Recorder(m, ["cleared", "message_changed", "info_changed"])
    m.set_info("something")
    out = ProbeOutcome(m.current_request(), error="Layer conv2 cannot be probed")
    assert not m.set_outcome(out)
    assert m.message == "Layer conv2 cannot be probed" and m.outcome is out and m.info == ""
    assert rec.count("cleared") == 1
    assert m.drawing() is None and m.describe() is None and m.current_map() == (None, None)
    m.clear()
    assert m.outcome is None


def test_a_new_model_does_not_keep_the_last_layers_channel_limits(model):
    """k set before the new model's layers are read (a session restore) is not cut to the old layer."""
    model.select_layer("att")  # one channel: k is limited to 1
    model.set_k(8)
    assert model.k == 1
    model.set_model(_info())
    assert model.channel_count == 1 and model.selected is None
    model.set_k(8)
    assert model.k == 8
    model.set_layers(_entries(), _info())
    model.select_layer("conv2")  # six channels
    assert model.k == 6
