"""The Binarise tool's model without Qt: sources, threshold, methods, reference scores, exports."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from skimage import filters

from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import mask_scores
from maskviewer.core.threshold import binarise
from maskviewer.gui.binarise.export import (
    UnsupportedFormat,
    score_record,
    write_mask,
    write_scores,
)
from maskviewer.gui.binarise.model import (
    KIND_CACHE,
    KIND_METHOD,
    KIND_SCORE,
    BinariseModel,
)
from maskviewer.gui.binarise.sources import image_sources


class _Ctx:
    def progress(self, done: int, total: int) -> None:
        pass

    def check(self) -> None:
        pass


class Jobs:
    """Jobs queued like the worker's, run when the test says (latest of each kind wins)."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, object]] = []

    def submit(self, kind, fn):
        self.queue = [j for j in self.queue if j[0] != kind] + [(kind, fn)]

    def cancel(self, kind):
        self.queue = [j for j in self.queue if j[0] != kind]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.queue]

    def run(self, model: BinariseModel) -> None:
        while self.queue:
            kind, fn = self.queue.pop(0)
            model.job_finished(kind, fn(_Ctx()))


def _model(confirm=None):
    jobs = Jobs()
    model = BinariseModel(jobs.submit, jobs.cancel, confirm)
    events: list[tuple] = []
    for name in ("sources_changed", "refreshed", "threshold_changed", "curve_changed", "notes_changed", "error"):
        getattr(model, name).connect(lambda *a, n=name: events.append((n, *a)))
    return model, jobs, events


def _prediction(**outputs):
    return SimpleNamespace(inputs={"pixels": np.zeros((4, 4, 1), np.float32)}, outputs=outputs)


@pytest.fixture
def y():
    yy, xx = np.mgrid[:20, :30]
    rng = np.random.default_rng(2)
    return (np.exp(-((yy - 10) ** 2 + (xx - 12) ** 2) / 60) + 0.1 * rng.random((20, 30))).astype(np.float32)


def _ready(y, confirm=None):
    model, jobs, events = _model(confirm)
    model.set_prediction(_prediction(mask=y[:, :, None], count=np.zeros(5)), Frame(0, 0, 30, 20))
    jobs.run(model)
    return model, jobs, events


def test_image_sources_split_channels_and_explain_the_rest():
    got = image_sources({"m": np.zeros((4, 5)), "one": np.zeros((4, 5, 1)), "rgb": np.zeros((4, 5, 3)), "v": np.zeros(5)})
    names = [s.name for s in got]
    assert names == ["m", "one", "rgb [channel 0]", "rgb [channel 1]", "rgb [channel 2]", "v"]
    assert got[1].values.shape == (4, 5)
    assert got[-1].values is None and "(5,)" in got[-1].note and "not an image" in got[-1].note


def test_prediction_prepares_the_maps_on_the_worker_then_selects_the_first_image(y):
    model, jobs, events = _model()
    model.set_prediction(_prediction(mask=y[:, :, None], count=np.zeros(5)), Frame(0, 0, 30, 20))
    assert jobs.kinds() == [KIND_CACHE] and model.info == "Preparing the histogram…"
    assert model.cache is None and model.binary_mask() is None
    jobs.run(model)
    assert model.current == "mask" and list(model.sources) == ["mask", "count"]
    np.testing.assert_array_equal(model.cache.values, y)
    assert ("sources_changed", "mask") in events and ("refreshed",) in events
    assert model.info.startswith("30×20 float32")
    np.testing.assert_array_equal(model.binary_mask(), y > 0.5)
    model.select_source("count")
    assert model.cache is None and "not an image" in model.info


def test_threshold_polarity_and_events(y):
    model, _jobs, events = _ready(y)
    events.clear()
    model.set_threshold(0.3, source="slider")
    assert events == [("threshold_changed", "slider")]
    np.testing.assert_array_equal(model.binary_mask(), y > 0.3)
    model.set_threshold(float("nan"))  # ignored
    assert model.threshold == 0.3
    model.set_invert(True)
    np.testing.assert_array_equal(model.binary_mask(), y <= 0.3)
    assert ("curve_changed",) in events
    lo, hi = model.value_range()
    assert (lo, hi) == (model.cache.lo, model.cache.hi)


def test_methods_fast_at_once_slow_on_the_worker(y):
    model, jobs, _events = _ready(y)
    model.apply_method("otsu")
    assert model.threshold == float(filters.threshold_otsu(y)) and model.method_used == "otsu"
    assert model.method_note.startswith("Otsu: ")
    model.set_threshold(0.2, source="spin")  # by hand: no method any more
    assert model.method_used == "" and model.method_note == ""
    model.apply_method("li")
    assert jobs.kinds() == [KIND_METHOD] and model.method_note == "Computing Li…"
    jobs.run(model)
    assert model.threshold == float(filters.threshold_li(y)) and model.method_used == "li"


