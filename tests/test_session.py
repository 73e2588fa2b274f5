"""Sessions: files and folders round trip exactly; the window restores what it saved; a process
killed while painting gets its autosaved mask back on the next start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskviewer.core.masks import MaskSet
from maskviewer.io.session import (
    Session,
    SessionError,
    SessionImage,
    SessionMask,
    load_session,
    save_session,
)
from tests.conftest import wait_prediction

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _session(tmp_path, rng) -> Session:
    img = tmp_path / "pic.png"
    Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).save(img)
    soft = rng.random((12, 9)).astype(np.float32)
    hard = (rng.random((12, 9)) > 0.5).astype(np.float32)
    return Session(
        image=str(img),
        images=[SessionImage(str(img), 12, 9, [SessionMask("soft", soft, (1, 2, 3), True),
                                                SessionMask("hard", hard, (4, 5, 6), False)], "hard")],
        model=str(DEMO / "digits_cnn.keras"), model_sha256="abc",
        mappings={"digit": {"source": "image*mask:hard", "resize": "fit", "scale": "-1..1"}},
        labels=["a", "b"], view={"layers": {"colormap": "magma"}},
    )


@pytest.mark.parametrize("name", ["folder_session", "file.mvsession"])
def test_round_trip_restores_the_same_arrays(tmp_path, rng, name):
    s = _session(tmp_path, rng)
    out = save_session(tmp_path / name, s)
    assert out.is_dir() == (name == "folder_session")
    back = load_session(out)
    assert back.image == s.image and back.model == s.model and back.model_sha256 == "abc"
    assert back.mappings == s.mappings and back.labels == s.labels and back.view == s.view
    (im,) = back.images
    assert (im.path, im.height, im.width, im.active) == (s.image, 12, 9, "hard")
    for got, want in zip(im.masks, s.images[0].masks, strict=True):
        assert (got.name, got.color, got.visible) == (want.name, want.color, want.visible)
        assert got.data.dtype == np.float32 and np.array_equal(got.data, want.data)


def test_a_moved_session_finds_its_files(tmp_path, rng):
    project = tmp_path / "project"
    project.mkdir()
    s = _session(project, rng)
    save_session(project / "s", s)
    moved = tmp_path / "elsewhere"
    shutil.move(project, moved)
    back = load_session(moved / "s" / "session.json")
    assert back.image == str((moved / "pic.png").resolve())


def test_saving_again_drops_masks_no_longer_there(tmp_path, rng):
    s = _session(tmp_path, rng)
    save_session(tmp_path / "s", s)
    s.images[0].masks = s.images[0].masks[:1]
    save_session(tmp_path / "s", s)
    assert len(list((tmp_path / "s" / "masks").glob("*.npy"))) == 1
    assert [m.name for m in load_session(tmp_path / "s").images[0].masks] == ["soft"]


def test_damaged_sessions_are_explained(tmp_path, rng):
    bad = tmp_path / "x.mvsession"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SessionError, match="not a maskviewer session"):
        load_session(bad)
    with pytest.raises(SessionError, match="no such"):
        load_session(tmp_path / "missing.mvsession")
    s = _session(tmp_path, rng)
    folder = save_session(tmp_path / "s", s)
    doc = json.loads((folder / "session.json").read_text())
    doc["version"] = 99
    (folder / "session.json").write_text(json.dumps(doc))
    with pytest.raises(SessionError, match="newer maskviewer"):
        load_session(folder)
    doc["version"] = 1
    doc["images"][0]["height"] = 5
    (folder / "session.json").write_text(json.dumps(doc))
    with pytest.raises(SessionError, match="shape"):
        load_session(folder)
    doc["images"][0]["height"] = 12
    doc["images"][0]["masks"][0]["file"] = "../../etc/passwd"
    (folder / "session.json").write_text(json.dumps(doc))
    with pytest.raises(SessionError, match="outside"):
        load_session(folder)
    with zipfile.ZipFile(tmp_path / "y.mvsession", "w") as zf:
        zf.writestr("session.json", json.dumps({"format": "something else"}))
    with pytest.raises(SessionError, match="not a maskviewer session"):
        load_session(tmp_path / "y.mvsession")


def test_window_session_round_trip(window, qtbot, tmp_path):
    c = window.controller
    c.open_image(str(DEMO / "digit_2.png"))
    c.open_model(str(DEMO / "digits_cnn.keras"))
    wait_prediction(qtbot, window)
    masks = window.tools["masks"]
    masks.ask_unsaved = lambda: "discard"  # closing the window must not wait for an answer
    ms = masks.maskset
    ms.rectangle(3, 4, 15, 20, 1.0, name=ms.active.name)
    roi = masks.add_mask("roi")
    ms.ellipse(5, 5, 20, 25, 0.5)
    masks.set_feed("multiply", mask_name="roi")
    qtbot.waitUntil(lambda: window.state.mappings["digit"].source == "image*mask:roi", timeout=10_000)
    window.tools["layers"].panel.set_colormap("magma")
    saved = {m.name: m.data.copy() for m in ms.masks}
    session = window.tools["session"]
    path = session.save_to(tmp_path / "work.mvsession")
    assert path is not None and not ms.dirty  # the session holds them now

    # change everything, then open the session again
    masks.set_feed("none")
    window.tools["layers"].panel.set_colormap("grey")
    c.open_image(str(DEMO / "digit_5.png"))
    assert session.open_session(path)
    qtbot.waitUntil(lambda: window.state.mappings.get("digit") is not None
                    and window.state.mappings["digit"].source == "image*mask:roi", timeout=30_000)
    assert Path(window.state.image.path) == DEMO / "digit_2.png"
    restored = {m.name: m.data for m in masks.maskset.masks}
    assert restored.keys() == saved.keys() and roi.name in restored
    for name, data in saved.items():
        assert np.array_equal(restored[name], data)
    assert window.tools["layers"].panel.colormap.currentData() == "magma"
    # the model sees the restored mask: the prediction equals the one of the masked image
    pred = wait_prediction(qtbot, window)
    x = pred.inputs["digit"][:, :, 0]
    img = np.asarray(Image.open(DEMO / "digit_2.png").convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(x, img * saved[roi.name], atol=1e-6)


def test_session_pickers_and_recovery_question_use_the_dialog_service(qtbot, settings, tmp_path):
    from maskviewer.gui.app import create_window
    from maskviewer.gui.dialogs import ScriptedDialogs

    win = create_window(settings, start_backend=False)
    qtbot.addWidget(win)
    try:
        session = win.tools["session"]
        win.dialogs = ScriptedDialogs(str(tmp_path / "work"), None)
        out = session.save_dialog()
        assert out == tmp_path / "work.mvsession" and out.exists()  # the suffix is added
        assert session.open_dialog() is False  # cancelled
        assert [m for m, _t in win.dialogs.asked] == ["save_file", "open_file"]
        win.dialogs = ScriptedDialogs(False)
        assert session.ask_recover("Recover?") is False
        assert win.dialogs.asked == [("question", "Recover autosaved masks?")]
    finally:
        win.close()


PAINTER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from maskviewer.core.masks import Brush
    from maskviewer.gui.app import create_window
    from maskviewer.gui.session_tool import SessionTool

    SessionTool.AUTOSAVE_SECONDS = 0.2
    win = create_window(QSettings(sys.argv[1], QSettings.Format.IniFormat), start_backend=False)
    win.show()
    win.controller.open_image(sys.argv[2])
    ms = win.tools["masks"].maskset
    ms.rectangle(2, 3, 10, 20, 1.0)
    stroke = ms.begin_stroke(Brush(3.0))
    for x in range(4, 25):
        ms.stroke_to(stroke, float(x), 24.0)
    ms.end_stroke(stroke)
    tool = win.tools["session"]
    t0 = time.time()
    while tool.last_autosave is None:
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > 60:
            sys.exit(3)
    print("AUTOSAVED", tool.autosave_path, flush=True)
    stroke = ms.begin_stroke(Brush(2.0))  # still painting when the process is killed
    while True:
        ms.stroke_to(stroke, 5.0, 5.0)
        app.processEvents()
        time.sleep(0.01)
    """
)


