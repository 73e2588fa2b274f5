"""How a panel shows a job it started: Run off and Cancel on while it runs, a progress bar
that is busy until the first count comes in, then ``done / total``."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractButton, QProgressBar


def show_running(run: QAbstractButton, cancel: QAbstractButton, progress: QProgressBar, running: bool) -> None:
    """Enable Run or Cancel and show the progress bar (busy) while a job runs."""
    run.setEnabled(not running)
    cancel.setEnabled(running)
    progress.setVisible(running)
    if running:
        progress.setRange(0, 0)


def show_progress(progress: QProgressBar, done: int, total: int) -> None:
    """``done`` of ``total`` on the bar, with the counts written on it."""
    progress.setRange(0, max(total, 1))
    progress.setValue(done)
    progress.setFormat(f"{done} / {total}")