def test_reference_scores_curve_and_best(y):
    model, jobs, _events = _ready(y)
    rng = np.random.default_rng(1)
    ref = (y > 0.6) ^ (rng.random(y.shape) > 0.95)
    assert model.set_reference(ref, "hand-made")
    assert jobs.kinds() == [KIND_SCORE] and model.scoring.scorer is None
    jobs.run(model)
    s = model.scoring
    assert s.scorer is not None and s.note == f"hand-made: {int(ref.sum()):,} of {ref.size:,} pixels foreground"
    want = mask_scores(binarise(y, model.threshold), ref)
    assert s.scores.dice == pytest.approx(want.dice, rel=1e-12) and s.scores.tp == want.tp
    brute = [mask_scores(binarise(y, t), ref).dice for t in s.curve.thresholds]
    assert s.curve.best_dice == pytest.approx(max(brute), abs=1e-12)
    model.use_best()
    assert model.threshold == s.curve.best_threshold
    model.set_display(show_errors=True)
    assert model.errors_shown() and s.inside.shape == y.shape
    model.clear_reference()
    assert s.mask is None and s.scores is None and not model.errors_shown()
    assert s.note.startswith("No reference.")


def test_reference_of_another_size_asks_before_resizing(y):
    asked = []
    model, jobs, _events = _ready(y, confirm=lambda title, text: asked.append(text) or False)
    big = np.zeros((40, 60), bool)
    big[4:20, 6:30] = True
    assert not model.set_reference(big, "big")
    assert "60×40" in asked[0] and "30×20" in asked[0]
    assert model.scoring.scorer is None and "not used" in model.scoring.note and not jobs.queue
    model.confirm = lambda title, text: True
    assert model.set_reference(big, "big")
    jobs.run(model)
    np.testing.assert_array_equal(model.scoring.fitted, big[::2, ::2])
    # a painted (image-sized) mask is sampled through the frame, never asked about
    model.confirm = lambda title, text: pytest.fail("no question for a painted mask")
    assert model.set_reference(np.ones((20, 30), bool), "painted", image_mask=True)


def test_bad_reference_file_is_an_error_event(y, tmp_path):
    model, _jobs, events = _ready(y)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert not model.load_reference(tmp_path / "bad.png")
    assert events[-1][:2] == ("error", "Cannot use this reference")


def test_all_nan_map_is_reported_and_not_thresholded():
    model, jobs, _events = _model()
    model.add_source("nan", np.full((6, 7), np.nan, np.float32), Frame(0, 0, 7, 6))
    jobs.run(model)
    assert model.current == "nan" and "broken" in model.warning
    model.apply_method("otsu")
    assert "no finite values" in model.warning and model.threshold == 0.5
    model.add_source("bad", np.zeros((2, 3, 4)))
    assert model.sources["bad"].values is None and "2-D" in model.sources["bad"].note


def test_reset_drops_the_maps_and_cancels_their_preparation(y):
    model, jobs, _events = _model()
    model.set_prediction(_prediction(mask=y), Frame(0, 0, 30, 20))
    model.reset()
    assert not jobs.queue and model.sources == {} and model.current is None
    assert model.prediction is None  # side by side shows nothing of the image before
    assert model.info.startswith("Run a model")


def test_score_record_and_files(y, tmp_path):
    model, jobs, _events = _ready(y)
    model.set_reference(y > 0.6, "ref")
    jobs.run(model)
    model.apply_method("yen")
    rec = score_record(model)
    assert rec["source"] == "mask" and rec["method"] == "yen" and rec["reference"] == "ref"
    assert rec["height"] == 20 and rec["width"] == 30 and rec["dice"] == model.scoring.scores.dice
    write_scores(tmp_path / "s.json", rec)
    assert json.loads((tmp_path / "s.json").read_text())["threshold"] == model.threshold
    write_scores(tmp_path / "s.csv", rec)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "name,value"
    write_mask(tmp_path / "m.npy", model.binary_mask())
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), y > model.threshold)
    with pytest.raises(UnsupportedFormat, match="png or .npy"):
        write_mask(tmp_path / "m.jpg", model.binary_mask())
    with pytest.raises(UnsupportedFormat, match="json or .csv"):
        write_scores(tmp_path / "s.txt", rec)
    assert not (tmp_path / "s.txt").exists()


def test_side_by_side_finds_the_reconstruction_and_its_difference():
    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 3)).astype(np.float32)
    recon = rng.random((8, 8, 3)).astype(np.float32)
    model, jobs, _events = _model()
    model.set_prediction(SimpleNamespace(inputs={"rgb": x}, outputs={"recon": recon, "wm": x[:, :, :1]}), None)
    jobs.run(model)
    model.select_source("wm")
    plan = model.side_by_side()
    assert plan.shown and plan.fed[0] == "rgb" and plan.reconstruction[0] == "recon"
    np.testing.assert_allclose(model.difference, np.abs(x - recon).mean(axis=2))
    assert plan.names == ["wm"] and model.gallery_names == ["wm"]
    model.set_all_outputs(True)
    assert model.side_by_side().names == list(model.caches)


def test_model_modules_import_no_qt():
    code = (
        "import sys\n"
        "import maskviewer.gui.binarise.model, maskviewer.gui.binarise.export\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
