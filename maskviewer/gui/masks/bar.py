"""The mask being painted, shown in the mode bar above the image: its colour and name, and a menu
to paint on another one, so a stroke's target is in view whatever panel is in front."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from maskviewer.gui.masks.model import MasksModel
from maskviewer.gui.masks.panel import color_icon

#: longer names are cut (the full name is in the tooltip and the menu)
NAME_CHARS = 14


def short_name(name: str, limit: int = NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


class ActiveMaskButton(QToolButton):
    """The active mask's colour and name; its menu lists the image's masks to paint on.

    ``resized`` tells the bar its width may have changed (another name, shown or hidden).
    """

    resized = Signal()

    def __init__(self, model: MasksModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("active_mask_button")
        self.model = model
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setAutoRaise(True)
        self.menu_ = QMenu(self)
        self.setMenu(self.menu_)
        self.menu_.aboutToShow.connect(self._fill_menu)
        model.maskset_changed.connect(self.show_active)
        model.masks_changed.connect(self.show_active)
        self.show_active()

    def set_compact(self, compact: bool) -> None:
        """Only the colour (the name stays in the tooltip) where the bar is narrow."""
        style = Qt.ToolButtonStyle.ToolButtonIconOnly if compact else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        self.setToolButtonStyle(style)

    def show_active(self) -> None:
        ms = self.model.maskset
        mask = ms.active if ms is not None else None
        self.setVisible(mask is not None)  # no image: nothing to paint on
        if mask is not None:
            self.setIcon(color_icon(tuple(mask.color)))
            self.setText(short_name(mask.name))
            self.setToolTip(f"Painting on mask {mask.name!r}: click to paint on another one")
        self.resized.emit()

    def _fill_menu(self) -> None:
        self.menu_.clear()
        ms = self.model.maskset
        if ms is None:
            return
        for mask in ms.masks:
            act = self.menu_.addAction(color_icon(tuple(mask.color)), mask.name)
            act.setCheckable(True)
            act.setChecked(mask is ms.active)
            act.triggered.connect(lambda _c=False, name=mask.name: self.model.select(name))
