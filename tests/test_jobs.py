"""The shared job helper: a tool hears about its own latest request of each kind only."""

from __future__ import annotations

import threading

import pytest

from maskviewer.gui.jobs import JobClient
from maskviewer.gui.worker import InferenceWorker


class _Controller:
    """The two things a JobClient needs from the controller: numbering and the worker."""

    def __init__(self, worker):
        self.worker = worker
        self._latest = {}

    def submit(self, kind, fn):
        self._latest[kind] = gen = self.worker.submit(kind, fn)
        return gen

    def is_latest(self, kind, generation):
        return self._latest.get(kind) == generation


@pytest.fixture
def controller(qtbot):
    w = InferenceWorker(init_backend=False)
    w.start()
    yield _Controller(w)
    assert w.stop(5.0)


def _record(client):
    events = []
    client.finished.connect(lambda k, r: events.append(("done", k, r)))
    client.failed.connect(lambda k, m, e: events.append(("failed", k, m)))
    client.cancelled.connect(lambda k: events.append(("cancelled", k)))
    client.progress.connect(lambda k, d, t: events.append(("progress", k, d, t)))
    client.running_changed.connect(lambda r: events.append(("running", r)))
    return events


def test_only_the_latest_result_of_a_kind_arrives(qtbot, controller):
    client = JobClient(controller, ["a"])
    events = _record(client)
    gate, started = threading.Event(), threading.Event()

    def slow(ctx):
        started.set()
        gate.wait(5)
        return "old"

    client.submit("a", slow)
    started.wait(5)
    client.submit("a", lambda ctx: "new")
    gate.set()
    qtbot.waitUntil(lambda: ("done", "a", "new") in events)
    assert [e for e in events if e[0] == "done"] == [("done", "a", "new")]
    # the result comes after "not running", so a handler may submit the next job at once
    assert events[-2:] == [("running", False), ("done", "a", "new")] and events[0] == ("running", True)
    assert not client.is_running()


def test_other_kinds_and_other_clients_are_filtered_out(qtbot, controller):
    mine, theirs = JobClient(controller, ["a"]), JobClient(controller, ["b"])
    ev_mine, ev_theirs = _record(mine), _record(theirs)
    theirs.submit("b", lambda ctx: 2)
    mine.submit("a", lambda ctx: 1)
    qtbot.waitUntil(lambda: not mine.is_running() and not theirs.is_running())
    assert [e for e in ev_mine if e[0] == "done"] == [("done", "a", 1)]
    assert [e for e in ev_theirs if e[0] == "done"] == [("done", "b", 2)]
    with pytest.raises(ValueError):
        mine.submit("b", lambda ctx: 0)


def test_progress_errors_and_cancel(qtbot, controller):
    client = JobClient(controller, ["run", "bad"])
    events = _record(client)

    def run(ctx):
        for i in range(3):
            ctx.progress(i + 1, 3)
        return "ok"

    client.submit("run", run)
    client.submit("bad", lambda ctx: 1 / 0)
    qtbot.waitUntil(lambda: not client.is_running())
    assert [e[2:] for e in events if e[0] == "progress"] == [(1, 3), (2, 3), (3, 3)]
    assert [e[:2] for e in events if e[0] == "failed"] == [("failed", "bad")]
    assert "ZeroDivisionError" in [e for e in events if e[0] == "failed"][0][2]

    gate = threading.Event()
    client.submit("run", lambda ctx: (gate.wait(5), ctx.check()))
    assert client.is_running("run")
    client.cancel()
    gate.set()
    assert not client.is_running()
    qtbot.waitUntil(lambda: ("cancelled", "run") in events)


def test_a_job_dropped_before_it_ran_is_reported_cancelled(qtbot, controller):
    """A model load drops every pending job: the tool that asked must not wait for it forever."""
    client = JobClient(controller, ["probe"])
    events = _record(client)
    gate, started = threading.Event(), threading.Event()

    def blocker(ctx):
        started.set()
        gate.wait(5)

    controller.worker.submit("other", blocker)
    started.wait(5)
    client.submit("probe", lambda ctx: "never")
    controller.worker.submit("load", lambda ctx: "model", exclusive=True)
    gate.set()
    qtbot.waitUntil(lambda: not client.is_running())
    assert ("cancelled", "probe") in events
    assert not [e for e in events if e[0] == "done"]
