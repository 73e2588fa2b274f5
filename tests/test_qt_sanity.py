"""The Qt binding the app runs on must survive a long session of signals and timers."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, QTimer, Signal


class _Emitter(QObject):
    fired = Signal(str, int, object)


def test_slot_calls_do_not_leak_references_to_none(qtbot):
    calls = []

    def slot(*_args):  # returns None, like most slots
        calls.append(1)

    emitter = _Emitter()
    emitter.fired.connect(slot)
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(slot)
    before = sys.getrefcount(None)
    for i in range(2000):
        emitter.fired.emit("x", i, None)
    timer.start()
    qtbot.waitUntil(lambda: len(calls) >= 4000, timeout=10_000)
    timer.stop()
    # a binding that drops one reference per call would be ~4000 below (and abort later)
    assert sys.getrefcount(None) - before > -500
