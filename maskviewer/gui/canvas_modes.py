"""The mode bar above the image: pan/zoom or a mask tool, each with its key, and the brush size.

The bar shows and changes the canvas's :class:`~maskviewer.gui.mode_state.CanvasModes`; its
actions carry the keys (napari-like: Z pan/zoom, P paint, E erase, F fill, R rectangle, O
ellipse, L lasso; the digits 1–7 in the bar's order) and are also listed in the Mask menu.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QToolBar, QWidget

from maskviewer.gui.mode_state import MODES, CanvasModes

HINT = "Space held: pan · wheel: zoom · [ ]: brush size"


class ModeBar(QWidget):
    """One checkable button per mode (exactly one is checked), the brush size, and a hint.

    :attr:`actions` maps each mode id to its ``QAction`` (with the mode's keys); :attr:`size`
    is the brush diameter in image pixels (the masks tool binds it to its brush).
    """

    def __init__(self, modes: CanvasModes, canvas: QWidget | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mode_bar")
        self.modes = modes
        self.canvas = canvas
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(6)
        self.toolbar = QToolBar("Canvas mode")
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar.setMovable(False)
        self.toolbar.setStyleSheet(
            "QToolBar { spacing: 1px; }"
            " QToolButton { padding: 2px 4px; }"
            " QToolButton:checked { background: palette(highlight); color: palette(highlighted-text);"
            " border-radius: 3px; }"
        )
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        self.actions: dict[str, QAction] = {}
        for mode in MODES:
            act = QAction(mode.title, self)
            act.setIconText(mode.label)
            act.setCheckable(True)
            act.setShortcuts([QKeySequence(k) for k in mode.keys])
            act.setToolTip(mode.tooltip())
            act.setStatusTip(mode.tooltip())
            act.triggered.connect(lambda _c=False, name=mode.name: self.choose(name))
            self.group.addAction(act)
            self.toolbar.addAction(act)
            self.actions[mode.name] = act
        lay.addWidget(self.toolbar)
        self.size = QSpinBox()
        self.size.setRange(1, 1000)
        self.size.setSuffix(" px")
        self.size.setToolTip("Brush diameter in image pixels ([ and ] change it)")
        self.size.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        lay.addWidget(self.size)
        self._extra: list[QWidget] = []
        self.hint = QLabel(HINT)
        self.hint.setStyleSheet("color: palette(mid);")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.hint, 1)
        self._with_keys: tuple[bool, int] | None = None
        self._measure()
        modes.changed.connect(self.show_mode)
        self.show_mode(modes.mode)

    # -- the state both ways ---------------------------------------------------------------------

    def choose(self, mode: str) -> None:
        """Choose ``mode``; the image takes the keyboard, so Space pans at once."""
        self.modes.set_mode(mode)
        if self.canvas is not None:
            self.canvas.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def show_mode(self, mode: str) -> None:
        self.actions[mode].setChecked(True)

    def show_size(self, size: int) -> None:
        if self.size.value() != size:
            self.size.blockSignals(True)
            self.size.setValue(size)
            self.size.blockSignals(False)

    def add_widget(self, widget: QWidget) -> None:
        """Put ``widget`` after the brush size (e.g. the mask being painted)."""
        lay = self.layout()
        lay.insertWidget(lay.indexOf(self.hint), widget)
        self._extra.append(widget)
        self.remeasure()

    def remeasure(self) -> None:
        """Measure again (an added widget changed its size)."""
        self._with_keys = None
        self._measure()

    # -- texts that fit ----------------------------------------------------------------------------

    def _texts(self, with_keys: bool, compact: int = 0) -> None:
        if (with_keys, compact) == self._with_keys:
            return
        self._with_keys = (with_keys, compact)
        for mode in MODES:
            label = f"{mode.label}  {mode.key}" if with_keys else mode.label
            self.actions[mode.name].setIconText(label)
        for widget in self._extra:
            if hasattr(widget, "set_compact"):
                widget.set_compact(compact >= 1)
        self.size.setPrefix("" if compact >= 2 else "Brush ")

    def _measure(self) -> None:
        """The width the bar needs at each level of detail: keys on the buttons, without them,
        with the added widgets compact too, and the brush size without its word."""
        self._levels: list[tuple[int, tuple[bool, int]]] = []
        for level in ((True, 0), (False, 0), (False, 1), (False, 2)):
            self._texts(*level)
            extra = sum(w.sizeHint().width() + 6 for w in self._extra if not w.isHidden())
            width = self.toolbar.sizeHint().width() + self.size.sizeHint().width() + extra + 24
            self._levels.append((width, level))
        self._fit(self.width())

    def _fit(self, width: int) -> None:
        need, level = next(((n, lv) for n, lv in self._levels if n <= width), self._levels[-1])
        self._texts(*level)
        self.hint.setVisible(width - need >= self.hint.sizeHint().width())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit(event.size().width())
