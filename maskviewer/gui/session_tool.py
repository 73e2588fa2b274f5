"""Sessions in the window: File → Save Session / Open Session, autosave and crash recovery.

A session (see :mod:`maskviewer.io.session`) records the image, the model, the masks of every
image, the input mappings and the tools' view settings. Painted masks are autosaved every few
seconds (only after a change) and on close into a per-user recovery folder; an autosave whose
process died without closing the window is offered for recovery on the next start.

The recovery folder is ``MASKVIEWER_RECOVERY_DIR`` when set; with settings kept in an INI file
(tests, ``MASKVIEWER_SETTINGS``) a folder beside that file, so separate settings never share
recoveries; otherwise ``recovery`` in the user's application data folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import InputMapping
from maskviewer.io.session import (
    SESSION_JSON,
    SESSION_SUFFIX,
    Session,
    SessionError,
    SessionImage,
    SessionMask,
    load_session,
    save_session,
)

AUTOSAVE_PREFIX = "autosave-"
SESSION_FILTER = f"maskviewer sessions (*{SESSION_SUFFIX} {SESSION_JSON});;All files (*)"


def recovery_dir(settings: QSettings) -> Path:
    """Where autosaves go (see the module notes)."""
    env = os.environ.get("MASKVIEWER_RECOVERY_DIR")
    if env:
        return Path(env)
    if settings.format() == QSettings.Format.IniFormat and settings.fileName():
        ini = Path(settings.fileName())
        return ini.parent / f"{ini.stem}-recovery"
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".maskviewer") / "recovery"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:
        return False
    return True


class SessionTool(QObject):
    """Save/open sessions, autosave painted masks, offer recovery after a crash.

    Hooks a test may replace: :attr:`ask_recover` (``ask_recover(text) -> bool``),
    :attr:`pick_save_path` and :attr:`pick_open_path` (return a path or ``""``).
    """

    #: seconds between autosave checks
    AUTOSAVE_SECONDS = 3.0

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = self.controller.state
        self.ask_recover: Callable[[str], bool] = self._ask_recover_dialog
        self.pick_save_path: Callable[[], str] = self._pick_save_dialog
        self.pick_open_path: Callable[[], str] = self._pick_open_dialog
        self.recovery_dir = recovery_dir(self.controller.settings)
        self.autosave_path = self.recovery_dir / f"{AUTOSAVE_PREFIX}{os.getpid()}-{int(time.time())}"
        self.last_autosave: float | None = None  # time of the last finished autosave
        self.recovered: Path | None = None
        self._changed = False
        self._thread: threading.Thread | None = None
        self._thread_error = ""
        self._pending: Session | None = None  # restored once its model is loaded
        self._pending_view: dict | None = None
        self._watched = None

        menu = window.file_menu
        self.save_action = QAction("Save &Session…", window)
        self.save_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.save_action.triggered.connect(lambda _c=False: self.save_dialog())
        self.open_action = QAction("Open Sess&ion…", window)
        self.open_action.triggered.connect(lambda _c=False: self.open_dialog())
        seps = [a for a in menu.actions() if a.isSeparator()]
        before = seps[0] if seps else None
        for act in (self.open_action, self.save_action):
            if before is not None:
                menu.insertAction(before, act)
            else:
                menu.addAction(act)

        self.timer = QTimer(self)
        self.timer.setInterval(int(self.AUTOSAVE_SECONDS * 1000))
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.state.image_changed.connect(self._watch_masks)
        self.state.model_changed.connect(self._model_changed)
        self.controller.worker.job_finished.connect(self._job_finished)
        self._watch_masks(self.state.image)
        QTimer.singleShot(0, self.check_recovery)

    # -- collecting the state -------------------------------------------------------------------

    def _mask_tool(self) -> Any:
        return getattr(self.window, "tools", {}).get("masks")

    def collect(self) -> Session:
        """The window's state now as a :class:`Session` (mask pixels copied)."""
        s = self.state
        session = Session(
            image=s.image.path if s.image is not None else None,
            model=self.controller.model_path,
            model_sha256=self.controller.model_sha256,
            custom_objects=list(getattr(self.controller, "_custom_files", [])),
            mappings={k: m.to_dict() for k, m in s.mappings.items()},
            labels=list(s.labels) if s.labels else None,
            view=self.view_settings(),
        )
        tool = self._mask_tool()
        for ms in getattr(tool, "sets", {}).values():
            if not ms.image_path:
                continue
            session.images.append(SessionImage(
                ms.image_path, ms.height, ms.width,
                [SessionMask(m.name, m.data.copy(), tuple(m.color), m.visible) for m in ms.masks],
                ms.active.name if ms.active is not None else None,
            ))
        return session

    def view_settings(self) -> dict:
        """The tools' settings worth restoring (layer, method, colours, masks, patches, threshold)."""
        tools = getattr(self.window, "tools", {})
        view: dict[str, Any] = {}
        layers = tools.get("layers")
        if layers is not None:
            p = layers.panel
            view["layers"] = {
                "layer": p.current_path(), "method": p.current_method(), "k": p.k.value(),
                "channel": p.channel.value(), "colormap": p.colormap.currentData(),
                "normalisation": p.normalisation.currentData(), "opacity": p.opacity.value(),
                "class_index": p.class_index.value(), "output": p.output.currentData(),
            }
        masks = tools.get("masks")
        if masks is not None:
            view["masks"] = {"opacity": masks.opacity, "outline": masks.outline, "tool": masks.tool}
        patches = tools.get("patches")
        if patches is not None:
            sp = patches.spec
            view["patches"] = {"size": list(sp.size), "stride": list(sp.stride), "rate": list(sp.rate),
                               "padding": sp.padding}
        binarise = tools.get("binarise")
        if binarise is not None:
            view["binarise"] = {"threshold": float(binarise.threshold), "source": binarise.current}
        return view

    # -- restoring ------------------------------------------------------------------------------

    def open_session(self, path: str | Path) -> bool:
        """Put the window back as the session at ``path`` describes; errors are shown."""
        try:
            session = load_session(path)
        except SessionError as exc:
            self.window.show_error("Cannot open session", str(exc))
            return False
        self.apply(session)
        self.window.statusBar().showMessage(f"Session {Path(path).name} opened.", 8000)
        return True

    def apply(self, session: Session) -> None:
        """Restore images, masks, model, mappings and view settings."""
        problems = []
        if session.image:
            if not Path(session.image).exists():
                problems.append(f"the image {session.image} is missing")
            elif not self.controller.open_image(session.image):
                problems.append(f"the image {session.image} could not be opened")
        self._restore_masks(session)
        self._pending_view = session.view
        if session.labels:
            self.state.set_labels(list(session.labels))
        if session.model:
            if not Path(session.model).exists():
                problems.append(f"the model {session.model} is missing")
            elif self.controller.model_path == str(Path(session.model)) and self.state.model_info is not None:
                self._apply_model_state(session)
            else:
                self._pending = session
                self.controller.open_model(session.model, session.custom_objects or None)
        else:
            self._apply_view()
        if problems:
            self.window.show_error("Session partly restored", "; ".join(problems).capitalize() + ".")

    def _restore_masks(self, session: Session) -> None:
        tool = self._mask_tool()
        if tool is None:
            return
        from maskviewer.core.masks import MaskSet

        current = self.state.image
        for im in session.images:
            if not im.masks:
                continue
            if current is not None and current.path == im.path and (current.height, current.width) == (im.height, im.width):
                ms = tool.maskset
            else:
                key = f"{im.path}:{im.height}x{im.width}"
                ms = tool.sets.get(key) or MaskSet(im.height, im.width, image_path=im.path)
                tool.sets[key] = ms
            if ms is None:
                continue
            for name in list(ms.names):
                ms.remove(name)
            for m in im.masks:
                mask = ms.add(m.name, m.data, m.color)
                mask.visible = m.visible
                mask.dirty = True  # not in any mask file yet: closing still asks
            if im.active and ms.get(im.active) is not None:
                ms.set_active(im.active)
        self._changed = True

    def _model_changed(self, info) -> None:
        s = self._pending
        if info is None or s is None or s.model is None:
            return
        if Path(info.path).resolve() != Path(s.model).resolve():
            return
        self._pending = None
        self._apply_model_state(s)

    def _apply_model_state(self, session: Session) -> None:
        info = self.state.model_info
        names = {t.name for t in info.inputs} if info is not None else set()
        for name, d in session.mappings.items():
            if name in names:
                self.controller.set_mapping(name, InputMapping.from_dict(d))
        self._apply_view()

    def _apply_view(self) -> None:
        view = self._pending_view or {}
        tools = getattr(self.window, "tools", {})
        masks = tools.get("masks")
        mv = view.get("masks") or {}
        with contextlib.suppress(Exception):  # settings are a courtesy: a bad one is skipped
            if masks is not None and "opacity" in mv:
                masks.panel.opacity.setValue(int(round(float(mv["opacity"]) * 100)))
                masks.panel.outline.setChecked(bool(mv.get("outline", False)))
        lv = view.get("layers") or {}
        layers = tools.get("layers")
        if layers is not None and lv:
            p = layers.panel
            with contextlib.suppress(Exception):
                for combo, key in ((p.colormap, "colormap"), (p.normalisation, "normalisation")):
                    i = combo.findData(lv.get(key))
                    if i >= 0:
                        combo.setCurrentIndex(i)
                p.opacity.setValue(int(lv.get("opacity", p.opacity.value())))
                p.k.setValue(int(lv.get("k", p.k.value())))
        patches = tools.get("patches")
        pv = view.get("patches")
        if patches is not None and pv:
            from maskviewer.core.patches import PatchSpec

            with contextlib.suppress(Exception):
                patches.set_spec(PatchSpec(tuple(pv["size"]), tuple(pv["stride"]), tuple(pv["rate"]), pv["padding"]))
        bv = view.get("binarise")
        binarise = tools.get("binarise")
        if binarise is not None and bv and bv.get("threshold") is not None:
            with contextlib.suppress(Exception):
                binarise.set_threshold(float(bv["threshold"]))
        if not lv:
            self._pending_view = None

    def _job_finished(self, kind: str, generation: int, _result: Any) -> None:
        # the layer list arrives after the model: then the saved layer and method can be chosen
        lv = (self._pending_view or {}).get("layers")
        layers = getattr(self.window, "tools", {}).get("layers")
        if kind != "layers_info" or not lv or layers is None or not self.controller.is_latest(kind, generation):
            return
        self._pending_view = None
        with contextlib.suppress(Exception):
            if lv.get("layer") in layers.entries:
                layers.select_layer(lv["layer"])
            p = layers.panel
            p.channel.setValue(int(lv.get("channel", 0)))
            if lv.get("method"):
                p.set_method(lv["method"])
            layers.request()

    # -- saving ---------------------------------------------------------------------------------

    def save_to(self, path: str | Path) -> Path | None:
        """Save the session at ``path`` (``.mvsession``: one file; otherwise a folder)."""
        session = self.collect()
        try:
            out = save_session(path, session)
        except SessionError as exc:
            self.window.show_error("Cannot save session", str(exc))
            return None
        tool = self._mask_tool()
        for ms in getattr(tool, "sets", {}).values():
            ms.mark_saved()
        if tool is not None:
            tool._refresh_list_flags()
        self.window.statusBar().showMessage(f"Session saved to {out}", 8000)
        return out

    def save_dialog(self) -> Path | None:
        path = self.pick_save_path()
        if not path:
            return None
        if not path.endswith(SESSION_SUFFIX) and not Path(path).is_dir():
            path += SESSION_SUFFIX
        return self.save_to(path)

    def open_dialog(self) -> bool:
        path = self.pick_open_path()
        return self.open_session(path) if path else False

    def _pick_save_dialog(self) -> str:
        start = str(Path(self.controller.last_dir()) / f"session{SESSION_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save session", start, SESSION_FILTER)
        return path

    def _pick_open_dialog(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open session", self.controller.last_dir(), SESSION_FILTER)
        return path

    # -- autosave -------------------------------------------------------------------------------

    def _watch_masks(self, _image) -> None:
        """Follow the current image's masks: any edit marks the session changed."""
        tool = self._mask_tool()
        ms = getattr(tool, "maskset", None)
        if self._watched is not None and self._watched is not ms:
            self._watched.changed.disconnect(self._mask_edited)
            self._watched.masks_changed.disconnect(self._masks_edited)
        if ms is not None and ms is not self._watched:
            ms.changed.connect(self._mask_edited)
            ms.masks_changed.connect(self._masks_edited)
        self._watched = ms

    def _mask_edited(self, _mask, _box) -> None:
        self._changed = True

    def _masks_edited(self) -> None:
        self._changed = True

    def _has_masks(self, session: Session) -> bool:
        return any(np.any(m.data) for im in session.images for m in im.masks)

    def _tick(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
            if self._thread_error:
                self.window.statusBar().showMessage(f"Autosave failed: {self._thread_error}", 8000)
        if self._changed and self._thread is None:
            self.autosave_now()

    def autosave_now(self, clean: bool = False, wait: bool = False) -> None:
        """Write the recovery copy (pixels copied here, written on a helper thread)."""
        session = self.collect()
        if not self._has_masks(session) and not self.autosave_path.exists():
            self._changed = False  # nothing painted: nothing worth recovering
            return
        session.autosave = {"pid": os.getpid(), "clean": bool(clean), "time": time.time()}
        self._changed = False
        path = self.autosave_path

        def write() -> None:
            try:
                self.recovery_dir.mkdir(parents=True, exist_ok=True)
                save_session(path, session, durable=True)
                self.last_autosave = time.time()
                self._thread_error = ""
            except (SessionError, OSError) as exc:
                self._thread_error = str(exc)
                self._changed = True  # try again at the next tick

        if self._thread is not None:
            self._thread.join()
        if wait:
            write()
            return
        self._thread = threading.Thread(target=write, name="maskviewer-autosave", daemon=True)
        self._thread.start()

    def can_close(self) -> bool:
        """Closing: write the last autosave, marked clean (the next start does not offer it)."""
        self.timer.stop()
        if self._changed or self.autosave_path.exists():
            self.autosave_now(clean=True, wait=True)
        return True

    # -- recovery -------------------------------------------------------------------------------

    def recoverable(self) -> list[tuple[Path, Session]]:
        """Autosaves of processes that died without closing the window, newest first."""
        found = []
        if not self.recovery_dir.is_dir():
            return found
        for folder in self.recovery_dir.glob(f"{AUTOSAVE_PREFIX}*"):
            if folder == self.autosave_path or not (folder / SESSION_JSON).exists():
                continue
            try:
                session = load_session(folder)
            except SessionError:
                continue
            info = session.autosave or {}
            pid = int(info.get("pid", 0) or 0)
            if info.get("clean"):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue  # another window still running: its autosave is not ours to take
            found.append((folder, session))
        found.sort(key=lambda fs: (fs[1].autosave or {}).get("time", 0), reverse=True)
        return found

    def check_recovery(self) -> bool:
        """Offer to recover the newest autosave of a crashed session; True if recovered."""
        candidates = self.recoverable()
        if not candidates:
            return False
        folder, session = candidates[0]
        n_masks = sum(len(im.masks) for im in session.images)
        what = Path(session.image).name if session.image else "no image"
        text = (
            f"maskviewer did not close properly last time. An autosave from {session.saved or 'then'} "
            f"holds {n_masks} mask(s) for {what}. Recover it?"
        )
        if self.ask_recover(text):
            self.apply(session)
            self.recovered = folder
            self.window.statusBar().showMessage("Recovered the autosaved masks.", 10000)
        for old, _s in candidates:  # recovered or declined: offered once
            shutil.rmtree(old, ignore_errors=True)
        return self.recovered is not None

    def _ask_recover_dialog(self, text: str) -> bool:
        answer = QMessageBox.question(
            self.window, "Recover autosaved masks?", text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes


def install(window) -> SessionTool:
    """Add File → Open/Save Session, the autosave timer and the recovery offer."""
    return SessionTool(window)


__all__ = ["SessionTool", "install", "recovery_dir", "MaskviewerError"]
