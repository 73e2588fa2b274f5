"""The result bar under the image and output kinds in every view of the real window."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PySide6.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QLabel, QTableWidget

from maskviewer.demo import get_demo
from tests.conftest import wait_prediction

#: words no view may use for a count
CLASS_WORDS = re.compile(r"\bclass(es)?\b|softmax|\blabel\b", re.IGNORECASE)


def _open_demo(qtbot, window, name):
    from maskviewer.gui.demo_gallery import open_demo

    open_demo(window, name)
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=60_000)
    pred = wait_prediction(qtbot, window, 60_000)
    assert pred is not None, window.controller.last_prediction_error
    bar = window.tools["result"].bar
    qtbot.waitUntil(lambda: bar.result.text() not in ("", "Running the model…"), timeout=30_000)
    return pred


def _texts(widget) -> list[str]:
    """Every text a user can read in ``widget``: labels, group titles, buttons, the current
    choice of each combo box, table headers and cells."""
    out = []
    for w in widget.findChildren(QLabel):
        if w.isVisibleTo(widget):
            out.append(w.text())
    out += [g.title() for g in widget.findChildren(QGroupBox) if g.isVisibleTo(widget)]
    out += [b.text() for b in widget.findChildren(QAbstractButton) if b.isVisibleTo(widget)]
    out += [c.currentText() for c in widget.findChildren(QComboBox) if c.isVisibleTo(widget)]
    for t in widget.findChildren(QTableWidget):
        out += [t.horizontalHeaderItem(c).text() for c in range(t.columnCount()) if t.horizontalHeaderItem(c)]
        out += [t.item(r, c).text() for r in range(t.rowCount()) for c in range(t.columnCount()) if t.item(r, c)]
    return out


def _top3(probs: np.ndarray, labels: list[str]) -> str:
    order = np.argsort(-probs, kind="stable")[:3]
    return " · ".join(f"{labels[i]} ({probs[i]:.2f})" for i in order) + " · …"


def test_empty_state_then_running_then_the_result(qtbot, window):
    bar = window.tools["result"].bar
    assert bar.isVisible()
    assert bar.result.text().startswith("No model — open one (") and "Demos" in bar.result.text()
    pred = _open_demo(qtbot, window, "digits")
    labels = window.state.labels
    assert bar.result.text() == _top3(np.asarray(pred.outputs["probs"], np.float64), labels)
    assert bar.change.text() == ""  # nothing to compare yet
    window.controller.run_prediction()  # the same inputs again: the same answer, nothing changed
    qtbot.waitUntil(lambda: window.state.prediction is not pred, timeout=30_000)
    assert bar.change.text() == ""


@pytest.mark.parametrize("front", ["Layers", "Patches"])
def test_the_bar_shows_the_new_class_right_after_a_stroke(qtbot, window, front):
    before = _open_demo(qtbot, window, "mask_channel")
    window.show_panel(front)
    bar = window.tools["result"].bar
    labels = window.state.labels
    masks = window.tools["masks"]
    masks.ask_unsaved = lambda: "discard"
    # move the mask from the top-left digit to the top-right one: clear it, then a stroke
    m = masks.model
    m.clear()
    qtbot.waitUntil(lambda: window.state.prediction is not None and window.state.prediction is not before,
                    timeout=30_000)
    cleared = window.state.prediction
    old = np.asarray(cleared.outputs["probs"], np.float64)
    masks.panel.size.setValue(14)
    m.begin_stroke(34.0, 4.0, False)
    for y in range(6, 28, 3):
        m.stroke_to(34.0 + (y % 2) * 14, float(y))
    m.end_stroke()
    qtbot.waitUntil(lambda: window.state.prediction is not None and window.state.prediction is not cleared,
                    timeout=30_000)
    new = np.asarray(window.state.prediction.outputs["probs"], np.float64)
    qtbot.waitUntil(lambda: bar.result.text() == _top3(new, labels), timeout=10_000)
    a, b = int(np.argmax(new)), int(np.argmax(old))
    assert a != b, "the stroke over another digit should change the class"
    assert bar.change.text() == f"{labels[a]} ({new[a]:.2f}) ← {labels[b]} ({old[b]:.2f})"
    # in view: visible, inside the window, not covered by the panel in front
    assert bar.isVisible() and not bar.visibleRegion().isEmpty()
    top_left = bar.mapTo(window, bar.rect().topLeft())
    assert window.rect().contains(top_left) and bar.height() >= 16


def test_the_counting_demo_shows_a_count_everywhere(qtbot, window, tmp_path):
    pred = _open_demo(qtbot, window, "counting")
    count = float(np.asarray(pred.outputs["count"]).reshape(-1)[0])
    kind = window.state.kinds.kind_of("count")
    assert kind.kind == "regression" and not kind.chosen
    bar = window.tools["result"].bar
    assert bar.text() == f"count {count:.2f}"
    panel = window.predictions_panel
    assert panel.views["count"].value_label.text() == f"count {count:.2f}"
    texts = _texts(panel) + [bar.text()]
    assert not [t for t in texts if CLASS_WORDS.search(t)], texts
    # patches: the count per patch, combined as counts (no sigmoid), with value combinations
    patches = window.tools["patches"]
    from maskviewer.core.patches import PatchSpec

    assert patches.set_spec(PatchSpec((64, 64), (64, 64)))
    patches.run_all()
    qtbot.waitUntil(lambda: patches.combined is not None, timeout=60_000)
    per_patch = np.asarray(patches.outputs["count"], np.float64).reshape(-1)
    np.testing.assert_allclose(patches.probs[:, 0], per_patch)  # the values themselves
    assert [patches.panel.method.itemData(i) for i in range(patches.panel.method.count())] == [
        "mean", "median", "max", "min", "sum"]
    patches.panel.method.setCurrentIndex(patches.panel.method.findData("sum"))
    qtbot.waitUntil(lambda: patches.combined.method == "sum")
    np.testing.assert_allclose(patches.combined.scores, [per_patch.sum()])
    patch_texts = _texts(patches.panel) + [patches.panel.result_label.text(), patches.panel.patch_prediction.text()]
    assert f"count {per_patch.sum():.2f}" in patches.panel.result_label.text()
    assert not [t for t in patch_texts if CLASS_WORDS.search(t)], patch_texts
    # the export: the count by name, the kind said, no class words
    manifest = window.tools["export"].export_to(tmp_path / "out")
    assert manifest is not None
    doc = json.loads(manifest.read_text())
    entry = next(e for e in doc["artifacts"] if e["kind"] == "prediction")
    assert entry["output_kind"] == "regression" and entry["values"][0]["name"] == "count"
    assert entry["values"][0]["value"] == pytest.approx(count, rel=1e-6)
    assert doc["outputs"]["count"]["kind"] == "regression"
    words = [w for e in doc["artifacts"] if e["kind"] in ("prediction", "patch")
             for w in re.findall(r"[A-Za-z_]+", json.dumps(e))]
    assert not [w for w in words if CLASS_WORDS.search(w.replace("_", " "))]


def test_the_users_kind_is_used_by_every_view_and_remembered(qtbot, window, settings):
    pred = _open_demo(qtbot, window, "counting")
    raw = float(np.asarray(pred.outputs["count"]).reshape(-1)[0])
    view = window.predictions_panel.views["count"]
    view.kind_combo.setCurrentIndex(view.kind_combo.findData("multilabel_logits"))
    view.kind_combo.activated.emit(view.kind_combo.currentIndex())
    p = 1.0 / (1.0 + np.exp(-raw))
    bar = window.tools["result"].bar
    qtbot.waitUntil(lambda: bar.result.text() == f"count {p:.2f}")
    table = window.predictions_panel.tables["count"]
    assert float(table.item(0, 1).text()) == pytest.approx(p, abs=1e-4)
    assert float(table.item(0, 2).text()) == pytest.approx(raw, abs=1e-4)  # the logit beside it
    assert window.tools["patches"].model.results.family == "labels"
    items = window.tools["result"].export_items()
    assert items[0].method == "labels" and items[0].info["output_kind"] == "multilabel_logits"
    assert window.controller.prefs.saved_kinds(window.state.model_info.path) == {"count": "multilabel_logits"}
    # reopening the model keeps the choice
    window.controller.open_model(get_demo("counting").path(get_demo("counting").model))
    qtbot.waitUntil(lambda: window.state.prediction is not None and window.state.prediction is not pred,
                    timeout=60_000)
    assert window.state.kinds.kind_of("count").kind == "multilabel_logits"


def test_a_cam_of_the_count_explains_the_count_not_a_class(qtbot, window):
    _open_demo(qtbot, window, "counting")
    layers = window.tools["layers"]
    window.show_panel("Layers")
    layers.model.set_method("gradcam")
    assert layers.panel.class_index.isHidden()  # a count has no class to pick
    qtbot.waitUntil(lambda: layers.model.outcome is not None and layers.model.outcome.cam is not None,
                    timeout=60_000)
    text = layers.model.describe(window.state.labels, window.state.kinds)
    assert "of count" in text and not CLASS_WORDS.search(text), text
    # a class-score output keeps its class
    from maskviewer.core.output_kinds import target_text

    assert target_text("softmax", "probs", 3, ["a", "b", "c", "cat"]) == "class 3 (cat)"
    assert target_text("regression", "count", 0) == "count"
