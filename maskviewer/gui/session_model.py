"""Sessions without Qt: what is saved and restored, the autosave bookkeeping, crash recovery.

:class:`SessionModel` keeps the per-window session state (the autosave folder, whether the
masks changed since the last autosave, a session waiting for its model) and decides which
autosaves are recoverable. The window's glue (:mod:`maskviewer.gui.session_tool`) gathers the
state from the controller and the tools, runs the timer and asks the user.

An autosave belongs to a process: it is recoverable only when that process is gone and did
not close its window (a clean close marks it ``clean``, and clean ones are deleted unseen).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.masks import MaskSet
from maskviewer.io.session import (
    SESSION_JSON,
    Session,
    SessionError,
    SessionImage,
    SessionMask,
    load_session,
    save_session,
)

AUTOSAVE_PREFIX = "autosave-"
#: a damaged autosave is renamed with this prefix: kept, reported once, never offered
DAMAGED_PREFIX = "damaged-"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except (OSError, OverflowError):  # OverflowError: beyond pid_t
        return False
    return True


def folder_pid(folder: Path) -> int | None:
    """The process id in an autosave folder's name (``autosave-PID-TIME``), if it has one."""
    pid, _, _rest = folder.name.removeprefix(AUTOSAVE_PREFIX).partition("-")
    return int(pid) if pid.isdigit() and len(pid) < 11 else None


# -- what a session holds ---------------------------------------------------------------------


def session_images(mask_sets: Iterable[MaskSet]) -> list[SessionImage]:
    """The mask sets that belong to an image file, as session images (pixels copied)."""
    images = []
    for ms in mask_sets:
        if not ms.image_path:
            continue
        masks = [SessionMask(m.name, m.data.copy(), tuple(m.color), m.visible) for m in ms.masks]
        active = ms.active.name if ms.active is not None else None
        images.append(SessionImage(ms.image_path, ms.height, ms.width, masks, active))
    return images


def has_masks(session: Session) -> bool:
    """Whether any mask of ``session`` has a painted pixel (else there is nothing to recover)."""
    return any(np.any(m.data) for im in session.images for m in im.masks)


def restore_masks(
    session: Session, sets: dict[str, MaskSet], current: MaskSet | None, current_key: str | None
) -> None:
    """Put the session's masks into the mask sets, replacing the masks there.

    Parameters
    ----------
    sets
        The masks tool's sets by ``"path:HxW"`` key; a set is added for an image not there.
    current, current_key
        The set of the image shown and its key: the session's masks of that image go there.
    """
    for im in session.images:
        if not im.masks:
            continue
        key = f"{im.path}:{im.height}x{im.width}"
        if current_key is not None and key == current_key:
            ms = current
        else:
            ms = sets.get(key) or MaskSet(im.height, im.width, image_path=im.path)
            sets[key] = ms
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


def model_plan(session: Session, loaded_path: str | None, loaded: bool) -> str:
    """What restoring ``session`` does about its model.

    Returns
    -------
    str
        ``"none"`` (no model in it), ``"missing"`` (its file is gone), ``"ready"`` (it is the
        model loaded now) or ``"load"`` (load it, then restore what depends on it).
    """
    if not session.model:
        return "none"
    if not Path(session.model).exists():
        return "missing"
    if loaded and loaded_path == str(Path(session.model)):
        return "ready"
    return "load"


def recovery_text(session: Session) -> str:
    """The question offering to recover ``session`` (an autosave)."""
    n_masks = sum(len(im.masks) for im in session.images)
    what = Path(session.image).name if session.image else "no image"
    return (
        f"maskviewer did not close properly last time. An autosave from {session.saved or 'then'} "
        f"holds {n_masks} mask(s) for {what}. Recover it?"
    )


# -- the window's session state -----------------------------------------------------------------


