"""The Patches tool's model without Qt: settings, stepping, epochs, results, maps and tables.

No QApplication here: the model runs on an :class:`AppState` and plain arrays, and its events
are recorded by callbacks.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping
from maskviewer.core.model_info import ModelInfo, TensorInfo
from maskviewer.core.patches import PatchSpec, combine, make_grid
from maskviewer.core.state import AppState
from maskviewer.gui.patches.model import KIND, KIND_CURRENT, KIND_OCCLUSION, ROW_STEP, PatchModel
from maskviewer.gui.patches.runs import Snapshot
from maskviewer.inference.patch_runner import OcclusionRun, PatchRun


def _info(classes: int = 5, outputs: list[TensorInfo] | None = None) -> ModelInfo:
    outs = outputs if outputs is not None else [TensorInfo("probs", (None, classes))]
    return ModelInfo("m", "m.keras", "functional", [TensorInfo("image", (None, 32, 32, 3))], outs, [])


def _image(h: int = 40, w: int = 36) -> ImageData:
    rng = np.random.default_rng(3)
    return ImageData(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _probs(n: int, k: int = 5, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).random((n, k)).astype(np.float32) + 0.01
    return p / p.sum(1, keepdims=True)


class Recorder:
    """Every event of a :class:`PatchModel` (and its results) as ``(name, args)``."""

    def __init__(self, model: PatchModel) -> None:
        self.seen: list[tuple[str, tuple]] = []
        for name in ("spec_changed", "grid_changed", "current_changed", "message_changed", "invalidated",
                     "prediction_changed"):
            getattr(model, name).connect(lambda *a, n=name: self.seen.append((n, a)))
        for name in ("changed", "note_changed", "choices_changed", "map_kind_changed", "map_class_changed"):
            getattr(model.results, name).connect(lambda *a, n=name: self.seen.append((n, a)))

    def names(self) -> list[str]:
        return [n for n, _ in self.seen]


@pytest.fixture
def model() -> PatchModel:
    state = AppState()
    m = PatchModel(state)
    state.set_image(_image())
    return m


@pytest.fixture
def with_model(model: PatchModel) -> PatchModel:
    model.state.set_model(_info(), {"image": InputMapping()})
    return model


def _run(model: PatchModel, probs: np.ndarray) -> None:
    grid = model.grid
    assert model.accept(KIND, (Snapshot(model.epoch, grid), PatchRun(grid, {"probs": probs}, 0.25, 8)))


def test_the_model_imports_no_qt():
    code = (
        "import sys, maskviewer.gui.patches.model, maskviewer.gui.patches.results, "
        "maskviewer.gui.patches.runs\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'pyqtgraph', 'tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_settings_follow_the_image_and_bad_ones_keep_the_last_valid(model):
    assert model.spec == PatchSpec() and model.grid is not None and model.message == ""
    rec = Recorder(model)
    epoch = model.epoch
    assert model.apply_texts("18, 14", "7, 9", "1, 2", "SAME")
    spec = PatchSpec((18, 14), (7, 9), (1, 2), "SAME")
    assert model.spec == spec and model.grid == make_grid(spec, 40, 36)
    assert model.epoch == epoch + 1 and model.index == 0
    names = rec.names()
    assert names.index("spec_changed") < names.index("invalidated") < names.index("grid_changed")
    assert names.index("grid_changed") < names.index("changed") < names.index("current_changed")
    assert "each covers 18×27 pixels" in model.count_text()

    for texts, words in (
        (("41, 10", "10", "1", "VALID"), "larger than the image"),
        (("0", "10", "1", "VALID"), "at least 1"),
        (("ten", "10", "1", "VALID"), "whole numbers"),
    ):
        assert not model.apply_texts(*texts)
        assert words in model.message and "previous settings" in model.message
        assert model.spec == spec and model.epoch == epoch + 1
    assert model.apply_texts("18", "10", "1", "VALID")
    assert model.message == ""

    # a new image the settings do not fit: no grid, and a message that says so
    model.state.set_image(_image(12, 12))
    assert model.grid is None and "Choose settings that fit this image" in model.message
    assert model.count_text() == "No patches."
    model.state.set_image(None)
    assert model.grid is None and model.count_text() == "Open an image to cut it into patches."


def test_presets(model):
    assert model.apply_preset("corners", "18", "10", "")
    assert model.grid.count == 4 and model.spec.size == (18, 18)
    assert model.apply_preset("grid", "18", "10", "3, 2")
    assert (model.grid.rows, model.grid.cols) == (3, 2)
    assert model.apply_preset("sliding", "10", "5", "")
    assert model.spec == PatchSpec((10, 10), (5, 5))
    assert not model.apply_preset("grid", "18", "10", "0, 2")
    assert "previous settings" in model.message and model.spec == PatchSpec((10, 10), (5, 5))
    model.state.set_image(None)
    assert not model.apply_preset("corners", "18", "10", "")
    assert "Open an image first" in model.message


def test_stepping_clamps_wraps_and_moves_by_rows(model):
    assert model.apply_texts("10", "10", "1", "VALID")
    g = model.grid
    assert (g.rows, g.cols) == (4, 3)
    seen = []
    model.current_changed.connect(seen.append)
    model.step(1)
    model.step(ROW_STEP)
    assert model.index == 4 and seen == [1, 4]
    model.step(-ROW_STEP)
    model.step(-1)
    model.step(-1)
    assert model.index == 0  # clamped at the start
    model.step(-1, wrap=True)
    assert model.index == g.count - 1
    model.set_index(99)
    assert model.index == g.count - 1
    r, c = g.position(model.index)
    view = model.current_view()
    assert view.label.startswith(f"Patch {g.count} / {g.count} · row {r}, col {c}")
    # without a model: the patch as cut, in the image's levels
    np.testing.assert_array_equal(view.array, model.current_patch())
    assert view.levels == (0.0, 255.0) and view.caption.startswith("As cut from the image")
    assert view.inputs is None and model.current_inputs() is None


def test_the_current_patch_as_the_model_sees_it_and_the_fit_check(with_model):
    m = with_model
    assert m.results.choices == [("probs", "probs (?, 5)")] and m.results.output_name == "probs"
    view = m.current_view()
    assert view.inputs["image"].shape == (1, 32, 32, 3) and view.array.shape == (32, 32, 3)
    assert view.levels == (0.0, 1.0) and "As it enters the model" in view.caption
    assert m.can_run()
    probs, ask = m.current_prediction()
    assert probs is None and ask  # the worker is to run this patch alone

    m.state.set_mapping("image", InputMapping(resize="none"))
    assert "cannot feed the model input" in m.message and "32×32" in m.message
    assert not m.can_run() and m.current_inputs() is None
    assert m.current_prediction() == (None, False)
    m.state.set_mapping("image", InputMapping())
    assert m.message == "" and m.can_run()


def test_results_of_a_run_combine_and_stale_ones_are_dropped(with_model):
    m = with_model
    assert m.apply_preset("grid", "18", "10", "3, 2")
    res = m.results
    stale = Snapshot(m.epoch - 1, m.grid)
    assert not m.accept(KIND, (stale, PatchRun(m.grid, {"probs": _probs(6)}))) and res.probs is None
    rec = Recorder(m)
    want = _probs(6)
    _run(m, want)
    np.testing.assert_allclose(res.probs, want, rtol=1e-6)
    np.testing.assert_allclose(res.combined.scores, want.mean(0), rtol=1e-6)
    assert rec.names()[-1] == "prediction_changed"
    assert res.run_note.startswith("6 patches in 250 ms (batches of 8). Outputs: ")
    label = int(np.argmax(want.mean(0)))
    assert res.result_text(True).startswith(f"Final: class {label} ")
    assert res.map_class == label and res.class_names() == [str(i) for i in range(5)]
    np.testing.assert_allclose(m.current_prediction()[0], want[0])
    assert res.prediction_text(want[0]).startswith("This patch: ")

    res.set_method("max")
    np.testing.assert_allclose(res.combined.scores, combine(want, "max").scores)
    table = res.table_data(m.grid)
    assert table.classes == list(range(5)) and table.drop is None and table.cols == 2
    header, rows = res.table(m.grid)
    assert header[:3] == ["patch", "row", "col"] and len(rows) == 6

    # maps: nothing until asked for, then the chosen class's score per patch
    assert res.map_layer(m.grid) == (None, "")
    res.set_map_kind("score")
    res.set_map_class(2)
    np.testing.assert_allclose(res.map_values()[0], want[:, 2])
    layer, legend = res.map_layer(m.grid)
    assert layer.cmap == "viridis" and legend.startswith("p(class 2)")
    assert layer.values.shape == (40, 36) and np.nanmax(layer.level) <= 1

    # labels name the classes
    m.state.set_labels(["a", "b", "c", "d", "e"])
    assert res.label(2) == "2 (c)"

    # new settings: the results are gone
    assert m.apply_texts("18", "10", "1", "VALID")
    assert res.probs is None and res.combined is None and res.result_text(True) == "Not run yet."


def test_occlusion_shows_its_map_and_adds_a_table_column(with_model):
    m = with_model
    assert m.apply_preset("grid", "18", "10", "2, 2")
    base = {"probs": _probs(1, seed=1)[0]}
    occluded = {"probs": _probs(4, seed=2)}
    run = OcclusionRun(m.grid, base, occluded, 128.0, 0.5)
    assert m.accept(KIND_OCCLUSION, (Snapshot(m.epoch, m.grid), run))
    res = m.results
    assert res.map_kind == "occlusion" and res.run_note.startswith("Occlusion: 4 greyed images")
    drop = base["probs"][None] - occluded["probs"]
    np.testing.assert_allclose(res.occlusion_drop(), drop, rtol=1e-6)
    assert res.num_classes() == 5 and res.map_class == 0
    np.testing.assert_allclose(res.map_values()[0], drop[:, 0], rtol=1e-6)
    layer, legend = res.map_layer(m.grid)
    assert layer.cmap == "CET-D1" and legend.startswith("Drop in p(class 0)")
    _run(m, _probs(4))
    table = res.table_data(m.grid)
    cls = res.combined.label
    assert res.map_class == cls and table.drop[0] == f"occlusion drop ({cls})"
    np.testing.assert_allclose(table.drop[1], drop[:, cls], rtol=1e-6)


def test_the_current_patch_alone_and_a_model_without_class_scores(with_model):
    m = with_model
    seen = []
    m.prediction_changed.connect(lambda: seen.append(m.index))
    m.set_index(2)
    out = {"probs": _probs(1)[0]}
    assert m.accept(KIND_CURRENT, (Snapshot(m.epoch, m.grid), 2, out))
    assert seen == [2] and 2 in m.results.current_cache
    np.testing.assert_allclose(m.current_prediction()[0], out["probs"], rtol=1e-6)
    assert m.current_prediction()[1] is False
    assert m.accept(KIND_CURRENT, (Snapshot(m.epoch, m.grid), 1, out)) and seen == [2]  # not the current

    # a model with no (batch, classes) output: no choice, and a run says why it cannot combine
    m.state.set_model(_info(outputs=[TensorInfo("map", (None, 8, 8, 1))]), {"image": InputMapping()})
    assert m.results.choices == [] and m.results.output_name is None
    _run(m, _probs(m.grid.count))
    assert m.results.probs is None and "no vector output" in m.message