def test_killed_while_painting_recovers_the_autosave(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from maskviewer.core.masks import Brush
    from maskviewer.gui.app import create_window

    ini = tmp_path / "settings.ini"
    image = DEMO / "digit_8.png"
    script = tmp_path / "painter.py"
    script.write_text(PAINTER)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("MASKVIEWER_RECOVERY_DIR", None)
    proc = subprocess.Popen([sys.executable, str(script), str(ini), str(image)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        assert line.startswith("AUTOSAVED"), proc.stderr.read()[-2000:] if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    autosave = Path(line.split(maxsplit=1)[1].strip())
    assert autosave.parent == tmp_path / "settings-recovery" and (autosave / "session.json").exists()

    # what the painter had painted when the autosave was written
    expected = MaskSet(28, 28)
    expected.add("mask")
    expected.rectangle(2, 3, 10, 20, 1.0)
    stroke = expected.begin_stroke(Brush(3.0))
    for x in range(4, 25):
        expected.stroke_to(stroke, float(x), 24.0)
    expected.end_stroke(stroke)

    win = create_window(QSettings(str(ini), QSettings.Format.IniFormat))
    session = win.tools["session"]
    offers = []
    session.ask_recover = lambda text: offers.append(text) or True  # before the offer is made
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: session.recovered is not None, timeout=30_000)
        assert "did not close properly" in offers[0] and "digit_8.png" in offers[0]
        assert Path(win.state.image.path) == image
        got = win.tools["masks"].maskset.get("mask")
        assert got is not None and np.array_equal(got.data, expected.get("mask").data)
        assert got.dirty  # not in a mask file yet: closing will ask
        assert not autosave.exists()  # offered once
        win.tools["masks"].ask_unsaved = lambda: "discard"
    finally:
        win.close()
    # a clean close leaves nothing to recover
    win2 = create_window(QSettings(str(ini), QSettings.Format.IniFormat), start_backend=False)
    win2.tools["session"].ask_recover = lambda text: pytest.fail("offered a clean session")
    qtbot.addWidget(win2)
    assert win2.tools["session"].recoverable() == []
    win2.close()


def test_a_session_opened_in_a_new_window_restores_the_layer_view(window, qtbot, tmp_path, settings):
    """k and the method come back even though the view is applied before the layer list arrives."""
    from maskviewer.gui.app import create_window

    c = window.controller
    c.open_image(str(DEMO / "digit_2.png"))
    c.open_model(str(DEMO / "digits_cnn.keras"))
    wait_prediction(qtbot, window)
    layers = window.tools["layers"]
    qtbot.waitUntil(lambda: "conv2" in layers.entries, timeout=30_000)
    layers.select_layer("conv2")
    layers.panel.set_method("topk")
    layers.panel.k.setValue(8)
    window.tools["masks"].ask_unsaved = lambda: "discard"
    path = window.tools["session"].save_to(tmp_path / "view.mvsession")
    assert path is not None

    other = create_window(settings)
    qtbot.addWidget(other)
    try:
        other.tools["masks"].ask_unsaved = lambda: "discard"
        assert other.tools["session"].open_session(path)
        panel = other.tools["layers"].panel
        qtbot.waitUntil(lambda: panel.current_path() == "conv2", timeout=60_000)
        assert panel.current_method() == "topk"
        assert panel.k.value() == 8 and other.tools["layers"].model.k == 8
    finally:
        other.close()
