"""The masks tool's model without Qt: masks per image, paint settings, edits, feed, files, ablation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping
from maskviewer.core.mask_feed import MaskFeed, ablation_masks
from maskviewer.core.model_info import ModelInfo, TensorInfo
from maskviewer.core.state import AppState
from maskviewer.gui.masks.ablation import ablation_job, prepare_ablation, summarise
from maskviewer.gui.masks.feeding import FeedMemory
from maskviewer.gui.masks.files import mask_file_name
from maskviewer.gui.masks.model import MasksModel, image_key, mask_label
from maskviewer.io.masks import MaskLoadError, load_mask, save_mask


def _image(path="/data/photo.png", h=20, w=30, c=3):
    return ImageData(np.zeros((h, w, c), np.uint8), path, 255.0)


def _info(*inputs, path="/models/m.keras"):
    return ModelInfo("m", path, "functional", [TensorInfo(n, s) for n, s in inputs],
                     [TensorInfo("probs", (None, 3))], [])


def _record(model, *names):
    """Collect the calls of the named events as ``(name, args)``."""
    calls = []
    for name in names:
        event = getattr(model.paint, name, None) if name in ("tool_changed", "brush_changed",
                                                              "display_changed") else getattr(model, name)
        event.connect(lambda *args, n=name: calls.append((n, args)))
    return calls


@pytest.fixture
def state():
    return AppState()


@pytest.fixture
def model(state):
    m = MasksModel(state)
    state.set_image(_image())
    return m


def test_the_model_imports_no_qt():
    code = ("import maskviewer.gui.masks.model, maskviewer.gui.masks.ablation, sys\n"
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    assert "maskviewer.gui.masks.model" in out
    assert not [m for m in out if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph")]


# -- masks per image ------------------------------------------------------------------------------


def test_each_image_has_its_masks_and_new_ones_take_the_last_names(state):
    model = MasksModel(state)
    calls = _record(model, "maskset_changed")
    assert model.maskset is None and model.current_mask() is None
    first = _image()
    state.set_image(first)
    ms = model.maskset
    assert ms.names == ["mask"] and ms.active.name == "mask" and calls == [("maskset_changed", ())]
    assert model.sets == {image_key(first): ms}
    model.add_mask("roi")
    state.set_image(_image("/data/other.png", 10, 12))
    assert model.maskset is not ms and model.maskset.names == ["mask", "roi"]
    assert model.maskset.shape == (10, 12) and model.maskset.active.name == "mask"
    state.set_image(first)
    assert model.maskset is ms and len(model.sets) == 2
    state.set_image(None)
    assert model.maskset is None and model.names() == ["mask", "roi"]
    assert model.default_feed_mask() == "mask"


def test_current_mask_is_read_only_and_provided_masks_are_copies(model):
    model.maskset.rectangle(1, 1, 4, 4)
    view = model.current_mask()
    assert not view.flags.writeable and view.sum() == 16
    got = model.provide_masks({"mask", "missing"})
    assert set(got) == {"mask"}
    got["mask"][:] = 0
    assert model.current_mask().sum() == 16


def test_list_actions_select_hide_rename_recolour_delete(model, state):
    calls = _record(model, "masks_changed", "visibility_changed")
    roi = model.add_mask("roi")
    assert model.maskset.active is roi and ("masks_changed", ()) in calls
    model.select("mask")
    assert model.maskset.active.name == "mask"
    model.set_visible("roi", False)
    assert not roi.visible and calls[-1] == ("visibility_changed", (roi,))
    model.set_color((1, 2, 3))
    assert model.maskset.active.color == (1, 2, 3)
    assert model.rename_mask("roi") == "roi 2"  # names stay unique
    model.delete_active()
    model.delete_active()
    assert model.maskset.names == ["mask"]  # an image always keeps one mask
    assert mask_label(model.maskset.active) == "mask"


# -- tool, brush and display ----------------------------------------------------------------------


def test_paint_settings_emit_once_per_change(model):
    calls = _record(model, "tool_changed", "brush_changed", "display_changed", "status")
    paint = model.paint
    paint.set_tool("lasso")
    assert paint.tool == "lasso" and calls[0] == ("tool_changed", ("lasso",))
    assert calls[1][0] == "status" and "lasso" in calls[1][1][0]
    with pytest.raises(ValueError):
        paint.set_tool("spray")
    calls.clear()
    paint.set_brush(size=20, hardness=1.0)  # unchanged: no event
    assert calls == []
    paint.set_brush(size=8, hardness=0.5, intensity=0.25)
    assert calls == [("brush_changed", ())]
    brush = paint.brush
    assert (brush.radius, brush.hardness, brush.intensity) == (4.0, 0.5, 0.25)
    paint.set_brush(size=2)
    paint.change_size(1 / 1.25)  # rounds back to 2: still one pixel smaller
    assert paint.size == 1
    paint.change_size(1 / 1.25)
    assert paint.size == 1  # never below one pixel
    paint.change_size(1.25)
    assert paint.size == 2
    paint.set_opacity(0.3)
    paint.set_outline(True)
    assert (paint.opacity, paint.outline) == (0.3, True)
    assert [c for c in calls if c[0] == "display_changed"] == [("display_changed", ())] * 2


# -- edits ----------------------------------------------------------------------------------------


def test_a_stroke_is_drawn_as_it_goes_and_fed_once_when_it_ends(model, state):
    state.set_model(_info(("image", (None, 8, 8, 3))), {"image": InputMapping(source="image*mask:mask")})
    calls = _record(model, "pixels_changed", "predict", "flags_changed")
    model.paint.set_brush(size=4)
    model.begin_stroke(5, 5, erase=False)
    model.stroke_to(15, 5)
    drawn = [c for c in calls if c[0] == "pixels_changed"]
    assert len(drawn) >= 2 and not [c for c in calls if c[0] == "predict"]
    calls.clear()
    entry = model.end_stroke()
    assert entry is not None and model.stroke is None
    assert [c for c in calls if c[0] == "predict"] == [("predict", (True,))]
    assert not [c for c in calls if c[0] == "pixels_changed"]  # the dabs are drawn already
    assert model.maskset.dirty and model.current_mask()[5, 5:16].all()
    # other edits are fed through the debounce; undo and redo too
    calls.clear()
    model.invert()
    assert ("predict", (False,)) in calls and ("pixels_changed", (model.maskset.active, (0, 20, 0, 30))) in calls
    status = _record(model, "status")
    model.undo()
    model.undo()
    model.undo()
    assert [c[1][0] for c in status] == ["Undid: Invert", "Undid: Paint", "Nothing to undo."]
    assert not model.current_mask().any()
    model.redo()
    assert model.current_mask()[5, 5:16].all()


def test_an_unfed_mask_is_not_fed_and_fills_shapes_and_lassos_paint(model):
    calls = _record(model, "predict")
    model.fill(3, 3, erase=False)
    assert model.current_mask().all() and calls == []  # not fed: no prediction
    model.paint.set_brush(intensity=0.5)
    model.clear()
    model.shape("rectangle", (2, 3, 5, 7), erase=False)
    expected = np.zeros((20, 30), np.float32)
    expected[3:8, 2:6] = 0.5
    np.testing.assert_array_equal(model.current_mask(), expected)
    model.paint.set_brush(intensity=1.0)  # the eraser removes this much
    model.shape("rectangle", (2, 3, 5, 7), erase=True)
    assert not model.current_mask().any()
    model.paint.set_brush(intensity=0.5)
    model.shape("ellipse", (0, 0, 9, 9), erase=False)
    assert model.current_mask()[4, 4] == 0.5 and model.current_mask()[0, 0] == 0
    model.clear()
    model.polygon([(10, 2), (20, 2)], erase=False)  # fewer than 3 points: nothing
    assert not model.current_mask().any()
    model.polygon([(10, 2), (20, 2), (20, 12), (10, 12)], erase=False)
    assert model.current_mask()[7, 15] == 0.5
    model.fill(-5, 3, erase=False)  # outside the image: nothing
    model.paint.set_brush(tolerance=1.0)
    model.fill(0, 0, erase=True)
    assert not model.current_mask().any()


def test_changing_image_mid_stroke_keeps_the_pixels_without_feeding(model, state):
    state.set_model(_info(("image", (None, 8, 8, 3))), {"image": InputMapping(source="image*mask:mask")})
    ms = model.maskset
    model.begin_stroke(5, 5, erase=False)
    calls = _record(model, "predict")
    state.set_image(_image("/data/b.png"))
    assert model.stroke is None and ms.active.data[5, 5] == 1 and calls == []


# -- the feed -------------------------------------------------------------------------------------


def test_a_feed_is_proposed_once_per_model_and_followed_on_rename(model, state):
    memory = FeedMemory()
    model.feeding.memory = memory
    calls = _record(model, "feed_changed", "status")
    info = _info(("image", (None, 8, 8, 3)), ("attention_mask", (None, 8, 8, 1)))
    state.set_model(info, {"image": InputMapping(), "attention_mask": InputMapping()})
    assert model.feeding.feed() == MaskFeed("input", "attention_mask", "mask")
    assert memory.was_chosen(info) and ("feed_changed", ()) in calls
    assert any(c[0] == "status" and "Proposed" in c[1][0] for c in calls)
    choices, index, note = model.feeding.mode_choices()
    assert choices[index][1].label == "input:attention_mask" and "grey image" in note
    assert model.feeding.mask_choices() == (["mask"], "mask", True)
    model.rename_mask("roi")
    assert model.feeding.feed().mask_name == "roi"
    model.feeding.set_feed("none")
    assert model.feeding.feed().mode == "none"
    # chosen before: opening the model again proposes nothing
    state.set_model(info, {"image": InputMapping(), "attention_mask": InputMapping()})
    assert model.feeding.feed().mode == "none"
    state.set_model(_info(("image", (None, 8, 8, 3))), {"image": InputMapping()})
    with pytest.raises(MaskviewerError, match="no input"):
        model.feeding.set_feed("input")


def test_picking_a_feed_and_a_mask_in_the_panel(model, state):
    state.set_model(_info(("image", (None, 8, 8, 3))), {"image": InputMapping()})
    assert model.feeding.feed().mode == "none"  # an RGB model: nothing proposed
    model.add_mask("roi")
    choices, _index, _note = model.feeding.mode_choices()
    multiply = next(opt for _text, opt in choices if opt.mode == "multiply")
    model.feeding.mode_picked(multiply, "")
    assert model.feeding.feed() == MaskFeed("multiply", "image", "roi")  # the active one
    model.feeding.mask_picked("mask")
    assert state.mappings["image"].source == "image*mask:mask"
    names, fed, enabled = model.feeding.mask_choices()
    assert names == ["mask", "roi"] and fed == "mask" and enabled
    state.set_model(None, {})
    assert model.feeding.mode_choices()[0] == [("Not fed to the model", MaskFeed())]


# -- files ----------------------------------------------------------------------------------------


def test_load_save_and_save_everything_unsaved(model, state, tmp_path):
    model.maskset.rectangle(1, 1, 4, 4)
    assert model.dirty_sets() == [model.maskset]
    assert mask_file_name(model.maskset, model.maskset.active) == "photo_mask.png"
    model.save_unsaved(tmp_path)
    np.testing.assert_array_equal(load_mask(tmp_path / "photo_mask.png"), model.current_mask())
    assert model.dirty_sets() == []
    assert model.save_file(tmp_path / "x.npy", "missing") is None
    assert model.save_file(tmp_path / "x.npy").name == "mask"
    # another size: asked; no leaves the mask, yes resizes with nearest neighbour
    small = np.zeros((10, 15), np.float32)
    small[2:4, 3:6] = 1
    save_mask(tmp_path / "small.npy", small)
    before = model.current_mask().copy()
    questions = []
    assert not model.load_file(tmp_path / "small.npy", lambda q: questions.append(q) or False)
    assert "30×20" in questions[0]
    np.testing.assert_array_equal(model.current_mask(), before)
    assert model.load_file(tmp_path / "small.npy", lambda q: True)
    np.testing.assert_array_equal(model.current_mask(), np.kron(small, np.ones((2, 2))))
    assert not model.maskset.active.dirty  # it is that file's content now
    (tmp_path / "bad.png").write_text("no")
    with pytest.raises(MaskLoadError):
        model.load_file(tmp_path / "bad.png", lambda q: True)
    state.set_image(None)
    with pytest.raises(ValueError):
        model.load_file(tmp_path / "small.npy", lambda q: True)


# -- ablation -------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self):
        self.done = []
        self.host = self

    def check(self):
        pass

    def progress(self, done, total):
        self.done.append((done, total))

    def predict(self, arrays):
        return {"probs": np.array([[arrays["x"].mean(), 1.0, 0.0]])}


def test_ablation_request_job_and_summary(model, state):
    def build_inputs(masks):
        return lambda: ({"x": masks["mask"]}, {})

    with pytest.raises(MaskviewerError, match="Open an image and a model"):
        prepare_ablation(model, build_inputs)
    state.set_model(_info(("image", (None, 8, 8, 3))), {"image": InputMapping()})
    with pytest.raises(MaskviewerError, match="not fed to the model"):
        prepare_ablation(model, build_inputs)
    state.image = _image()
    model.feeding.set_feed("multiply", "image", "gone")
    with pytest.raises(MaskviewerError, match="no mask 'gone'"):
        prepare_ablation(model, build_inputs)
    model.feeding.set_feed("multiply", "image", "mask")
    model.maskset.rectangle(0, 0, 9, 9)
    builds = prepare_ablation(model, build_inputs)
    variants = ablation_masks(model.current_mask(), 0)
    assert list(builds) == list(variants)
    ctx = _Ctx()
    result = ablation_job(builds)(ctx)
    assert ctx.done == [(i + 1, 5) for i in range(5)]
    for name, m in variants.items():
        assert result[name]["probs"][0] == pytest.approx(m.mean())
    rows, summary = model.ablation_finished(result)
    assert model.ablation_results is result and len(rows) == 3
    assert "5 masks" in summary and "probs top class" in summary
    assert summarise(result, ["a", "b", "c"])[1].count("b") >= 1
    state.set_model(None, {})  # another model: the results are stale
    assert model.ablation_results is None