class SessionModel:
    """Autosave bookkeeping and the recovery decision for one window.

    Parameters
    ----------
    recovery_dir
        Where autosaves go (one folder per process: :attr:`autosave_path`).
    pid
        This process (autosaves of live processes are never offered).

    Events
    ------
    recovered(folder)
        An autosave was restored.
    """

    def __init__(self, recovery_dir: Path, pid: int | None = None) -> None:
        self.recovery_dir = Path(recovery_dir)
        self.pid = os.getpid() if pid is None else pid
        self.autosave_path = self.recovery_dir / f"{AUTOSAVE_PREFIX}{self.pid}-{int(time.time())}"
        self.last_autosave: float | None = None  # time of the last finished autosave
        self.recovered: Path | None = None
        self.changed = False  # masks edited since the last autosave
        self.pending: Session | None = None  # restored once its model is loaded
        self.pending_view: dict | None = None  # tool settings still to apply
        self.recovered_event = Event()
        self._thread: threading.Thread | None = None
        self._thread_error = ""
        self.skipped: list[str] = []  # damaged autosaves put aside by the last recoverable()

    # -- autosave --------------------------------------------------------------------------

    def mark_changed(self, *_args: Any) -> None:
        self.changed = True

    def poll(self) -> str:
        """Reap a finished autosave thread; returns its error ("" when none or still running)."""
        if self._thread is None or self._thread.is_alive():
            return ""
        self._thread = None
        return self._thread_error

    def autosave_due(self) -> bool:
        """Masks changed and no autosave is being written."""
        return self.changed and self._thread is None

    def wants_autosave(self, session: Session) -> bool:
        """Whether ``session`` is worth writing: painted masks, or an older autosave to update."""
        return has_masks(session) or self.autosave_path.exists()

    def autosave(self, session: Session, clean: bool = False, wait: bool = False) -> None:
        """Write ``session`` as this window's recovery copy, on a helper thread unless ``wait``.

        Nothing is written (and the change is forgotten) when :meth:`wants_autosave` says no.
        A failed write leaves :attr:`changed` set, so the next tick tries again.
        """
        if not self.wants_autosave(session):
            self.changed = False  # nothing painted: nothing worth recovering
            return
        session.autosave = {"pid": self.pid, "clean": bool(clean), "time": time.time()}
        self.changed = False
        if self._thread is not None:
            self._thread.join()
        if wait:
            self._write(session)
            return
        self._thread = threading.Thread(
            target=self._write, args=(session,), name="maskviewer-autosave", daemon=True
        )
        self._thread.start()

    def _write(self, session: Session) -> None:
        try:
            self.recovery_dir.mkdir(parents=True, exist_ok=True)
            save_session(self.autosave_path, session, durable=True)
            self.last_autosave = time.time()
            self._thread_error = ""
        except (SessionError, OSError) as exc:
            self._thread_error = str(exc)
            self.changed = True  # try again at the next tick

    # -- recovery --------------------------------------------------------------------------

    def recoverable(self) -> list[tuple[Path, Session]]:
        """Autosaves of processes that died without closing the window, newest first.

        Clean autosaves found on the way are deleted. A damaged one (it fails the session
        schema) is put aside as ``damaged-…`` and its message added to :attr:`skipped`, so it
        is reported once and never stops a good autosave from being offered.
        """
        found: list[tuple[Path, Session]] = []
        self.skipped = []
        if not self.recovery_dir.is_dir():
            return found
        for folder in self.recovery_dir.glob(f"{AUTOSAVE_PREFIX}*"):
            if folder == self.autosave_path or not (folder / SESSION_JSON).exists():
                continue
            try:
                session = load_session(folder)
            except SessionError as exc:
                self._put_aside(folder, str(exc))
                continue
            info = session.autosave or {}
            pid = int(info.get("pid", 0) or 0)
            if info.get("clean"):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if pid == self.pid or pid_alive(pid):
                continue  # another window still running: its autosave is not ours to take
            found.append((folder, session))
        found.sort(key=lambda fs: (fs[1].autosave or {}).get("time", 0), reverse=True)
        return found

    def _put_aside(self, folder: Path, message: str) -> None:
        """Rename a damaged autosave out of the way (kept for the user), unless a live window owns it."""
        owner = folder_pid(folder)
        if owner is not None and owner != self.pid and pid_alive(owner):
            return  # being written by a running window: not ours to judge
        target = folder.with_name(f"{DAMAGED_PREFIX}{folder.name}")
        try:
            folder.rename(target)
        except OSError:
            return  # cannot move it: skipped silently this time, tried again next start
        self.skipped.append(f"{message} It was moved to {target}.")

    def finish_recovery(self, candidates: list[tuple[Path, Session]], recovered: Path | None) -> None:
        """Forget the offered autosaves (recovered or declined, each is offered once)."""
        if recovered is not None:
            self.recovered = recovered
            self.recovered_event.emit(recovered)
        for old, _s in candidates:
            shutil.rmtree(old, ignore_errors=True)

    # -- restoring -------------------------------------------------------------------------

    def take_pending(self, model_path: str | None) -> Session | None:
        """The session waiting for the model at ``model_path``, if any (then no longer waiting)."""
        s = self.pending
        if model_path is None or s is None or s.model is None:
            return None
        if Path(model_path).resolve() != Path(s.model).resolve():
            return None
        self.pending = None
        return s
