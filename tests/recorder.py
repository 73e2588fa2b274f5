"""Recording a Qt-free model's events in tests."""

from __future__ import annotations


class Recorder:
    """Keeps the arguments of every emission of the named events of ``model``."""

    def __init__(self, model, names):
        self.calls = {n: [] for n in names}
        for n in names:
            getattr(model, n).connect(lambda *a, n=n: self.calls[n].append(a))

    def count(self, name):
        return len(self.calls[name])
