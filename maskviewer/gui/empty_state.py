"""A view that says what to do while it has nothing to show.

A plot without data draws axes that mean nothing (a y-axis from −500 to 500) and an empty
picture box is a dark rectangle: :class:`EmptyState` shows a sentence in their place until
there is something to draw, then the view itself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QWidget

STYLE = (
    "QLabel { color: #707070; background: palette(base); border: 1px dashed #b0b0b0; "
    "border-radius: 4px; padding: 12px; }"
)


class EmptyState(QStackedWidget):
    """``content`` once :meth:`set_empty` (False) says there is data; until then ``text``.

    Attributes
    ----------
    content : QWidget
        The view (a plot, a picture box).
    label : QLabel
        The sentence shown instead of an empty ``content``.
    """

    def __init__(self, content: QWidget, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.content = content
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setStyleSheet(STYLE)
        self.label.setMinimumHeight(60)
        self.addWidget(self.label)
        self.addWidget(content)
        self.setCurrentWidget(self.label)

    def set_empty(self, empty: bool, text: str | None = None) -> None:
        """Show the sentence (``text`` if given) when ``empty``, else the view."""
        if text is not None:
            self.label.setText(text)
        self.setCurrentWidget(self.label if empty else self.content)

    def is_empty(self) -> bool:
        """True while the sentence is shown in place of the view."""
        return self.currentWidget() is self.label

    def text(self) -> str:
        return self.label.text()
