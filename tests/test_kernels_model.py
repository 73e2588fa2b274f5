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
    img = kernel_grid(kernel)
    assert img.shape == (16 * 4 - 1, 2 * 4 - 1, 3)
    np.testing.assert_array_equal(img[0, 0], km.LUT[255])  # the largest value: red
    np.testing.assert_array_equal(img[1, 5], km.LUT[0])  # the most negative: blue
    assert img[3, 0].tolist() == [70, 70, 70]  # the gap
    assert kernel_note("c", kernel.shape).endswith("showing first 16 of 20 input channels")
