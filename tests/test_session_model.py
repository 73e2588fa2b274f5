"""The session model without Qt: what a session holds, autosave bookkeeping, recovery choice."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from maskviewer.core.masks import MaskSet
from maskviewer.gui.session_model import (
    AUTOSAVE_PREFIX,
    SessionModel,
    has_masks,
    model_plan,
    pid_alive,
    recovery_text,
    restore_masks,
    session_images,
)
from maskviewer.io.session import Session, save_session


def _painted(path="/data/a.png", h=6, w=8) -> MaskSet:
    ms = MaskSet(h, w, image_path=path)
    ms.add("cells")
    ms.rectangle(1, 1, 4, 3, 1.0)
    ms.add("roi", color=(0, 200, 0))
    return ms


def _autosave(folder, pid, clean=False, t=None, image="/data/a.png"):
    s = Session(image=image, images=session_images([_painted(image)]))
    s.autosave = {"pid": pid, "clean": clean, "time": time.time() if t is None else t}
    save_session(folder, s)
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_model_imports_no_qt():
    code = "import maskviewer.gui.session_model, maskviewer.gui.settings, maskviewer.gui.inputs, sys\n"
    code += "print('\\n'.join(sys.modules))"
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "maskviewer.gui.session_model" in mods
    assert not {m for m in mods if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "tensorflow")}


def test_session_images_copy_the_pixels_of_sets_with_an_image():
    ms = _painted()
    painted = float(ms.get("cells").data.sum())
    assert painted > 0
    images = session_images([ms, MaskSet(3, 3)])  # a set without an image file is not saved
    assert len(images) == 1
    im = images[0]
    assert (im.path, im.height, im.width, im.active) == ("/data/a.png", 6, 8, "roi")
    assert [m.name for m in im.masks] == ["cells", "roi"] and im.masks[1].color == (0, 200, 0)
    ms.get("cells").data[:] = 0
    assert im.masks[0].data.sum() == painted  # a copy, not a view
    assert has_masks(Session(images=images)) and not has_masks(Session(images=session_images([MaskSet(2, 2, image_path="x")])))


def test_restore_masks_replaces_the_current_set_and_adds_others():
    session = Session(images=session_images([_painted("/a.png"), _painted("/b.png", 4, 4)]))
    current = MaskSet(6, 8, image_path="/a.png")
    current.add("old")
    sets = {"/a.png:6x8": current}
    restore_masks(session, sets, current, "/a.png:6x8")
    assert current.names == ["cells", "roi"] and current.active.name == "roi"
    assert all(m.dirty for m in current.masks)  # not in a mask file yet
    other = sets["/b.png:4x4"]
    assert other.names == ["cells", "roi"]
    assert np.array_equal(other.get("cells").data, session.images[1].masks[0].data)
    assert sets["/a.png:6x8"] is current


def test_model_plan(tmp_path):
    model = tmp_path / "m.keras"
    assert model_plan(Session(), None, False) == "none"
    assert model_plan(Session(model=str(model)), None, False) == "missing"
    model.write_bytes(b"x")
    assert model_plan(Session(model=str(model)), None, False) == "load"
    assert model_plan(Session(model=str(model)), str(model), True) == "ready"
    assert model_plan(Session(model=str(model)), str(model), False) == "load"


def test_pending_session_waits_for_its_model(tmp_path):
    m = SessionModel(tmp_path)
    m.pending = Session(model=str(tmp_path / "m.keras"))
    assert m.take_pending(None) is None and m.take_pending(str(tmp_path / "other.keras")) is None
    assert m.take_pending(str(tmp_path / "." / "m.keras")) is not None
    assert m.pending is None


def test_autosave_writes_only_painted_work_and_marks_clean(tmp_path):
    m = SessionModel(tmp_path / "rec")
    assert m.autosave_path.name.startswith(f"{AUTOSAVE_PREFIX}{os.getpid()}-")
    m.mark_changed()
    assert m.autosave_due()
    m.autosave(Session(), wait=True)  # nothing painted: nothing written, change forgotten
    assert not m.autosave_path.exists() and not m.changed and m.last_autosave is None
    m.mark_changed(object(), None)  # a mask edit event's arguments
    m.autosave(Session(images=session_images([_painted()])))
    while m._thread is not None and m._thread.is_alive():
        time.sleep(0.01)
    assert m.poll() == "" and m.last_autosave is not None
    assert m.recoverable() == []  # its own autosave is never offered to itself
    m.autosave(Session(), clean=True, wait=True)  # an older autosave is updated, even empty
    from maskviewer.io.session import load_session

    assert load_session(m.autosave_path).autosave["clean"] is True


def test_a_failed_autosave_is_reported_and_retried(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    m = SessionModel(blocker / "rec")
    m.autosave(Session(images=session_images([_painted()])), wait=True)
    assert m.changed  # try again at the next tick
    assert m.last_autosave is None and m._thread_error


def test_recovery_offers_dead_unclean_autosaves_newest_first(tmp_path):
    dead = _dead_pid()
    old = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}1-1", dead, t=100.0, image="/old.png")
    new = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}1-2", dead, t=200.0, image="/new.png")
    clean = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}1-3", dead, clean=True)
    alive = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}1-4", os.getppid())
    m = SessionModel(tmp_path)
    found = m.recoverable()
    assert [f for f, _s in found] == [new, old]
    assert not clean.exists() and alive.exists()  # clean ones go unseen; live ones stay
    text = recovery_text(found[0][1])
    assert "did not close properly" in text and "new.png" in text and "2 mask(s)" in text
    events = []
    m.recovered_event.connect(events.append)
    m.finish_recovery(found, new)
    assert m.recovered == new and events == [new]
    assert not new.exists() and not old.exists()  # offered once


def test_pid_alive():
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(_dead_pid())


def test_declined_recovery_forgets_the_autosaves(tmp_path):
    folder = _autosave(tmp_path / f"{AUTOSAVE_PREFIX}9-9", _dead_pid())
    m = SessionModel(tmp_path)
    m.finish_recovery(m.recoverable(), None)
    assert m.recovered is None and not folder.exists()
