"""Output kinds: proposed from real Keras models' last layers, read by kind, chosen by the user."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskviewer.core import output_kinds as ok
from maskviewer.core.model_info import ModelInfo, TensorInfo


def _describe(keras, outputs: dict, tmp_path):
    """A saved and reloaded model with one output per entry ``name -> layer factory``."""
    from maskviewer.inference.describe import describe_model

    x = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    flat = keras.layers.GlobalAveragePooling2D()(h)
    outs = {name: make(flat, h) for name, make in outputs.items()}
    model = keras.Model(x, outs)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    return describe_model(loaded, path).info


def test_proposals_from_real_models(keras_mod, tmp_path):
    k = keras_mod.layers
    info = _describe(keras_mod, {
        "probs": lambda f, h: k.Dense(10, activation="softmax", name="probs")(f),
        "tags": lambda f, h: k.Dense(5, activation="sigmoid", name="tags")(f),
        "is_cat": lambda f, h: k.Dense(1, activation="sigmoid", name="is_cat")(f),
        "count": lambda f, h: k.Dense(1, name="count")(f),
        "logits": lambda f, h: k.Dense(7, name="logits")(f),
        "seg": lambda f, h: k.Conv2D(1, 1, activation="sigmoid", name="seg")(h),
        "act_softmax": lambda f, h: k.Activation("softmax", name="act_softmax")(k.Dense(3)(f)),
    }, tmp_path)
    by_name = {t.name: t for t in info.outputs}
    assert by_name["probs"].activation == "softmax" and by_name["probs"].layer_class == "Dense"
    kinds = {name: ok.propose(t) for name, t in by_name.items()}
    assert kinds["probs"].kind == ok.SOFTMAX
    assert kinds["tags"].kind == ok.MULTILABEL
    assert kinds["is_cat"].kind == ok.MULTILABEL and "binary" in kinds["is_cat"].reason
    assert kinds["count"].kind == ok.REGRESSION and kinds["count"].name == "count"
    assert kinds["logits"].kind == ok.LOGITS
    assert kinds["seg"].kind == ok.MAP
    assert kinds["act_softmax"].kind == ok.SOFTMAX


def test_proposals_from_shape_and_name_alone():
    def t(name, shape, act="", layer="Dense"):
        return TensorInfo(name, (None, *shape), activation=act, layer_class=layer)

    assert ok.propose(t("age", (1,), "relu")).kind == ok.REGRESSION
    assert ok.propose(t("bbox", (4,), "linear")).kind == ok.REGRESSION
    assert ok.propose(t("logit", (1,), "linear")).kind == ok.MULTILABEL_LOGITS
    assert ok.propose(t("out", (12,), "linear")).kind == ok.LOGITS
    assert ok.propose(t("recon", (32, 32, 3))).kind == ok.MAP
    assert ok.propose(t("x", (5,), "")) is None  # unknown: decided from the values
    assert ok.propose_from_values("x", np.array([0.2, 0.3, 0.5])).kind == ok.SOFTMAX
    assert ok.propose_from_values("x", np.array([0.9, 0.3, 0.5])).kind == ok.MULTILABEL
    assert ok.propose_from_values("x", np.array([3.0, -1.0, 0.5])).kind == ok.LOGITS
    assert ok.propose_from_values("n", np.array([15.3])).kind == ok.REGRESSION
    assert ok.propose_from_values("count", np.array([0.3])).kind == ok.REGRESSION
    assert ok.choices((1,)) == [ok.REGRESSION, ok.MULTILABEL, ok.MULTILABEL_LOGITS]
    assert ok.choices((8, 8, 2)) == [ok.MAP]


def test_reading_by_kind_matches_numpy():
    logits = np.array([1.0, 3.0, -2.0, 0.5])
    ref = np.exp(logits) / np.exp(logits).sum()
    r = ok.read(ok.OutputKind(ok.LOGITS, "out"), logits, k=3)
    assert [e.index for e in r.entries] == [1, 0, 3]
    np.testing.assert_allclose([e.value for e in r.entries], ref[[1, 0, 3]])
    assert [e.raw for e in r.entries] == [3.0, 1.0, 0.5]
    assert ok.summary(r) == f"1 ({ref[1]:.2f}) · 0 ({ref[0]:.2f}) · 3 ({ref[3]:.2f}) · …"

    count = ok.read(ok.OutputKind(ok.REGRESSION, "count"), np.array([15.3349]))
    assert ok.summary(count) == "count 15.33"
    before = ok.read(ok.OutputKind(ok.REGRESSION, "count"), np.array([12.1]))
    assert ok.change(count, before) == "count 15.33 ← 12.10"
    assert ok.change(count, count) == ""

    tags = ok.read(ok.OutputKind(ok.MULTILABEL_LOGITS, "tags"), np.array([0.0, 2.0]), ["cat", "dog"])
    np.testing.assert_allclose([e.value for e in tags.entries], [1 / (1 + np.exp(-2.0)), 0.5])
    assert ok.summary(tags) == "dog 0.88 · cat 0.50"

    binary = ok.read(ok.OutputKind(ok.MULTILABEL, "is_cat"), np.array([0.25]), ["no", "yes"])
    assert ok.summary(binary) == "yes 0.25"

    new = ok.read(ok.OutputKind(ok.SOFTMAX, "p"), np.array([0.05, 0.04, 0.91]))
    old = ok.read(ok.OutputKind(ok.SOFTMAX, "p"), np.array([0.62, 0.3, 0.08]))
    assert ok.change(new, old) == "2 (0.91) ← 0 (0.62)"
    rec = ok.record(count)
    assert rec["output_kind"] == "regression" and rec["values"] == [{"name": "count", "value": 15.3349}]
    assert "class" not in json.dumps(rec) and "softmax" not in json.dumps(rec)


def test_the_users_choice_wins_and_is_checked():
    info = ModelInfo("m", "m.keras", "functional", [], [
        TensorInfo("count", (None, 1), activation="linear", layer_class="Dense"),
        TensorInfo("scores", (None, 4), activation="", layer_class="Lambda"),
    ], [])
    kinds = ok.OutputKinds()
    kinds.set_model(info, {"count": "softmax", "scores": "nonsense"})  # softmax of one value: refused
    assert kinds.kind_of("count").kind == ok.REGRESSION
    seen = []
    kinds.changed.connect(seen.append)
    kinds.choose("count", ok.MULTILABEL_LOGITS)
    assert seen == ["count"] and kinds.kind_of("count").chosen
    assert kinds.kind_of("count").kind == ok.MULTILABEL_LOGITS
    assert kinds.chosen() == {"count": ok.MULTILABEL_LOGITS}
    # an unknown activation: proposed from the first values, then kept
    assert kinds.kind_of("scores", np.array([0.1, 0.2, 0.3, 0.4])).kind == ok.SOFTMAX
    assert kinds.kind_of("scores", np.array([5.0, -2.0, 0.0, 1.0])).kind == ok.SOFTMAX
    with pytest.raises(ValueError):
        kinds.choose("count", "bogus")


def test_kinds_are_remembered_per_model_in_the_settings():
    from maskviewer.gui.settings import AppSettings

    class Store(dict):
        def value(self, key, default=None):
            return self.get(key, default)

        def setValue(self, key, value):  # noqa: N802
            self[key] = value

    store = Store()
    prefs = AppSettings(store)
    prefs.save_kinds("/models/a.keras", {"count": "regression"})
    assert prefs.saved_kinds("/models/a.keras") == {"count": "regression"}
    assert prefs.saved_kinds("/models/b.keras") == {}
    key = next(k for k in store if k.startswith("output_kinds/"))
    store[key] = '{"count": ["not", "a", "kind"]}'
    assert prefs.saved_kinds("/models/a.keras") == {}


def test_command_line_export_reads_each_output_by_its_kind(tmp_path, capsys):
    """The counting model's output is exported as a count by name, the digits' as classes."""
    import keras

    from maskviewer.cli.export import export_main
    from maskviewer.demo import get_demo
    from maskviewer.io.export import load_npy, read_manifest

    counting, digits = get_demo("counting"), get_demo("digits")
    image = str(counting.path(counting.images[0]))
    rc = export_main([image, "--model", str(counting.path(counting.model)), "--out", str(tmp_path / "c")])
    assert rc == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "c")
    assert manifest["outputs"]["count"]["kind"] == "regression"
    pred = next(e for e in manifest["artifacts"] if e["kind"] == "prediction")
    value = float(load_npy(tmp_path / "c", pred)[0])
    assert pred["method"] == "values" and pred["output_kind"] == "regression" and "class" not in pred
    assert pred["values"] == [{"name": "count", "value": pytest.approx(value, rel=1e-6)}]
    assert "softmax" not in json.dumps(pred) and "top" not in pred

    image = str(digits.path(digits.images[3]))
    model_path = str(digits.path(digits.model))
    rc = export_main([image, "--model", model_path, "--out", str(tmp_path / "d")])
    assert rc == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "d")
    pred = next(e for e in manifest["artifacts"] if e["kind"] == "prediction")
    probs = load_npy(tmp_path / "d", pred)
    model = keras.saving.load_model(model_path, compile=False)
    assert manifest["outputs"]["probs"]["kind"] == "softmax"
    assert [t["class"] for t in pred["top"]] == list(np.argsort(-probs, kind="stable")[:5])
    assert int(np.argmax(probs)) == int(np.argmax(np.asarray(model(_digit(image)[None]))[0]))


def _digit(path):
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32)
    return (a / 255.0)[:, :, None] if a.ndim == 2 else a / 255.0


def test_patch_combinations_follow_the_kind():
    from maskviewer.core.patches import (
        COMBINE_BY_KIND,
        PatchSettingsError,
        as_values,
        combine_values,
    )

    rng = np.random.default_rng(3)
    counts = rng.uniform(0, 30, (7, 1))
    values, note = as_values(counts, ok.REGRESSION)
    np.testing.assert_array_equal(values, counts)  # no sigmoid on a count
    assert "sigmoid" not in note and "probab" not in note
    for method, ref in (("mean", np.mean), ("median", np.median), ("max", np.max), ("min", np.min),
                        ("sum", np.sum)):
        c = combine_values(values, method, "values")
        np.testing.assert_allclose(c.scores, ref(counts, axis=0))
        assert c.family == "values" and c.label == 0
    with pytest.raises(PatchSettingsError):
        combine_values(values, "vote", "values")
    logits = rng.normal(0, 2, (9, 3))
    probs, _ = as_values(logits, ok.MULTILABEL_LOGITS)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)))
    vote = combine_values(probs, "vote", "labels")
    np.testing.assert_allclose(vote.scores, (logits > 0).mean(axis=0))
    geo = combine_values(probs, "geometric", "labels")
    np.testing.assert_allclose(geo.scores, np.exp(np.log(probs).mean(axis=0)))  # per label, not renormalised
    cls, _ = as_values(logits, ok.LOGITS)
    np.testing.assert_allclose(cls.sum(axis=1), 1.0)
    assert combine_values(cls, "vote", "classes").label == int(np.bincount(logits.argmax(1), minlength=3).argmax())
    assert set(COMBINE_BY_KIND["values"]) == {"mean", "median", "max", "min", "sum"}


def test_info_says_how_each_output_is_read(capsys):
    from maskviewer.cli.info import info_main
    from maskviewer.demo import get_demo

    demo = get_demo("binary")
    assert info_main([str(demo.path(demo.model)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: v["kind"] for k, v in data["output_kinds"].items()} == {"mark": "map", "reconstruction": "map"}
    assert {t["name"]: t["activation"] for t in data["outputs"]} == {"mark": "sigmoid", "reconstruction": "sigmoid"}
