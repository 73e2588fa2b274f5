"""Job bookkeeping written once: a tool's channel to the inference worker.

A tool makes one :class:`JobClient`, submits its work through it and gets back the results,
progress, errors and cancellations of *its latest request of each kind* only: a superseded
job's result, another tool's job and a job of the same kind submitted by someone else are
filtered out here, so no tool repeats the ``kind in (...) and is_latest(...)`` test.

The client also keeps the set of kinds it has running, for a tool's progress bar and Cancel
button (:attr:`running`, :attr:`running_changed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Signal

from maskviewer.gui.worker import JobContext


class JobClient(QObject):
    """Submit jobs of some kinds and hear about the latest one of each kind only.

    Parameters
    ----------
    controller
        The window's :class:`~maskviewer.gui.controller.Controller` (it numbers the jobs).
    kinds
        The job kinds this client owns. A finished job of one of these kinds is delivered only
        when it is the newest submitted of its kind (by anyone), which is what "latest wins" means.
    """

    finished = Signal(str, object)  # kind, result
    failed = Signal(str, str, object)  # kind, message, exception
    cancelled = Signal(str)  # kind
    progress = Signal(str, int, int)  # kind, done, total
    running_changed = Signal(bool)  # any job of ours waiting or running

    def __init__(self, controller: Any, kinds: Iterable[str], parent: QObject | None = None) -> None:
        if parent is None and isinstance(controller, QObject):
            parent = controller
        super().__init__(parent)
        self.controller = controller
        self.kinds = frozenset(kinds)
        self.running: set[str] = set()
        w = controller.worker
        w.job_finished.connect(self._on_finished)
        w.job_failed.connect(self._on_failed)
        w.job_cancelled.connect(self._on_cancelled)
        w.job_progress.connect(self._on_progress)

    # -- requests ----------------------------------------------------------------------------

    def submit(self, kind: str, fn: Callable[[JobContext], Any]) -> int:
        """Queue ``fn`` as a job of ``kind`` (one of :attr:`kinds`); returns its generation."""
        if kind not in self.kinds:
            raise ValueError(f"job kind {kind!r} is not one of {sorted(self.kinds)}")
        generation = self.controller.submit(kind, fn)
        self._set_running(kind, True)
        return generation

    def cancel(self, kind: str | None = None) -> None:
        """Cancel the pending and running jobs of ``kind`` (every kind of ours when None).

        :attr:`cancelled` is emitted at once for each kind that was running; whatever the worker
        still reports for those jobs afterwards is dropped.
        """
        for k in sorted(self.kinds) if kind is None else (kind,):
            self.controller.worker.cancel(k)
            if k in self.running:
                self._set_running(k, False)
                self.cancelled.emit(k)

    def is_running(self, kind: str | None = None) -> bool:
        return bool(self.running) if kind is None else kind in self.running

    # -- delivery ----------------------------------------------------------------------------

    def _latest(self, kind: str, generation: int) -> bool:
        """The newest request of one of our kinds, still outstanding (not cancelled by us)."""
        return kind in self.running and self.controller.is_latest(kind, generation)

    def _set_running(self, kind: str, running: bool) -> None:
        before = bool(self.running)
        if running:
            self.running.add(kind)
        else:
            self.running.discard(kind)
        if bool(self.running) != before:
            self.running_changed.emit(bool(self.running))

    def _on_finished(self, kind: str, generation: int, result: Any) -> None:
        if self._latest(kind, generation):
            self._set_running(kind, False)
            self.finished.emit(kind, result)

    def _on_failed(self, kind: str, generation: int, message: str, exc: Any) -> None:
        if self._latest(kind, generation):
            self._set_running(kind, False)
            self.failed.emit(kind, message, exc)

    def _on_cancelled(self, kind: str, generation: int) -> None:
        if self._latest(kind, generation):
            self._set_running(kind, False)
            self.cancelled.emit(kind)

    def _on_progress(self, kind: str, generation: int, done: int, total: int) -> None:
        if self._latest(kind, generation):
            self.progress.emit(kind, done, total)
