"""The Compare view in the real window: two methods on the digits demo, sorted by deletion AUC,
a click draws one large over the image; the empty state; the model's rows sort Qt-free."""

from __future__ import annotations

import numpy as np
import pytest


def test_compare_runs_two_methods_sorts_and_shows_one_large(qtbot, window, tmp_path):
    from maskviewer.core.heatmap import normalize, to_indices, upsample_to_frame
    from maskviewer.gui.demo_gallery import open_demo

    tool = window.tools["compare"]
    assert "Tick" in tool.panel.message.text() or "Compare" in tool.panel.message.text()  # the empty state
    assert tool.panel.table.rowCount() == 0
    open_demo(window, "digits")
    qtbot.waitUntil(lambda: window.state.model_info is not None and window.state.image is not None, timeout=60_000)
    qtbot.waitUntil(lambda: window.tools["layers"].model.selected is not None, timeout=30_000)
    layers = window.tools["layers"].model
    layers.select_layer("conv2")  # the Layers tool's layer is the one compared on
    assert "Layer conv2" in tool.panel.where.text()
    layers.select_layer("conv3")
    assert "Layer conv3" in tool.panel.where.text() and tool.where()[0] == "conv3"
    m = tool.model
    for name in list(m.chosen):
        m.set_chosen(name, False)
    m.set_chosen("gradcam", True)
    m.set_chosen("edges", True)
    m.set_steps(8)
    m.set_sanity(True, 4)
    assert tool.panel._boxes["gradcam"].isChecked() and tool.panel._boxes["edges"].isChecked()
    with qtbot.waitSignal(tool.jobs.finished, timeout=120_000):
        assert tool.run() is not None
    rows = m.outcome.rows
    assert [r.method for r in rows] == ["gradcam", "edges"] and not any(r.error for r in rows)
    by = {r.method: r for r in rows}
    assert by["gradcam"].sanity.passed and not by["edges"].sanity.passed
    t = tool.panel.table
    assert t.rowCount() == 2

    def shown_order() -> list[str]:
        return [t.item(i, 0).text() for i in range(t.rowCount())]

    # sort by deletion AUC (lower first), then reversed by a second click on the header
    t.horizontalHeader().sectionClicked.emit(0)  # by method first, so that the next click sorts afresh
    t.horizontalHeader().sectionClicked.emit(1)
    dels = sorted(rows, key=lambda r: r.deletion.auc)
    assert shown_order() == [r.label for r in dels]
    assert float(t.item(0, 1).text()) <= float(t.item(1, 1).text())
    t.horizontalHeader().sectionClicked.emit(1)
    assert shown_order() == [r.label for r in dels[::-1]]

    # a click on a row draws that map large over the image, in the input's frame
    target = next(i for i in range(t.rowCount()) if t.item(i, 0).data(0x0100) == "edges")
    t.cellClicked.emit(target, 2)
    assert m.selected == "edges" and tool.overlay.isVisible()
    frame = m.outcome.frame
    want = to_indices(upsample_to_frame(normalize(by["edges"].map)[0], frame))
    np.testing.assert_array_equal(tool.overlay.image, want)
    rect = tool.overlay.mapRectToParent(tool.overlay.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx(
        (frame.x, frame.y, frame.width, frame.height))
    assert t.selectedItems() and t.selectedItems()[0].row() == target

    # File → Export writes the table: each map with its AUCs, curves and sanity check, in order
    from maskviewer.io.export import load_npy, read_manifest

    assert window.tools["export"].export_to(tmp_path / "out") is not None
    manifest = read_manifest(tmp_path / "out")
    compared = sorted((e for e in manifest["artifacts"] if "compare_rank" in e), key=lambda e: e["compare_rank"])
    assert [e["method"] for e in compared] == [r.method for r in dels[::-1]]  # the order shown
    for e in compared:
        r = by[e["method"]]
        np.testing.assert_array_equal(load_npy(tmp_path / "out", e), r.map.astype(np.float32))
        f = e["faithfulness"]
        assert f["deletion_auc"] == pytest.approx(r.deletion.auc) and f["insertion_auc"] == pytest.approx(r.insertion.auc)
        assert f["deletion"]["scores"] == pytest.approx(list(r.deletion.scores))
        assert e["sanity"]["passed"] == r.sanity.passed and e["compare_order"] == "deletion descending"
        assert (tmp_path / "out" / e["files"]["plot"]["path"]).exists()

    # a long run reports progress and stops on Cancel; the rows shown stay those of the last run
    m.set_steps(256)
    m.set_sanity(True, 40)
    with qtbot.waitSignal(tool.jobs.progress, timeout=60_000):
        tool.run()
    assert tool.panel.cancel.isEnabled() and not tool.panel.run.isEnabled()
    with qtbot.waitSignal(tool.jobs.cancelled, timeout=10_000):
        tool.panel.cancel.click()
    assert m.message == "Cancelled." and tool.panel.run.isEnabled() and t.rowCount() == 2


def test_model_sorts_with_missing_values_last():
    from maskviewer.core.faithfulness import Curve
    from maskviewer.gui.compare.jobs import CompareOutcome, CompareRequest, MethodResult
    from maskviewer.gui.compare.model import CompareModel

    def curve(auc):
        return Curve("deletion", np.array([0.0, 1.0]), np.array([auc, auc]), auc, "black")

    rows = [MethodResult("a", "A", deletion=curve(0.5), insertion=curve(0.2)),
            MethodResult("b", "B", deletion=curve(0.1), insertion=curve(0.9)),
            MethodResult("c", "C", error="needs a layer")]
    m = CompareModel()
    m.set_methods({"a": "A", "b": "B", "c": "C"})
    m.set_outcome(CompareOutcome(CompareRequest(["a", "b", "c"]), rows))
    assert [v.method for v in m.rows()] == ["b", "a", "c"] and m.selected == "b"
    m.sort_by("insertion")
    assert [v.method for v in m.rows()] == ["b", "a", "c"]
    m.sort_by("insertion")
    assert [v.method for v in m.rows()] == ["a", "b", "c"]
    m.sort_by("method", descending=True)
    assert [v.method for v in m.rows()] == ["b", "a", "c"]
    assert m.make_request(None, None, None, None).methods == m.chosen
    for name in list(m.chosen):
        m.set_chosen(name, False)
    assert isinstance(m.make_request(None, None, None, None), str)
