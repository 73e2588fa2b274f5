"""The Kernels tool's model without Qt: layer choice, the kernel-cell mask, job results, events."""

from __future__ import annotations

import numpy as np
import pytest

from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo
from maskviewer.gui.kernels import model as km
from maskviewer.gui.kernels.model import AS_LOADED, KernelsModel, kernel_grid, kernel_note
from tests.recorder import Recorder


def _info(probe_supported=True):
    inner = LayerInfo("conv_b", "block/conv_b", "MaskedConv2D", (None, 8, 8, 4))
    layers = [
        LayerInfo("conv_a", "conv_a", "Conv2D", (None, 8, 8, 4)),
        LayerInfo("block", "block", "Functional", (None, 8, 8, 4), children=[inner]),
        LayerInfo("dense", "dense", "Dense", (None, 2)),
    ]
    return ModelInfo("m", "m.keras", "functional", [TensorInfo("x", (None, 8, 8, 3))],
                     [TensorInfo("y", (None, 2))], layers, probe_supported=probe_supported)




@pytest.fixture
def model():
    m = KernelsModel()
    m.set_model(_info())
    return m


def _kernel(kh=3, kw=3, cin=2, cout=4):
    return np.arange(kh * kw * cin * cout, dtype=np.float32).reshape(kh, kw, cin, cout) - 20


def test_model_change_lists_the_conv_layers():
    m = KernelsModel()
    rec = Recorder(m, ["layers_changed", "status_changed", "mask_changed"])
    assert m.set_model(None) is None and m.status == "Open a model to see its Conv2D kernels."
    assert m.set_model(_info()) == "conv_a"
    assert m.layers == ["conv_a", "block/conv_b"] and m.selected == "conv_a" and m.status == AS_LOADED
    assert rec.count("layers_changed") == 2 and m.mask.shape == (0, 0)
    assert m.set_model(_info(probe_supported=False)) is None
    assert m.layers == [] and "no Conv2D layer" in m.status


def test_selecting_a_layer(model):
    rec = Recorder(model, ["selection_changed"])
    assert not model.select_layer("conv_a")  # already chosen
    assert not model.select_layer("dense")
    assert model.select_layer("block/conv_b")
    assert rec.calls["selection_changed"] == [("block/conv_b",)]


def test_kernels_arrive_and_size_the_mask(model):
    rec = Recorder(model, ["kernel_changed", "mask_changed"])
    kernel = _kernel()
    model.job_done(("conv_a", kernel, None))
    assert model.kernel is kernel and model.layer_path == "conv_a"
    np.testing.assert_array_equal(model.mask, np.ones((3, 3)))
    assert rec.count("kernel_changed") == 1 and rec.count("mask_changed") == 1
    model.set_cell(0, 2, False)
    model.set_cell(0, 2, False)  # no change, no event
    assert rec.count("mask_changed") == 2 and model.mask[0, 2] == 0
    model.job_done(("conv_a", kernel, None))  # the same layer again: the edits stay
    assert model.mask[0, 2] == 0
    model.job_done(("block/conv_b", _kernel(), None))  # not the chosen layer: not drawn
    assert model.layer_path == "conv_a"
    model.select_layer("block/conv_b")
    model.job_done(("block/conv_b", _kernel(5, 5), None))
    assert model.mask.shape == (5, 5) and model.mask.all()


def test_mask_editing_actions(model):
    model.job_done(("conv_a", _kernel(), None))
    model.set_cell(1, 1, False)
    model.invert()
    np.testing.assert_array_equal(model.mask, np.eye(3)[1:2].T @ np.eye(3)[1:2])
    model.all_on()
    assert model.mask.all() and model.mask.dtype == np.float32
    with pytest.raises(ValueError):
        model.set_mask(np.ones((2, 2)))
    given = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 1]])
    sent = model.mask_to_apply(given)
    np.testing.assert_array_equal(sent, given)
    np.testing.assert_array_equal(model.mask, given)  # shown in the editor too
    sent[0, 0] = 0
    assert model.mask[0, 0] == 1
    copy = model.mask_to_apply()
    copy[1, 1] = 0
    assert model.mask[1, 1] == 1  # the job gets a copy


def test_applied_mask_and_reset_say_what_runs(model):
    model.job_done(("conv_a", _kernel(), None))
    amask = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32)
    model.job_done(("conv_a", _kernel(), ("conv_a", amask)))
    assert model.applied[0] == "conv_a"
    assert "'conv_a' masked (2 of 9 kernel positions off)" in model.status and "unchanged" in model.status
    np.testing.assert_array_equal(model.mask, amask)
    model.job_done(("conv_a", _kernel(), None))
    assert model.applied is None and model.status == AS_LOADED


