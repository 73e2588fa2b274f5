"""The Patches tool in the real window: settings, stepping, the shown patch, runs, maps, exports."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import Qt

from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, prepare_input
from maskviewer.core.patches import PatchSpec
from tests.conftest import wait_prediction
from tests.model_zoo import random_image


@pytest.fixture
def loaded(window, qtbot, model_files, tmp_path):
    """The window with a 40×36 RGB image and the 32×32 RGB classifier (5 classes)."""
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(random_image(40, 36, 3, seed=7)).save(path)
    window.controller.open_image(path)
    window.controller.open_model(model_files["rgb"])
    assert wait_prediction(qtbot, window) is not None
    tool = window.tools["patches"]
    window.show_panel("Patches")  # its overlays are drawn while its tab is in front
    qtbot.waitUntil(lambda: tool.panel.output_combo.count() == 1)
    return window, tool


def _tf_patches(image: np.ndarray, spec: PatchSpec) -> np.ndarray:
    import tensorflow as tf

    kh, kw = spec.size
    out = tf.image.extract_patches(
        image[None], [1, kh, kw, 1], [1, *spec.stride, 1], [1, *spec.rate, 1], spec.padding
    ).numpy()
    return out.reshape(-1, kh, kw, image.shape[2]), out.shape[1:3]


def _set_fields(tool, size, stride, rate, padding="VALID") -> bool:
    p = tool.panel
    p.size_edit.setText(size)
    p.stride_edit.setText(stride)
    p.rate_edit.setText(rate)
    p.padding.setCurrentText(padding)
    return tool.apply_settings()


def _model_inputs(window, patches):
    mapping = window.state.mappings["image"]
    return np.stack([prepare_input(ImageData(p), mapping, (None, 32, 32, 3))[0] for p in patches])


def test_step_through_patches_and_read_the_shown_patch(loaded, qtbot):
    window, tool = loaded
    spec = PatchSpec((18, 14), (7, 9), (1, 2), "SAME")
    assert _set_fields(tool, "18, 14", "7, 9", "1, 2", "SAME")
    assert tool.spec == spec and tool.message == ""
    image = window.state.image.array
    tf_patches, (rows, cols) = _tf_patches(image, spec)
    assert (tool.grid.rows, tool.grid.cols) == (rows, cols)
    assert f"{rows * cols} patches ({rows} × {cols})" in tool.panel.count_label.text()

    # the rectangles drawn: one per patch, each spanning its sampled pixels as TF samples them
    drawn = tool.rects_drawn()
    assert drawn.shape == (rows * cols, 4)
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    coords, _ = _tf_patches(np.stack([yy + 1, xx + 1], -1).astype(np.float32), spec)
    for n, (x, y, w, h) in enumerate(drawn):
        assert (w, h) == ((14 - 1) * 2 + 1, 18)
        inside = coords[n][coords[n, :, :, 0] > 0] - 1
        assert inside[:, 1].min() >= x and inside[:, 1].max() <= x + w - 1
        assert inside[:, 0].min() >= y and inside[:, 0].max() <= y + h - 1
        # the far corner of the rectangle is the last sampled pixel (inside or padding)
        assert (x + w - 1 - inside[:, 1].max()) % 2 == 0

    def check_shown(index):
        assert tool.index == index and tool.panel.slider.value() == index
        want = _model_inputs(window, tf_patches[index : index + 1])[0]
        np.testing.assert_allclose(tool.panel.patch_item.image, want, rtol=0, atol=1e-6)
        x, y, w, h = drawn[index]
        r = tool.current_item.rect()
        assert (r.x(), r.y(), r.width(), r.height()) == (x, y, w, h)
        assert tool.panel.index_label.text().startswith(f"Patch {index + 1} / {rows * cols}")

    check_shown(0)
    tool.panel.setFocus()
    qtbot.keyClick(tool.panel, Qt.Key.Key_Right)
    check_shown(1)
    qtbot.keyClick(tool.panel, Qt.Key.Key_Down)  # one row down
    check_shown(1 + cols)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Left)  # arrows over the image step too
    check_shown(cols)
    tool.panel.slider.setValue(rows * cols - 1)
    check_shown(rows * cols - 1)
    qtbot.mouseClick(tool.panel.next_button, Qt.MouseButton.LeftButton)  # clamps at the end
    check_shown(rows * cols - 1)
    # the patch's own prediction arrives from the worker
    qtbot.waitUntil(lambda: tool.panel.patch_prediction.text().startswith("This patch"), timeout=20_000)
    want = np.asarray(window.controller.worker.host.model(_model_inputs(window, tf_patches[-1:])))[0]
    top = int(np.argmax(want))
    assert f"{top} {want[top]:.3f}" in tool.panel.patch_prediction.text()
    # play steps on its own, wrapping around
    qtbot.mouseClick(tool.panel.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tool.index == 0, timeout=5_000)
    qtbot.mouseClick(tool.panel.play_button, Qt.MouseButton.LeftButton)
    assert not tool.play_timer.isActive()


def test_run_all_combine_maps_and_exports(loaded, qtbot, tmp_path):
    window, tool = loaded
    tool.panel.preset.setCurrentIndex(list(tool.panel.preset.itemData(i) for i in range(3)).index("grid"))
    tool.panel.grid_edit.setText("3, 2")
    assert tool.apply_preset()
    assert (tool.grid.rows, tool.grid.cols) == (3, 2)
    with qtbot.waitSignal(window.controller.worker.job_finished, timeout=30_000):
        qtbot.mouseClick(tool.panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tool.probs is not None)
    tf_patches, _ = _tf_patches(window.state.image.array, tool.spec)
    model = window.controller.worker.host.model
    want = np.asarray(model(_model_inputs(window, tf_patches)))
    np.testing.assert_allclose(tool.probs, want, rtol=1e-5, atol=1e-6)
    assert not tool.panel.progress.isVisible()

    # every combination equals numpy on the per-patch probabilities
    expected = {
        "mean": want.mean(0),
        "max": want.max(0),
        "vote": np.bincount(want.argmax(1), minlength=5) / len(want),
        "geometric": np.exp(np.log(want).mean(0)) / np.exp(np.log(want).mean(0)).sum(),
    }
    for i in range(tool.panel.method.count()):
        tool.panel.method.setCurrentIndex(i)
        key = tool.panel.method.currentData()
        np.testing.assert_allclose(tool.combined.scores, expected[key], rtol=1e-5, atol=1e-7)
        label = int(np.argmax(expected[key]))
        assert tool.panel.result_label.text().startswith(f"Final: class {label} ")
    table = tool.panel.table_model
    assert table.rowCount() == 6 and table.columnCount() == 7 + 5
    for r in range(6):
        assert table.value(r, 5) == str(int(np.argmax(want[r])))
        np.testing.assert_allclose([table.value(r, 7 + k) for k in range(5)], want[r], rtol=1e-5, atol=1e-6)
    qtbot.mouseClick(
        tool.panel.table.viewport(),
        Qt.MouseButton.LeftButton,
        pos=tool.panel.table.visualRect(table.index(4, 0)).center(),
    )
    assert tool.index == 4  # a row click selects that patch

    # class-score map: each pixel is its patch's probability (the grid does not overlap)
    tool.panel.map_kind.setCurrentIndex(1)
    cls = tool.panel.map_class.currentData()
    assert tool.map_item.isVisible()
    np.testing.assert_allclose(tool.map_values()[0], want[:, cls], rtol=1e-5, atol=1e-7)

    # occlusion on the same grid equals model(x) on the greyed images
    with qtbot.waitSignal(window.controller.worker.job_finished, timeout=30_000):
        qtbot.mouseClick(tool.panel.occlusion_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tool.occlusion is not None)
    mapping = window.state.mappings["image"]
    img = window.state.image.array
    base = np.asarray(model(prepare_input(ImageData(img), mapping, (None, 32, 32, 3))[0][None]))[0]
    drops = []
    for x, y, w, h in tool.grid.rects():
        occ = img.copy()
        occ[y : y + h, x : x + w] = 128
        drops.append(base - np.asarray(model(prepare_input(ImageData(occ), mapping, (None, 32, 32, 3))[0][None]))[0])
    np.testing.assert_allclose(tool.occlusion_drop(), np.array(drops), rtol=1e-5, atol=1e-6)
    assert tool.panel.map_kind.currentData() == "occlusion"
    np.testing.assert_allclose([table.value(r, 12) for r in range(6)], np.array(drops)[:, cls], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tool.map_values()[0], np.array(drops)[:, cls], rtol=1e-5, atol=1e-6)

    # exports: the patches as cut (= TF), the model batch, PNGs and the table
    batch = tool.export_npy(tmp_path / "p.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), tf_patches)
    tool.export_npy(tmp_path / "x.npy", inputs=True)
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), _model_inputs(window, batch), atol=1e-6)
    paths = tool.export_pngs(tmp_path / "png")
    from PIL import Image

    assert len(paths) == 6
    np.testing.assert_array_equal(np.asarray(Image.open(paths[5])), tf_patches[5])
    tool.export_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["patch", "row", "col"] and len(rows) == 7
    probs = np.array([[float(v) for v in r[10:15]] for r in rows[1:]])
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
    occl = np.array([[float(v) for v in r[15:20]] for r in rows[1:]])
    np.testing.assert_allclose(occl, np.array(drops), rtol=1e-5, atol=1e-6)


def test_bad_settings_keep_the_last_valid_ones(loaded, qtbot):
    window, tool = loaded
    assert _set_fields(tool, "18", "10", "1")
    good, drawn = tool.spec, tool.rects_drawn()
    for size, stride, rate, words in (
        ("41, 10", "10", "1", "larger than the image"),
        ("10", "10", "5", "larger than the image"),
        ("0", "10", "1", "at least 1"),
        ("10", "-3", "1", "at least 1"),
        ("10", "0, 2", "1", "at least 1"),
        ("ten", "10", "1", "whole numbers"),
    ):
        assert not _set_fields(tool, size, stride, rate)
        assert words in tool.panel.message.text() and tool.panel.message.isVisible()
        assert "previous settings" in tool.message
        assert tool.spec == good
        np.testing.assert_array_equal(tool.rects_drawn(), drawn)
    assert _set_fields(tool, "18", "10", "1")
    assert not tool.panel.message.isVisible()

    # a model input that cannot take the patch: no resize and a 32×32 input
    window.controller.set_mapping("image", InputMapping(resize="none"))
    qtbot.waitUntil(lambda: "cannot feed the model input" in tool.message)
    assert "32×32" in tool.message
    assert tool.run_all() is None and tool.probs is None
    window.controller.set_mapping("image", InputMapping(resize="stretch"))
    qtbot.waitUntil(lambda: tool.message == "")


def test_cancel_a_long_run(loaded, qtbot, monkeypatch):
    from maskviewer.inference import patch_runner

    window, tool = loaded
    monkeypatch.setattr(patch_runner, "BATCH_BYTES", 1)  # one patch per model call: a slow run
    assert _set_fields(tool, "4", "1", "1")
    assert tool.grid.count == 37 * 33
    tool.run_all()
    qtbot.waitUntil(lambda: tool.panel.progress.value() > 0, timeout=20_000)
    assert tool.panel.cancel_button.isEnabled()
    with qtbot.waitSignal(window.controller.worker.job_cancelled, timeout=20_000):
        qtbot.mouseClick(tool.panel.cancel_button, Qt.MouseButton.LeftButton)
    assert tool.probs is None
    assert not tool.panel.progress.isVisible() and not tool.panel.cancel_button.isEnabled()


def test_exports_ask_where_through_the_dialog_service(loaded, tmp_path):
    from maskviewer.gui.dialogs import ScriptedDialogs

    window, tool = loaded
    assert _set_fields(tool, "18", "10", "1")
    count = tool.grid.count
    window.dialogs = ScriptedDialogs(str(tmp_path / "png"), str(tmp_path / "p.npy"), None, str(tmp_path / "t.csv"))
    tool.export_png_dialog()
    assert len(list((tmp_path / "png").glob("*.png"))) == count
    tool.export_npy_dialog()
    assert np.load(tmp_path / "p.npy").shape[0] == count
    tool.export_npy_dialog(inputs=True)  # cancelled: nothing written
    assert not (tmp_path / "patch_inputs.npy").exists()
    tool.export_csv_dialog()  # nothing run yet: an error, no file
    assert window.last_error[0] == "Export patch table" and not (tmp_path / "t.csv").exists()
    assert [method for method, _title in window.dialogs.asked] == ["folder", "save_file", "save_file", "save_file"]
