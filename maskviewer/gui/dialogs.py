"""The one place the window asks the user for files and answers: a small dialog service.

Tools never call ``QFileDialog`` or ``QMessageBox`` themselves; they ask ``window.dialogs``.
Tests replace it with :class:`ScriptedDialogs`, which answers from a queue and records the
questions, so no test waits on a modal dialog.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QDialog,
    QFileDialog,
    QInputDialog,
    QMessageBox,
    QWidget,
)


class Dialogs:
    """Modal file pickers and questions, parented to ``parent`` (the main window).

    Every picker returns the chosen path as a string, or ``None`` when the user cancelled.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def open_file(self, title: str, start: str = "", filter: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, title, start, filter)
        return path or None

    def open_files(self, title: str, start: str = "", filter: str = "") -> list[str]:
        paths, _ = QFileDialog.getOpenFileNames(self.parent, title, start, filter)
        return list(paths)

    def save_file(self, title: str, start: str = "", filter: str = "") -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, start, filter)
        return path or None

    def folder(self, title: str, start: str = "") -> str | None:
        return QFileDialog.getExistingDirectory(self.parent, title, start) or None

    def run(self, dialog: QDialog) -> bool:
        """Show a dialog built by a tool (the export dialog) modally; True when accepted."""
        return dialog.exec() == QDialog.DialogCode.Accepted

    def question(self, title: str, text: str, default_yes: bool = False) -> bool:
        """A yes/no question; True for yes."""
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        answer = QMessageBox.question(self.parent, title, text, yes | no, yes if default_yes else no)
        return answer == yes

    def confirm(self, title: str, text: str) -> bool:
        """A warning that needs consent (running code, overwriting): True for yes, default no."""
        yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
        return QMessageBox.warning(self.parent, title, text, yes | no, no) == yes

    def save_discard_cancel(self, title: str, text: str) -> str:
        """Ask what to do with unsaved work: ``"save"``, ``"discard"`` or ``"cancel"``."""
        b = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self.parent, title, text, b.Save | b.Discard | b.Cancel, b.Save
        )
        return {b.Save: "save", b.Discard: "discard"}.get(answer, "cancel")

    def text(self, title: str, label: str, default: str = "") -> str | None:
        """A line of text (a name); None when cancelled."""
        value, ok = QInputDialog.getText(self.parent, title, label, text=default)
        return value if ok else None

    def color(
        self, title: str, initial: tuple[int, int, int]
    ) -> tuple[int, int, int] | None:
        """An RGB colour; None when cancelled."""
        chosen = QColorDialog.getColor(QColor(*initial), self.parent, title)
        return (chosen.red(), chosen.green(), chosen.blue()) if chosen.isValid() else None


class ScriptedDialogs(Dialogs):
    """Answers queued in advance, for tests: ``dialogs.answers.append("/tmp/x.png")``.

    Each call pops the next answer (``None`` = cancelled when the queue is empty) and records
    ``(method, title)`` in :attr:`asked`.
    """

    def __init__(self, *answers: Any) -> None:
        super().__init__(None)
        self.answers: deque[Any] = deque(answers)
        self.asked: list[tuple[str, str]] = []

    def _next(self, method: str, title: str, empty: Any = None) -> Any:
        self.asked.append((method, title))
        return self.answers.popleft() if self.answers else empty

    def open_file(self, title: str, start: str = "", filter: str = "") -> str | None:
        return self._next("open_file", title)

    def open_files(self, title: str, start: str = "", filter: str = "") -> list[str]:
        return list(self._next("open_files", title, []))

    def save_file(self, title: str, start: str = "", filter: str = "") -> str | None:
        return self._next("save_file", title)

    def folder(self, title: str, start: str = "") -> str | None:
        return self._next("folder", title)

    def run(self, dialog: QDialog) -> bool:
        """The next answer for a tool's dialog: a callable gets the dialog (to tick, type,
        choose in it) and accepts it unless it returns False; True/False accept/cancel."""
        answer = self._next("run", dialog.windowTitle(), False)
        if callable(answer):
            return answer(dialog) is not False
        return bool(answer)

    def question(self, title: str, text: str, default_yes: bool = False) -> bool:
        return bool(self._next("question", title, False))

    def confirm(self, title: str, text: str) -> bool:
        return bool(self._next("confirm", title, False))

    def save_discard_cancel(self, title: str, text: str) -> str:
        return str(self._next("save_discard_cancel", title, "cancel"))

    def text(self, title: str, label: str, default: str = "") -> str | None:
        return self._next("text", title)

    def color(self, title: str, initial: tuple[int, int, int]) -> tuple[int, int, int] | None:
        return self._next("color", title)