def test_jobs_call_the_kernel_mask_functions(monkeypatch):
    from maskviewer.inference import kernel_mask

    calls = []
    monkeypatch.setattr(kernel_mask, "kernel_weights", lambda model, path: calls.append(("w", path)) or "K")
    monkeypatch.setattr(kernel_mask, "applied_kernel_mask", lambda host: None)
    monkeypatch.setattr(kernel_mask, "apply_kernel_mask", lambda host, path, mask: "MK")
    monkeypatch.setattr(kernel_mask, "reset_kernel_mask", lambda host: calls.append("reset"))
    ctx = type("Ctx", (), {"host": type("Host", (), {"model": object()})()})()
    assert km.weights_job("c")(ctx) == ("c", "K", None)
    mask = np.ones((3, 3))
    path, kernel, applied = km.apply_job("c", mask)(ctx)
    assert (path, kernel, applied[0]) == ("c", "MK", "c") and applied[1] is mask
    assert km.reset_job(None)(ctx) == (None, None, None)
    assert km.reset_job("c")(ctx) == ("c", "K", None)
    assert calls == [("w", "c"), "reset", "reset", ("w", "c")]


def test_kernel_grid_and_note():
    kernel = np.zeros((3, 3, 20, 2), np.float32)
    kernel[0, 0, 0, 0] = 2.0
    kernel[1, 1, 0, 1] = -2.0
    grid = kernel_grid(kernel)
    tap = grid.tap
    assert grid.shown == (16, 2) and grid.scale == 2.0
    y, x = grid.origins[(0, 0)]
    np.testing.assert_array_equal(grid.rgb[y, x], km.LUT[255])  # the largest value: red
    y, x = grid.origins[(0, 1)]
    np.testing.assert_array_equal(grid.rgb[y + tap, x + tap], km.LUT[0])  # the most negative: blue
    np.testing.assert_array_equal(grid.rgb[y + 2 * tap, x + 2 * tap], km.LUT[128])  # zero: white
    y, x = grid.origins[(0, 0)]
    assert grid.rgb[y + 3 * tap, x].tolist() == list(km.GAP)  # between two input channels
    assert kernel_note("c", kernel.shape).endswith("showing first 16 of 20 input channels")


def test_kernel_grid_is_near_square_and_crosses_out_taps_that_are_off():
    kernel = np.random.default_rng(1).normal(size=(5, 5, 1, 16)).astype(np.float32)
    assert km.grid_layout(kernel.shape) == (4, 4)
    assert km.grid_layout((5, 5, 1, 10)) in ((3, 4), (4, 3))
    mask = np.ones((5, 5), np.float32)
    mask[1, 2] = 0
    grid = kernel_grid(kernel, mask)
    plain = kernel_grid(kernel)
    assert (grid.rows, grid.cols) == (4, 4)
    tap, scale = grid.tap, float(np.abs(kernel).max())
    for (i, o), (y, x) in grid.origins.items():
        for a, b in ((1, 2), (3, 3)):
            cell = grid.rgb[y + a * tap : y + (a + 1) * tap, x + b * tap : x + (b + 1) * tap]
            want = km.LUT[int(np.clip(np.round((kernel[a, b, i, o] / scale + 1) * 127.5), 0, 255))]
            same = plain.rgb[y + a * tap : y + (a + 1) * tap, x + b * tap : x + (b + 1) * tap]
            assert (same == want).all()  # without the mask: the weight's colour everywhere
            if (a, b) == (1, 2):  # off: dimmed, with a light cross on its diagonals
                assert not (cell == want).all(axis=-1).any()
                assert cell[0, 0].tolist() == list(km.OFF_CROSS) and cell[2, 2].tolist() == list(km.OFF_CROSS)
                assert cell[0, 3].max() <= max(want) * km.OFF_DIM + 1
            else:
                assert (cell == want).all()


def test_empty_box_says_what_to_do():
    m = KernelsModel()
    assert "Open a model" in m.empty_text()
    m.set_model(_info(probe_supported=False))
    assert "no Conv2D layer" in m.empty_text()
    m.set_model(_info())
    assert m.empty_text() == "Reading the kernels of conv_a…"
    rec = Recorder(m, ["status_changed"])
    m.kernels_failed("the layer has no kernel")
    assert m.empty_text() == "Could not read the kernels of conv_a: the layer has no kernel"
    assert rec.count("status_changed") == 1
    m.select_layer("block/conv_b")
    assert m.empty_text() == "Reading the kernels of block/conv_b…"
