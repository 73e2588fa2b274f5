"""The real window: open image and model, run inference on the worker, bad input, files, settings."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from maskviewer.io.images import save_image
from tests.conftest import wait_prediction


def _reference(keras_mod, path, x):
    model = keras_mod.saving.load_model(path, compile=False)
    return np.asarray(model(x[None], training=False))[0]


def test_backend_status_names_the_device(window):
    assert window.backend_label.text().startswith(("CPU", "GPU"))


def test_open_image_and_model_predictions_equal_keras(qtbot, window, tmp_path, model_files, keras_mod):
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    save_image(tmp_path / "photo.png", img)
    assert window.controller.open_image(tmp_path / "photo.png")
    window.controller.open_model(model_files["rgb"])
    pred = wait_prediction(qtbot, window)
    assert pred is not None, window.controller.last_prediction_error
    x = pred.inputs["image"]
    assert x.shape == (32, 32, 3)
    np.testing.assert_allclose(pred.outputs["probs"], _reference(keras_mod, model_files["rgb"], x), rtol=1e-5)
    table = window.predictions_panel.tables["probs"]
    top = int(np.argmax(pred.outputs["probs"]))
    assert table.item(0, 0).text() == str(top)
    assert float(table.item(0, 2).text()) == pytest.approx(float(pred.outputs["probs"][top]), abs=1e-4)
    assert "photo.png" in window.windowTitle() and "rgb.keras" in window.windowTitle()


def test_mapping_edit_reruns_and_is_remembered(qtbot, window, tmp_path, model_files, keras_mod):
    save_image(tmp_path / "a.png", np.full((30, 30, 3), 200, np.uint8))
    window.controller.open_image(tmp_path / "a.png")
    window.controller.open_model(model_files["rgb"])
    first = wait_prediction(qtbot, window)
    editor = window.mapping_panel.editors["image"]
    editor.scale.setCurrentIndex(editor.scale.findData("-1..1"))
    qtbot.waitUntil(lambda: window.state.prediction is not first and window.state.prediction is not None)
    x = window.state.prediction.inputs["image"]
    np.testing.assert_allclose(x, 200 / 255 * 2 - 1, atol=1e-5)
    np.testing.assert_allclose(
        window.state.prediction.outputs["probs"], _reference(keras_mod, model_files["rgb"], x), rtol=1e-5
    )
    # reopening the model restores the edited mapping
    saved = window.controller.prefs.saved_mappings(str(model_files["rgb"]))
    assert saved["image"].scale == "-1..1"


@pytest.mark.parametrize(
    "name,content",
    [("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30), ("notes.png", b"just some text"), ("empty.jpg", b"")],
)
def test_bad_image_shows_error_and_keeps_working(qtbot, window, tmp_path, name, content):
    good = tmp_path / "good.png"
    save_image(good, np.zeros((8, 8), np.uint8))
    assert window.controller.open_image(good)
    bad = tmp_path / name
    bad.write_bytes(content)
    assert not window.controller.open_image(bad)
    title, message = window.last_error
    assert name in message and "Traceback" not in message
    assert window.state.image.path == str(good)  # the previous image stays
    assert window.controller.open_image(good)


def test_truncated_image(qtbot, window, tmp_path):
    save_image(tmp_path / "full.png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert not window.controller.open_image(tmp_path / "cut.png")
    assert "corrupt" in window.last_error[1] or "truncated" in window.last_error[1]


def test_bad_model_file_keeps_previous_model(qtbot, window, tmp_path, model_files):
    window.controller.open_model(model_files["sequential"])
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=30_000)
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"garbage")
    window.controller.open_model(bad)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert "not a Keras model file" in window.last_error[1]
    assert window.state.model_info.name == "sequential.keras"


def test_channel_mismatch_is_explained_in_predictions(qtbot, window, tmp_path, keras_mod):
    model = keras_mod.Sequential([keras_mod.Input((16, 16, 2)), keras_mod.layers.Flatten(), keras_mod.layers.Dense(2)])
    model.save(tmp_path / "two.keras")
    save_image(tmp_path / "rgb.png", np.zeros((16, 16, 3), np.uint8))
    window.controller.open_image(tmp_path / "rgb.png")
    window.controller.open_model(tmp_path / "two.keras")
    qtbot.waitUntil(lambda: bool(window.controller.last_prediction_error), timeout=30_000)
    msg = window.controller.last_prediction_error
    assert "expects 2 channel" in msg and "image has 3" in msg
    window.show_panel("Predictions")
    assert window.predictions_panel.error_label.isVisible()
    # the window still works: a grey model on the same image runs
    seq = keras_mod.Sequential([keras_mod.Input((16, 16, 3)), keras_mod.layers.Flatten(), keras_mod.layers.Dense(2)])
    seq.save(tmp_path / "three.keras")
    window.controller.open_model(tmp_path / "three.keras")
    qtbot.waitUntil(lambda: window.state.prediction is not None, timeout=30_000)
    assert not window.predictions_panel.error_label.isVisible()


def test_npy_of_model_input_shape_is_fed_unchanged(qtbot, window, tmp_path, model_files, keras_mod):
    raw = np.random.default_rng(4).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "input.npy", raw)
    window.controller.open_image(tmp_path / "input.npy")
    window.controller.open_model(model_files["rgb"])
    pred = wait_prediction(qtbot, window)
    np.testing.assert_array_equal(pred.inputs["image"], raw[0])
    np.testing.assert_allclose(pred.outputs["probs"], _reference(keras_mod, model_files["rgb"], raw[0]), rtol=1e-5)


def test_drop_files_opens_them(qtbot, window, tmp_path, model_files):
    save_image(tmp_path / "dropped.png", np.zeros((28, 28), np.uint8))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.png")), QUrl.fromLocalFile(str(model_files["sequential"]))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.state.image.path.endswith("dropped.png")
    qtbot.waitUntil(lambda: window.state.model_info is not None, timeout=30_000)
    recent = window.controller.recent_files()
    assert recent[0].endswith("sequential.keras") and recent[1].endswith("dropped.png")
    assert [a.text() for a in window.recent_menu.actions()][:2] == ["sequential.keras", "dropped.png"]


def test_other_image_as_second_input(qtbot, window, tmp_path, keras_mod):
    a = keras_mod.Input((8, 8, 1), name="left")
    b = keras_mod.Input((8, 8, 1), name="right")
    out = keras_mod.layers.Subtract(name="diff")([a, b])
    keras_mod.Model([a, b], out).save(tmp_path / "two_inputs.keras")
    save_image(tmp_path / "l.png", np.full((8, 8), 255, np.uint8))
    save_image(tmp_path / "r.png", np.full((8, 8), 51, np.uint8))
    window.controller.open_image(tmp_path / "l.png")
    window.controller.open_model(tmp_path / "two_inputs.keras")
    qtbot.waitUntil(lambda: window.state.prediction is not None, timeout=30_000)
    np.testing.assert_allclose(window.state.prediction.outputs["diff"], 0.0, atol=1e-6)
    assert window.controller.set_input_file("right", tmp_path / "r.png")
    qtbot.waitUntil(lambda: window.state.mappings["right"].source.startswith("file:"))
    qtbot.waitUntil(lambda: abs(float(window.state.prediction.outputs["diff"].mean()) - 0.8) < 1e-5, timeout=30_000)


def test_demo_opens_and_predicts_its_digit(qtbot, window):
    from maskviewer.gui.demo_gallery import open_demo

    demo = open_demo(window, "digits")
    pred = wait_prediction(qtbot, window)
    assert pred is not None
    assert window.state.labels[:3] == ["0", "1", "2"]
    shown = int(np.argmax(pred.outputs["probs"]))
    assert demo.images[0] == f"digit_{shown}.png"  # the first sample (a 0) is classified right


def test_file_actions_and_consent_ask_through_the_dialog_service(qtbot, window, tmp_path, model_files):
    from maskviewer.gui.dialogs import ScriptedDialogs

    save_image(tmp_path / "picked.png", np.zeros((28, 28), np.uint8))
    window.dialogs = ScriptedDialogs(str(tmp_path / "picked.png"), None, None)
    open_image = next(a for a in window.file_menu.actions() if a.text() == "&Open Image…")
    open_image.trigger()
    assert window.state.image.path == str(tmp_path / "picked.png")
    assert window.controller.last_dir() == str(tmp_path.resolve())
    next(a for a in window.file_menu.actions() if a.text() == "Open &Model…").trigger()  # cancelled
    next(a for a in window.model_menu.actions() if a.text() == "Load Class &Labels…").trigger()
    assert window.dialogs.asked == [("open_file", "Open Image"), ("open_file", "Open Model"),
                                    ("open_file", "Class labels")]
    assert window.state.model_info is None and not window.state.labels
    # the controller's consent questions are the window's, asked through the same service
    window.dialogs = ScriptedDialogs(False)
    assert window.controller.confirm("Run code?", "really?") is False
    assert window.dialogs.asked == [("confirm", "Run code?")]
