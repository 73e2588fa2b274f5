"""The one inference thread: it imports the backend, owns the model and runs every job.

Jobs are plain callables ``fn(ctx)`` run on that thread with a :class:`JobContext` giving the
:class:`~maskviewer.inference.runner.ModelHost`, progress reporting and cancellation. Each job
has a *kind* ("load", "predict", "probe", ...): submitting a job drops any pending job of the
same kind and asks a running one to stop (newest request wins). Every job gets a generation
number; the controller ignores results older than the newest it asked for. Results come back
as Qt signals, emitted on the GUI thread.

The thread never emits a Qt signal itself: cross-thread emission from a Python thread has
crashed PySide6 (refcount errors in queued connections). It puts ``(signal, args)`` in an
outbox and posts a bare event to the worker object, which lives on the GUI thread and emits
from there.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Signal

from maskviewer.core.errors import Cancelled, MaskviewerError


class JobContext:
    """What a job sees: the model host, progress reporting and the cancel flag."""

    def __init__(self, worker: InferenceWorker, job: Job) -> None:
        self.host = worker.host
        self._worker = worker
        self._job = job

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set() or self._worker._stopping

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled or superseded."""
        if self.cancelled:
            raise Cancelled("cancelled")

    def require_model(self, info: Any) -> None:
        """Raise :class:`Cancelled` when the model loaded is no longer the one (``info``) the
        job was made for: a request made before another model was opened is dropped."""
        if self.host.info is not info:
            raise Cancelled("made for a model that is no longer loaded")

    def progress(self, done: int, total: int) -> None:
        """Report progress (and stop here if cancelled)."""
        self.check()
        self._worker._post(
            self._worker.job_progress, self._job.kind, self._job.generation, int(done), int(total)
        )


@dataclass
class Job:
    kind: str
    fn: Callable[[JobContext], Any]
    generation: int
    cancel_event: threading.Event = field(default_factory=threading.Event)


_DELIVER = QEvent.Type(QEvent.registerEventType())


class InferenceWorker(QObject):
    """Runs jobs on a dedicated thread; create and use it from the GUI thread."""

    backend_loading = Signal()
    backend_ready = Signal(object)  # DeviceInfo
    backend_failed = Signal(str)
    job_started = Signal(str, int)
    job_progress = Signal(str, int, int, int)  # kind, generation, done, total
    job_finished = Signal(str, int, object)  # kind, generation, result
    job_failed = Signal(str, int, str, object)  # kind, generation, message, exception
    job_cancelled = Signal(str, int)
    idle = Signal()  # the last job's results are out and nothing is waiting

    def __init__(self, parent: QObject | None = None, init_backend: bool = True) -> None:
        super().__init__(parent)
        from maskviewer.inference.runner import ModelHost  # no TensorFlow import here

        self.host = ModelHost()
        self.device = None
        self._init_backend = init_backend
        self._cond = threading.Condition()
        self._pending: OrderedDict[str, Job] = OrderedDict()
        self._current: Job | None = None
        self._generations = itertools.count(1)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()

    # -- delivery to the GUI thread ------------------------------------------------------------

    def _post(self, signal: Any, *args: Any) -> None:
        """Called on the worker thread: have ``signal.emit(*args)`` run on the GUI thread."""
        self._outbox.put((signal, args))
        if QCoreApplication.instance() is not None:
            QCoreApplication.postEvent(self, QEvent(_DELIVER))

    def event(self, e: QEvent) -> bool:  # noqa: D102 - Qt override
        if e.type() == _DELIVER:
            self.deliver()
            return True
        return super().event(e)

    def deliver(self) -> None:
        """Emit everything the worker thread has posted (GUI thread only)."""
        while True:
            try:
                signal, args = self._outbox.get_nowait()
            except queue.Empty:
                return
            signal.emit(*args)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="maskviewer-inference", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> bool:
        """Cancel everything and end the thread; True if it ended within ``timeout``."""
        with self._cond:
            self._stopping = True
            for job in self._pending.values():
                job.cancel_event.set()
            self._pending.clear()
            if self._current is not None:
                self._current.cancel_event.set()
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- requests ----------------------------------------------------------------------------

    def submit(self, kind: str, fn: Callable[[JobContext], Any], *, exclusive: bool = False) -> int:
        """Queue ``fn`` as a job of ``kind``; returns its generation number.

        A pending job of the same kind is dropped and a running one asked to stop. With
        ``exclusive`` (model loads) every pending job is dropped: they were made for the old model.
        """
        with self._cond:
            job = Job(kind, fn, next(self._generations))
            victims = list(self._pending.values()) if exclusive else [self._pending.get(kind)]
            for old in victims:
                if old is not None:
                    self._drop(old)
            if self._current is not None and (exclusive or self._current.kind == kind):
                self._current.cancel_event.set()
            self._pending[kind] = job
            self._cond.notify_all()
        return job.generation

    def cancel(self, kind: str | None = None) -> None:
        """Cancel the pending and running jobs of ``kind`` (all kinds when None)."""
        with self._cond:
            for k in list(self._pending):
                if kind is None or k == kind:
                    self._drop(self._pending[k])
            if self._current is not None and (kind is None or self._current.kind == kind):
                self._current.cancel_event.set()

    def _drop(self, job: Job) -> None:
        """Drop a pending job (lock held): it never runs, and its requester hears so."""
        job.cancel_event.set()
        self._pending.pop(job.kind, None)
        self._post(self.job_cancelled, job.kind, job.generation)

    def busy(self) -> bool:
        """A job is waiting or running, or its results are not yet delivered to the GUI."""
        with self._cond:
            return self._current is not None or bool(self._pending) or not self._outbox.empty()

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        if self._init_backend:
            self._post(self.backend_loading)
            try:
                from maskviewer.inference.backend import init_backend

                self.device = init_backend()
                self._post(self.backend_ready, self.device)
            except Exception as exc:  # no backend: report and keep serving (jobs will fail clearly)
                self._post(
                    self.backend_failed,
                    f"The model backend could not start: {type(exc).__name__}: {exc}",
                )
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                _, job = self._pending.popitem(last=False)
                self._current = job
            self._execute(job)
            with self._cond:
                self._current = None
                idle = not self._pending
            if idle:
                self._post(self.idle)

    def _execute(self, job: Job) -> None:
        ctx = JobContext(self, job)
        try:
            ctx.check()
            self._post(self.job_started, job.kind, job.generation)
            result = job.fn(ctx)
            ctx.check()
        except Cancelled:
            self._post(self.job_cancelled, job.kind, job.generation)
        except MaskviewerError as exc:
            self._post(self.job_failed, job.kind, job.generation, str(exc), exc)
        except BaseException as exc:  # the thread must survive any job, even sys.exit() in user code
            from maskviewer.inference.backend import is_out_of_memory

            if is_out_of_memory(exc):
                msg = (
                    "The device ran out of memory. Try a smaller image or batch, or close other "
                    "programs that use the GPU."
                )
            else:
                last = traceback.extract_tb(exc.__traceback__)[-1:] or []
                where = f" (in {last[0].name})" if last else ""
                msg = f"Unexpected error{where}: {type(exc).__name__}: {exc}"
            self._post(self.job_failed, job.kind, job.generation, msg, exc)
        else:
            self._post(self.job_finished, job.kind, job.generation, result)
