"""The Layers dock end to end: pick a layer, switch reductions and colours, read the map drawn."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core import heatmap as hm
from tests import model_zoo

# the keras-io recipe (tests/test_cam.py) feeds a single tensor to a model built with a list
pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


def _expected_rgb(values, frame, cmap="viridis", mode="per_map", vrange=None):
    unit, _ = hm.normalize(values, mode, vrange=vrange)
    return hm.colormap_lut(cmap)[hm.to_indices(hm.upsample_to_frame(unit, frame))]


def _wait(qtbot, tool, path, method, **extra):
    def done():
        o = tool.outcome
        return (
            o is not None
            and o.request.path == path
            and o.request.method == method
            and all(getattr(o.request, k) == v for k, v in extra.items())
            and (o.error or tool.overlay.isVisible() or (o.maps is not None and not o.maps.spatial))
        )

    qtbot.waitUntil(done, timeout=30_000)
    return tool.outcome


@pytest.fixture
def image_file(tmp_path):
    from PIL import Image

    path = tmp_path / "picture.png"
    Image.fromarray(model_zoo.random_image(40, 50, 3, seed=3)).save(path)
    return path


def _open(qtbot, win, image_file, model_path):
    from tests.conftest import wait_prediction

    win.show_panel("Layers")  # its maps are drawn while its tab is in front
    win.controller.open_image(image_file)
    win.controller.open_model(model_path)
    pred = wait_prediction(qtbot, win)
    tool = win.tools["layers"]
    qtbot.waitUntil(lambda: bool(tool.entries) and tool.panel.current_path() is not None, timeout=30_000)
    return tool, pred


def test_layer_maps_reductions_colormaps_and_grid(qtbot, window, model_files, image_file, keras_mod):
    win = window
    tool, pred = _open(qtbot, win, image_file, model_files["rgb"])
    model = keras_mod.saving.load_model(model_files["rgb"], compile=False)
    x = pred.inputs["image"][None]
    frame = pred.frames["image"]
    conv1 = np.asarray(keras_mod.Model(model.inputs[0], model.get_layer("conv1").output)(x))[0]

    # the default layer is the last spatial one before the head
    assert tool.panel.current_path() == "conv2"
    assert tool.entries["gap"].spatial is False

    tool.select_layer("conv1")
    tool.panel.set_method("mean")
    _wait(qtbot, tool, "conv1", "mean")
    # the mean is taken on the device (TF's summation order, not numpy's): equal to float
    # precision, and the picture is exactly that map's colours
    shown, _ = tool.current_map()
    np.testing.assert_allclose(shown, conv1.mean(-1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(tool.displayed_rgb(), _expected_rgb(shown, frame))
    r = tool.overlay.mapRectToParent(tool.overlay.boundingRect())
    assert (r.x(), r.y(), r.width(), r.height()) == pytest.approx((frame.x, frame.y, frame.width, frame.height))
    lo, hi = tool.panel.colorbar.range
    assert lo == pytest.approx(conv1.mean(-1).min(), rel=1e-5) and hi == pytest.approx(conv1.mean(-1).max(), rel=1e-5)

    tool.panel.set_method("max")
    _wait(qtbot, tool, "conv1", "max")
    tool.panel.set_colormap("inferno")  # recolours without a new job
    tool.panel.set_normalisation("percentile")
    np.testing.assert_array_equal(
        tool.displayed_rgb(), _expected_rgb(conv1.max(-1), frame, "inferno", "percentile")
    )
    tool.panel.opacity.setValue(25)
    assert tool.overlay.opacity() == pytest.approx(0.25)

    tool.panel.set_normalisation("per_map")
    tool.panel.k.setValue(3)
    tool.panel.set_method("topk")
    o = _wait(qtbot, tool, "conv1", "topk", k=3)
    order = np.argsort(-conv1.mean(axis=(0, 1)), kind="stable")[:3]
    np.testing.assert_array_equal(o.maps.channels, order)
    np.testing.assert_array_equal(
        tool.displayed_rgb(), _expected_rgb(conv1[:, :, order].mean(-1), frame, "inferno")
    )
    assert tool.panel.ranking.rowCount() == 8
    assert int(tool.panel.ranking.item(0, 1).text()) == order[0]

    # ranking inside the painted mask (image pixels), as numpy on the layer grid
    mask = np.zeros((40, 50), np.float32)
    mask[5:20, 25:45] = 1.0
    tool.mask_provider = lambda: mask
    tool.panel.rank_in_mask.setChecked(True)
    o = _wait(qtbot, tool, "conv1", "topk", rank_in_mask=True)
    w = hm.mask_to_grid(mask, frame, 32, 32)
    scores = (conv1 * w[:, :, None]).sum(axis=(0, 1)) / w.sum()
    order = np.argsort(-scores, kind="stable")[:3]
    np.testing.assert_allclose(o.maps.rank_scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(o.maps.channels, order)
    assert tool.panel.ranking.columnCount() == 4  # mean and mean inside the mask
    tool.panel.rank_in_mask.setChecked(False)

    # the channel grid: every channel tiled; a click on a tile shows that channel
    tool.panel.set_colormap("grey")
    tool.panel.set_method("grid")
    _wait(qtbot, tool, "conv1", "grid")
    assert tool.panel.views.currentWidget() is tool.panel.grid
    layout = tool.grid_layout
    assert layout.count == 8
    tx, ty = layout.tile_origin(5)
    grid = tool.panel.grid
    from PySide6.QtCore import QPointF, Qt

    scene_pt = grid.item.mapToScene(QPointF(tx + layout.tile_w / 2, ty + layout.tile_h / 2))
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.mapFromScene(scene_pt))
    _wait(qtbot, tool, "conv1", "grid", channel=5)
    np.testing.assert_array_equal(tool.displayed_rgb(), _expected_rgb(conv1[:, :, 5], frame, "grey"))

    # shared normalisation uses the whole layer's range
    tool.panel.set_normalisation("shared")
    np.testing.assert_array_equal(
        tool.displayed_rgb(),
        _expected_rgb(conv1[:, :, 5], frame, "grey", "shared", (conv1.min(), conv1.max())),
    )

    # Grad-CAM on conv2 for the top class equals the keras-io recipe
    from tests.test_cam import keras_io_gradcam

    tool.panel.set_normalisation("per_map")
    tool.select_layer("conv2")
    tool.panel.set_method("gradcam")
    o = _wait(qtbot, tool, "conv2", "gradcam")
    ref, _, _, top = keras_io_gradcam(x, model, "conv2")
    assert o.cam.class_index == top
    np.testing.assert_allclose(o.cam.heatmap, ref, atol=1e-5)
    np.testing.assert_array_equal(tool.displayed_rgb(), _expected_rgb(o.cam.heatmap, frame, "grey"))
    assert "Grad-CAM of probs" in tool.panel.info.text()

    # non-spatial layers are bars; asking them for a CAM says why not
    tool.panel.set_method("mean")
    tool.select_layer("gap")
    o = _wait(qtbot, tool, "gap", "mean")
    assert not o.maps.spatial and not tool.overlay.isVisible()
    assert tool.panel.views.currentWidget() is tool.panel.bars
    tool.panel.set_method("gradcam")
    qtbot.waitUntil(lambda: "no spatial output" in tool.panel.message.text())

    # picking a row of the layer tree selects the layer
    tree = tool.panel.layer_list
    tree.setCurrentItem(tool.panel.layer_tree.item("conv1"))
    assert tool.panel.current_path() == "conv1"


def test_attention_layers_and_multi_input_models(qtbot, window, tmp_path, image_file, keras_mod):
    model = model_zoo.three_inputs()
    path = tmp_path / "three.keras"
    model.save(path)
    tool, pred = _open(qtbot, window, image_file, path)
    assert tool.entries["attention"].attention and not tool.entries["merge"].attention
    assert tool.panel.input.isVisibleTo(tool.panel) and tool.panel.input.count() == 3
    tool.select_layer("attention")
    assert tool.panel.current_method() == "attention"
    o = _wait(qtbot, tool, "attention", "attention")
    arrays = {k: v[None] for k, v in pred.inputs.items()}
    ref = np.asarray(keras_mod.Model(model._inputs_struct, model.get_layer("attention").output)(arrays))[0, :, :, 0]
    np.testing.assert_allclose(o.maps.map, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tool.displayed_rgb(), _expected_rgb(ref, pred.frames["rgb"]))


def test_clear_messages_for_models_without_maps(qtbot, window, tmp_path, image_file, model_files, keras_mod):
    tool = window.tools["layers"]
    dense = keras_mod.Sequential(
        [keras_mod.Input((8, 8, 3)), keras_mod.layers.Flatten(name="flat"), keras_mod.layers.Dense(2, name="out")]
    )
    dense.save(tmp_path / "dense.keras")
    _open(qtbot, window, image_file, tmp_path / "dense.keras")
    qtbot.waitUntil(lambda: "no layer with a spatial" in tool.panel.message.text(), timeout=30_000)

    folder = tmp_path / "exported"
    keras_mod.saving.load_model(model_files["rgb"], compile=False).export(str(folder))
    window.controller.open_model(folder, trust=True)  # a SavedModel runs only on consent
    qtbot.waitUntil(lambda: "cannot be probed" in tool.panel.message.text(), timeout=30_000)
    assert tool.panel.layer_list.topLevelItemCount() == 0
    assert window.last_error is None  # said in the panel, no dialog
