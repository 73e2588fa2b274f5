"""The inference thread: newest request wins, cancellation, progress, errors don't kill it."""

from __future__ import annotations

import threading
import time

import pytest

from maskviewer.core.errors import InferenceError
from maskviewer.gui.worker import InferenceWorker


@pytest.fixture
def worker(qtbot):
    w = InferenceWorker(init_backend=False)
    w.start()
    yield w
    assert w.stop(5.0)


def _collect(worker):
    events = []
    worker.job_finished.connect(lambda k, g, r: events.append(("done", k, g, r)))
    worker.job_failed.connect(lambda k, g, m, e: events.append(("failed", k, g, m)))
    worker.job_cancelled.connect(lambda k, g: events.append(("cancelled", k, g)))
    worker.job_progress.connect(lambda k, g, d, t: events.append(("progress", k, g, d, t)))
    return events


def test_jobs_run_on_one_thread_that_is_not_the_gui_thread(qtbot, worker):
    events = _collect(worker)
    names = []
    for i in range(3):
        worker.submit(f"k{i}", lambda ctx, i=i: names.append(threading.current_thread().name) or i)
    qtbot.waitUntil(lambda: len([e for e in events if e[0] == "done"]) == 3)
    assert set(names) == {"maskviewer-inference"}
    assert [e[3] for e in events if e[0] == "done"] == [0, 1, 2]


def test_newest_request_of_a_kind_wins(qtbot, worker):
    events = _collect(worker)
    gate = threading.Event()
    started = threading.Event()

    def blocker(ctx):
        started.set()
        gate.wait(5)
        return "blocker"

    worker.submit("other", blocker)
    started.wait(5)
    gens = [worker.submit("predict", lambda ctx, i=i: i) for i in range(5)]
    gate.set()
    qtbot.waitUntil(lambda: any(e[0] == "done" and e[1] == "predict" for e in events))
    qtbot.wait(50)
    done = [e for e in events if e[0] == "done" and e[1] == "predict"]
    assert [(e[2], e[3]) for e in done] == [(gens[-1], 4)]  # the four older ones never ran


def test_running_job_is_cancelled_by_a_newer_one_and_reports_progress(qtbot, worker):
    events = _collect(worker)
    started = threading.Event()

    def long_job(ctx):
        started.set()
        for i in range(1000):
            ctx.progress(i, 1000)
            threading.Event().wait(0.005)
        return "finished"

    first = worker.submit("patches", long_job)
    started.wait(5)
    qtbot.waitUntil(lambda: any(e[0] == "progress" for e in events))
    second = worker.submit("patches", lambda ctx: "second")
    qtbot.waitUntil(lambda: any(e[0] == "done" for e in events))
    assert ("cancelled", "patches", first) in events
    assert ("done", "patches", second, "second") in events
    assert not any(e[0] == "done" and e[2] == first for e in events)


def test_cancel_and_errors_keep_the_thread_alive(qtbot, worker):
    events = _collect(worker)

    def fails(ctx):
        raise InferenceError("the model exploded")

    def crashes(ctx):
        raise ZeroDivisionError("oops")

    worker.submit("a", fails)
    worker.submit("b", crashes)
    worker.submit("c", lambda ctx: "still alive")
    qtbot.waitUntil(lambda: any(e[0] == "done" for e in events))
    failed = {e[1]: e[3] for e in events if e[0] == "failed"}
    assert failed["a"] == "the model exploded"
    assert "ZeroDivisionError" in failed["b"] and "oops" in failed["b"]
    assert worker.running


def test_exclusive_job_drops_everything_pending(qtbot, worker):
    events = _collect(worker)
    gate = threading.Event()
    worker.submit("block", lambda ctx: gate.wait(5))
    worker.submit("predict", lambda ctx: "stale")
    worker.submit("probe", lambda ctx: "stale")
    load = worker.submit("load", lambda ctx: "loaded", exclusive=True)
    gate.set()
    qtbot.waitUntil(lambda: any(e[0] == "done" and e[1] == "load" for e in events))
    assert [e for e in events if e[0] == "done" and e[3] == "stale"] == []
    assert ("done", "load", load, "loaded") in events


def test_busy_until_the_results_are_delivered_then_idle(qtbot, worker):
    """busy() holds while a result waits to be delivered to the GUI; idle comes after the last."""
    events = _collect(worker)
    idles = []
    worker.idle.connect(lambda: idles.append(worker.busy()))
    done = threading.Event()
    worker.submit("a", lambda ctx: done.set() or "a")
    assert done.wait(5)
    # the job has run on its thread, but until the GUI thread delivers its result it is busy
    deadline = time.monotonic() + 5  # wait without running the GUI event loop
    while worker._current is not None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert worker._current is None and worker.busy() and not events
    qtbot.waitUntil(lambda: bool(idles))
    assert events == [("done", "a", 1, "a")] and idles == [False] and not worker.busy()
