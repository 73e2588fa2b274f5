"""The app's remembered settings and the model-input helpers, without Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping
from maskviewer.core.model_info import ModelInfo, TensorInfo
from maskviewer.gui.inputs import initial_mappings, input_builder, propose_missing
from maskviewer.gui.settings import MAX_RECENT, AppSettings, model_key


class DictStore:
    """A QSettings stand-in; like QSettings from an INI file, a one-item list reads back as a string."""

    def __init__(self):
        self.data = {}
        self.synced = 0

    def value(self, key, default=None):
        v = self.data.get(key, default)
        return v[0] if isinstance(v, list) and len(v) == 1 else v

    def setValue(self, key, value):  # noqa: N802
        self.data[key] = value

    def sync(self):
        self.synced += 1


def test_recent_files_newest_first_without_repeats(tmp_path):
    prefs = AppSettings(DictStore())
    assert prefs.recent_files() == []
    a, b = tmp_path / "a.png", tmp_path / "b.keras"
    assert prefs.remember_recent(a) == [str(a.resolve())]
    assert prefs.recent_files() == [str(a.resolve())]  # a lone string read back as a list
    prefs.remember_recent(b)
    assert prefs.remember_recent(a) == [str(a.resolve()), str(b.resolve())]
    for i in range(MAX_RECENT + 5):
        prefs.remember_recent(tmp_path / f"{i}.png")
    assert len(prefs.recent_files()) == MAX_RECENT


def test_last_dir_trust_and_layout(tmp_path):
    store = DictStore()
    prefs = AppSettings(store)
    assert prefs.last_dir() == str(Path.home())
    prefs.remember_dir(tmp_path / "x" / "a.png")
    assert prefs.last_dir() == str((tmp_path / "x").resolve())
    assert prefs.trusted() == []
    abc, def_ = "ab" * 32, "de" * 32  # SHA-256 digests
    prefs.trust(abc)
    prefs.trust(abc)
    prefs.trust(def_)
    assert prefs.trusted() == [abc, def_]
    assert prefs.window_layout() == (None, None)
    prefs.save_window_layout(b"geo", b"state")
    assert prefs.window_layout() == (b"geo", b"state") and store.synced == 1


def test_mappings_are_kept_per_model(tmp_path):
    store = DictStore()
    prefs = AppSettings(store)
    model = tmp_path / "m.keras"
    assert prefs.saved_mappings(model) == {}
    m = InputMapping(resize="none", scale="raw")
    prefs.save_mappings(model, {"x": m})
    assert prefs.saved_mappings(str(model)) == {"x": m}
    assert prefs.saved_mappings(tmp_path / "other.keras") == {}
    store.data[f"mappings/{model_key(model)}"] = "{not json"
    assert prefs.saved_mappings(model) == {}  # unreadable: forgotten, not fatal
    assert model_key(model) == model_key(tmp_path / "." / "m.keras") and len(model_key(model)) == 16


def _info(*inputs) -> ModelInfo:
    return ModelInfo("m", "/m.keras", "functional", list(inputs), [TensorInfo("y", (None, 2))], [])


def test_initial_and_missing_mappings():
    info = _info(TensorInfo("img", (None, 8, 8, 1)), TensorInfo("meta", (None, 3)))
    image = ImageData(np.zeros((10, 12, 3), np.uint8), path="/a.png")
    saved = {"img": InputMapping(resize="crop")}
    first = initial_mappings(info, image, saved)
    assert first == saved  # the saved choice wins; the vector input gets none
    fresh = initial_mappings(info, image, {})
    assert set(fresh) == {"img"}
    raw = ImageData(np.zeros((8, 8, 1), np.float32), value_max=1.0, raw=np.zeros((1, 8, 8, 1), np.float32))
    mappings = dict(fresh)
    propose_missing(info, raw, mappings)  # an .npy of the input's shape is fed as is
    assert mappings["img"].scale == "raw"
    chosen = {"img": InputMapping.from_dict({**fresh["img"].to_dict(), "source": "file:/b.png"})}
    propose_missing(info, raw, chosen)
    assert chosen["img"].source == "file:/b.png"  # the user's other source is kept


def test_input_builder_feeds_each_input():
    info = _info(TensorInfo("img", (None, 4, 4, 1)))
    image = ImageData(np.full((4, 4, 3), 255, np.uint8), path="/a.png")
    build = input_builder(info, image, {}, {}, {})
    arrays, frames = build()
    assert arrays["img"].shape == (1, 4, 4, 1) and "img" in frames
    other = ImageData(np.zeros((4, 4, 3), np.uint8), path="/b.png")
    m = InputMapping.from_dict({**initial_mappings(info, image, {})["img"].to_dict(), "source": "file:/b.png"})
    arrays, _ = input_builder(info, image, {"img": m}, {"/b.png": other}, {})()
    assert arrays["img"].max() == 0
