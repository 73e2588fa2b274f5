"""Several widgets side by side in one row of a form (a ``QFormLayout`` takes one widget a row)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSlider, QWidget


def form_row(*widgets: QWidget, stretch: Sequence[int] | None = None) -> QWidget:
    """One widget holding ``widgets`` side by side without margins; ``stretch`` gives each its
    share of the room (by default lists and sliders share it, the others keep their size)."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        share = stretch[i] if stretch is not None else (1 if isinstance(w, (QComboBox, QSlider)) else 0)
        row.addWidget(w, share)
    return box
