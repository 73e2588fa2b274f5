"""Sessions in the window: File → Save Session / Open Session, autosave and crash recovery.

A session (see :mod:`maskviewer.io.session`) records the image, the model, the masks of every
image, the input mappings and the tools' view settings. Painted masks are autosaved every few
seconds (only after a change) and on close into a per-user recovery folder; an autosave whose
process died without closing the window is offered for recovery on the next start.

This module is the Qt glue: menu actions, the autosave timer, the pickers and the recovery
question. What is saved and restored and the autosave bookkeeping are in
:mod:`maskviewer.gui.session_model` (no Qt), the tools' view settings in
:mod:`maskviewer.gui.session_view`.

The recovery folder is ``MASKVIEWER_RECOVERY_DIR`` when set; with settings kept in an INI file
(tests, ``MASKVIEWER_SETTINGS``) a folder beside that file, so separate settings never share
recoveries; otherwise ``recovery`` in the user's application data folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer
from PySide6.QtGui import QAction, QKeySequence

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import InputMapping
from maskviewer.gui.session_model import (
    AUTOSAVE_PREFIX,
    SessionModel,
    model_plan,
    recovery_text,
    restore_masks,
    session_images,
)
from maskviewer.gui.session_view import apply_layer_choice, apply_view, view_settings
from maskviewer.io.session import (
    SESSION_JSON,
    SESSION_SUFFIX,
    Session,
    SessionError,
    load_session,
    save_session,
)

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


class SessionTool(QObject):
    """Save/open sessions, autosave painted masks, offer recovery after a crash.

    Hooks a test may replace: :attr:`ask_recover` (``ask_recover(text) -> bool``),
    :attr:`pick_save_path` and :attr:`pick_open_path` (return a path or ``""``); by default
    they ask through ``window.dialogs``.
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
        self.model = SessionModel(recovery_dir(self.controller.settings))
        self._watched = None
        self._add_actions(window.file_menu)
        self.timer = QTimer(self)
        self.timer.setInterval(int(self.AUTOSAVE_SECONDS * 1000))
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.state.image_changed.connect(self._watch_masks)
        self.state.model_changed.connect(self._model_changed)
        self.controller.worker.job_finished.connect(self._job_finished)
        self._watch_masks(self.state.image)
        QTimer.singleShot(0, self.check_recovery)

    def _add_actions(self, menu) -> None:
        """File → Open Session… and Save Session…, above the menu's first separator."""
        self.save_action = QAction("Save &Session…", self.window)
        self.save_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.save_action.triggered.connect(lambda _c=False: self.save_dialog())
        self.open_action = QAction("Open Sess&ion…", self.window)
        self.open_action.triggered.connect(lambda _c=False: self.open_dialog())
        seps = [a for a in menu.actions() if a.isSeparator()]
        before = seps[0] if seps else None
        for act in (self.open_action, self.save_action):
            if before is not None:
                menu.insertAction(before, act)
            else:
                menu.addAction(act)

    # -- the model's state, as before ------------------------------------------------------------

    @property
    def recovery_dir(self) -> Path:
        return self.model.recovery_dir

    @property
    def autosave_path(self) -> Path:
        return self.model.autosave_path

    @property
    def last_autosave(self) -> float | None:
        """When the last autosave finished (None before the first)."""
        return self.model.last_autosave

    @property
    def recovered(self) -> Path | None:
        """The autosave folder recovered at start, if any."""
        return self.model.recovered

    # -- collecting the state -------------------------------------------------------------------

    def _tools(self) -> dict:
        return getattr(self.window, "tools", {})

    def _mask_tool(self) -> Any:
        return self._tools().get("masks")

    def collect(self) -> Session:
        """The window's state now as a :class:`Session` (mask pixels copied)."""
        s, c = self.state, self.controller
        return Session(
            image=s.image.path if s.image is not None else None,
            model=c.model_path,
            model_sha256=c.model_sha256,
            custom_objects=list(c.custom_files),
            mappings={k: m.to_dict() for k, m in s.mappings.items()},
            labels=list(s.labels) if s.labels else None,
            view=self.view_settings(),
            images=session_images(getattr(self._mask_tool(), "sets", {}).values()),
        )

    def view_settings(self) -> dict:
        """The tools' settings worth restoring (layer, method, colours, masks, patches, threshold)."""
        return view_settings(self._tools())

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
        self.model.pending_view = session.view
        if session.labels:
            self.state.set_labels(list(session.labels))
        plan = model_plan(session, self.controller.model_path, self.state.model_info is not None)
        if plan == "missing":
            problems.append(f"the model {session.model} is missing")
        elif plan == "ready":
            self._apply_model_state(session)
        elif plan == "load":
            self.model.pending = session
            self.controller.open_model(session.model, session.custom_objects or None)
        else:
            self._apply_view()
        if problems:
            self.window.show_error("Session partly restored", "; ".join(problems).capitalize() + ".")

    def _restore_masks(self, session: Session) -> None:
        tool = self._mask_tool()
        if tool is None:
            return
        image = self.state.image
        key = f"{image.path}:{image.height}x{image.width}" if image is not None else None
        restore_masks(session, tool.sets, tool.maskset, key)
        self.model.mark_changed()

    def _model_changed(self, info) -> None:
        session = self.model.take_pending(info.path if info is not None else None)
        if session is not None:
            self._apply_model_state(session)

    def _apply_model_state(self, session: Session) -> None:
        info = self.state.model_info
        names = {t.name for t in info.inputs} if info is not None else set()
        for name, d in session.mappings.items():
            if name in names:
                self.controller.set_mapping(name, InputMapping.from_dict(d))
        self._apply_view()

    def _apply_view(self) -> None:
        if not apply_view(self._tools(), self.model.pending_view or {}):
            self.model.pending_view = None

    def _job_finished(self, kind: str, generation: int, _result: Any) -> None:
        # the layer list arrives after the model: then the saved layer and method can be chosen
        lv = (self.model.pending_view or {}).get("layers")
        layers = self._tools().get("layers")
        if kind != "layers_info" or not lv or layers is None or not self.controller.is_latest(kind, generation):
            return
        self.model.pending_view = None
        apply_layer_choice(layers, lv)

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
        return self.window.dialogs.save_file("Save session", start, SESSION_FILTER) or ""

    def _pick_open_dialog(self) -> str:
        return self.window.dialogs.open_file("Open session", self.controller.last_dir(), SESSION_FILTER) or ""

    # -- autosave -------------------------------------------------------------------------------

    def _watch_masks(self, _image) -> None:
        """Follow the current image's masks: any edit marks the session changed."""
        ms = getattr(self._mask_tool(), "maskset", None)
        mark = self.model.mark_changed
        if self._watched is not None and self._watched is not ms:
            self._watched.changed.disconnect(mark)
            self._watched.masks_changed.disconnect(mark)
        if ms is not None and ms is not self._watched:
            ms.changed.connect(mark)
            ms.masks_changed.connect(mark)
        self._watched = ms

    def _tick(self) -> None:
        error = self.model.poll()
        if error:
            self.window.statusBar().showMessage(f"Autosave failed: {error}", 8000)
        if self.model.autosave_due():
            self.autosave_now()

    def autosave_now(self, clean: bool = False, wait: bool = False) -> None:
        """Write the recovery copy (pixels copied here, written on a helper thread)."""
        self.model.autosave(self.collect(), clean=clean, wait=wait)

    def can_close(self) -> bool:
        """Closing: write the last autosave, marked clean (the next start does not offer it)."""
        self.timer.stop()
        if self.model.changed or self.autosave_path.exists():
            self.autosave_now(clean=True, wait=True)
        return True

    # -- recovery -------------------------------------------------------------------------------

    def recoverable(self) -> list[tuple[Path, Session]]:
        """Autosaves of processes that died without closing the window, newest first."""
        return self.model.recoverable()

    def check_recovery(self) -> bool:
        """Offer to recover the newest autosave of a crashed session; True if recovered."""
        candidates = self.recoverable()
        if self.model.skipped:  # put aside, so this is said once
            self.window.show_error("Damaged autosave skipped", "\n".join(self.model.skipped))
        if not candidates:
            return False
        folder, session = candidates[0]
        recovered = None
        if self.ask_recover(recovery_text(session)):
            self.apply(session)
            recovered = folder
            self.window.statusBar().showMessage("Recovered the autosaved masks.", 10000)
        self.model.finish_recovery(candidates, recovered)
        return self.recovered is not None

    def _ask_recover_dialog(self, text: str) -> bool:
        return self.window.dialogs.question("Recover autosaved masks?", text, default_yes=True)


def install(window) -> SessionTool:
    """Add File → Open/Save Session, the autosave timer and the recovery offer."""
    return SessionTool(window)


__all__ = ["AUTOSAVE_PREFIX", "SessionTool", "install", "recovery_dir", "MaskviewerError"]
