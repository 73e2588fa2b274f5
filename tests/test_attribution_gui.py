"""The Layers tool offers every attribution method: SmoothGrad's, IG's, Occlusion's and
Score-CAM's parameters are shown for those methods only and reach the maps; input-space maps are drawn at the input's
resolution over the image; the request is traced once when asked again."""

from __future__ import annotations

import numpy as np
import pytest

from tests import model_zoo
from tests.test_gui_layers import _expected_rgb, _open, _wait

pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


def test_model_params_are_clamped_and_snapshotted():
    from maskviewer.gui.layers.model import LayersModel
    from maskviewer.inference.attribution import INPUT_METHODS, METHOD_LABELS, METHOD_NAMES

    m = LayersModel()
    m.entries = {"conv": type("E", (), {"spatial": True, "shape": (None, 4, 4, 2), "attention": False})(),
                 "gap": type("E", (), {"spatial": False, "shape": (None, 2), "attention": False})()}
    m.select_layer("gap")
    seen = []
    m.request_changed.connect(lambda: seen.append(1))
    for name in METHOD_NAMES:
        m.set_method(name)  # every method is offered
    m.set_param("smooth_samples", 0)
    m.set_param("ig_steps", 10_000)
    m.set_param("smooth_noise", 0.4)
    assert (m.params.smooth_samples, m.params.ig_steps, m.params.smooth_noise) == (1, 512, 0.4)
    m.set_param("occlusion_window", -3)  # 0: the method's default
    m.set_param("score_channels", 5)
    assert (m.params.occlusion_window, m.params.score_channels) == (0, 5)
    with pytest.raises(ValueError):
        m.set_param("ig_baseline", "grey")
    n = len(seen)
    m.set_param("smooth_noise", 0.4)  # unchanged: no new request
    assert len(seen) == n
    req = m.current_request()
    m.set_param("ig_steps", 20)
    assert req.params.ig_steps == 512  # the request is a snapshot
    # input-space methods ignore the layer (a non-spatial one is fine); layer methods need a map
    for name in METHOD_NAMES:
        req.method = name
        problem = m.request_problem(req)
        assert bool(problem) == (name not in INPUT_METHODS), name
        if problem:
            assert METHOD_LABELS[name] in problem


def test_every_method_in_the_window(qtbot, window, model_files, tmp_path, keras_mod):
    from PIL import Image

    from maskviewer.inference.attribution import AttributionOptions, attribution_function

    image_file = tmp_path / "picture.png"
    Image.fromarray(model_zoo.random_image(40, 50, 3, seed=3)).save(image_file)
    tool, pred = _open(qtbot, window, image_file, model_files["rgb"])
    panel = tool.panel
    labels = [panel.method.itemText(i) for i in range(panel.method.count())]
    assert {"Grad-CAM", "HiResCAM", "Eigen-CAM", "Score-CAM", "SmoothGrad", "Integrated Gradients"} <= set(labels)
    model = keras_mod.saving.load_model(model_files["rgb"], compile=False)
    x = pred.inputs["image"][None]
    tool.select_layer("conv2")

    panel.set_method("smoothgrad")
    tool.model.set_param("smooth_samples", 3)
    o = _wait(qtbot, tool, "conv2", "smoothgrad")
    assert o.request.params.smooth_samples == 3
    assert panel.params.isVisibleTo(panel) and panel.params.smooth_samples.isVisibleTo(panel)
    assert not panel.params.ig_steps.isVisibleTo(panel)
    ref = attribution_function(model, "smoothgrad", options=AttributionOptions(smooth_samples=3))(x)
    assert o.cam.space == "input" and o.cam.map.shape == (32, 32)  # the input's pixels
    np.testing.assert_allclose(o.cam.heatmap, ref.item(0).heatmap, rtol=1e-4, atol=1e-5)
    frame = tool.current_frame()
    np.testing.assert_array_equal(tool.displayed_rgb(), _expected_rgb(o.cam.heatmap, frame, "viridis"))
    assert "SmoothGrad of probs" in panel.info.text() and "the input image" in panel.info.text()

    # asked again (the same request), it runs traced and gives the same map
    tool.probe_now()
    qtbot.waitUntil(lambda: tool.outcome is not o, timeout=30_000)
    np.testing.assert_allclose(tool.outcome.cam.heatmap, o.cam.heatmap, rtol=1e-4, atol=1e-5)
    from maskviewer.inference.attribution import _functions_of
    from maskviewer.inference.probe import _PROBES

    repeated = [f for probe in list(_PROBES.values()) for f in _functions_of(probe).values()
                if getattr(f, "calls", 0) >= 2]
    assert repeated and all(f.fn is not None for f in repeated)  # traced from the second call

    panel.set_method("ig")
    panel.params.ig_baseline.setCurrentIndex(panel.params.ig_baseline.findData("blurred"))
    o = _wait(qtbot, tool, "conv2", "ig")
    assert o.request.params.ig_baseline == "blurred"
    assert panel.params.ig_steps.isVisibleTo(panel) and not panel.params.smooth_samples.isVisibleTo(panel)
    ref = attribution_function(model, "ig", options=AttributionOptions(ig_baseline="blurred"))(x)
    np.testing.assert_allclose(o.cam.map, ref.maps[0], rtol=1e-4, atol=1e-6)

    for method in ("hirescam", "scorecam"):
        panel.set_method(method)
        o = _wait(qtbot, tool, "conv2", method)
        assert o.cam.space == "layer" and o.cam.map.shape == (16, 16)
        ref = attribution_function(model, method, "conv2")(x)
        np.testing.assert_allclose(o.cam.heatmap, ref.item(0).heatmap, rtol=1e-4, atol=1e-5)
        assert panel.params.isVisibleTo(panel) == (method == "scorecam")

    # Score-CAM's channel cap and Occlusion's window and stride reach the maps
    def changed(method, **params):
        def done():
            o = tool.outcome
            return (o is not None and o.request.method == method and o.cam is not None
                    and all(getattr(o.request.params, k) == v for k, v in params.items()))

        qtbot.waitUntil(done, timeout=60_000)
        return tool.outcome

    assert panel.params.score_channels.isVisibleTo(panel) and panel.params.score_channels.text() == "all channels"
    panel.params.score_channels.setValue(3)
    o = changed("scorecam", score_channels=3)
    ref = attribution_function(model, "scorecam", "conv2", options=AttributionOptions(score_channels=3))(x)
    np.testing.assert_allclose(o.cam.heatmap, ref.item(0).heatmap, rtol=1e-4, atol=1e-5)
    assert "the 3 channels of largest spread" in panel.info.text()
    panel.set_method("occlusion")
    assert panel.params.occlusion_window.isVisibleTo(panel) and not panel.params.score_channels.isVisibleTo(panel)
    assert panel.params.occlusion_window.text() == "window: auto"
    panel.params.occlusion_window.setValue(8)
    panel.params.occlusion_stride.setValue(6)
    o = changed("occlusion", occlusion_window=8, occlusion_stride=6)
    ref = attribution_function(model, "occlusion", options=AttributionOptions(occlusion_window=8, occlusion_stride=6))(x)
    assert o.cam.space == "input"
    np.testing.assert_allclose(o.cam.heatmap, ref.item(0).heatmap, rtol=1e-4, atol=1e-5)
    assert "window 8 px, stride 6 px: 25 windows" in panel.info.text()  # starts 0, 6, 12, 18, 24 on 32 px
