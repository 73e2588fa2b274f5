"""The window's status bar: cursor readout, busy indicator with Cancel, and the backend label."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar


class StatusIndicators:
    """The permanent widgets at the right of ``bar``, driven by the controller's signals.

    Parameters
    ----------
    bar
        The window's status bar.
    controller
        Its ``busy_changed``, ``progress``, ``backend_status`` and ``status`` signals drive
        the widgets; Cancel calls its ``cancel``.
    """

    def __init__(self, bar: QStatusBar, controller) -> None:
        self.bar = bar
        self.cursor_label = QLabel("")
        self.cursor_label.setMinimumWidth(220)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(160)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running job (Esc)")
        self.cancel_button.clicked.connect(controller.cancel)
        self.cancel_button.hide()
        self.backend_label = QLabel("Starting…")
        self.backend_label.setToolTip("Model backend and the device it runs on")
        for widget in (self.cursor_label, self.progress_bar, self.cancel_button, self.backend_label):
            bar.addPermanentWidget(widget)

    def connect(self, controller, canvas) -> None:
        """Follow the controller's messages and jobs, and the cursor over ``canvas``."""
        controller.status.connect(lambda msg: self.bar.showMessage(msg, 8000))
        controller.backend_status.connect(self.backend_label.setText)
        controller.busy_changed.connect(self.busy_changed)
        controller.progress.connect(self.progress)
        canvas.cursor_moved.connect(self.cursor_moved)

    def cursor_moved(self, x: int, y: int, value: str) -> None:
        self.cursor_label.setText(f"x {x}  y {y}  {value}" if value else "")

    def busy_changed(self, busy: bool, what: str) -> None:
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)  # indeterminate until progress arrives

    def progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
