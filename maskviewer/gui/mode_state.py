"""The image canvas's modes, without Qt: what a left drag on the image does.

Pan/zoom is the default: a drag moves the image, the wheel zooms, and no mask changes. The other
modes are the mask tools (paint, erase, fill, shapes); each has a key, as in napari's labels
layer. Space held pans in any mode and its release returns to the mode. The canvas, the mode bar
above it, the keys and the Masks panel all read and change one :class:`CanvasModes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskviewer.core.events import Event


@dataclass(frozen=True)
class Mode:
    """One canvas mode: its id, the short name on its button, its keys (the first is the one
    shown) and what a drag does."""

    name: str
    label: str
    keys: tuple[str, ...]
    tip: str
    #: the cursor shows the brush's outline (a circle of the brush's size)
    brush: bool = False
    #: the name in menus ("" : the label)
    long_label: str = ""

    @property
    def title(self) -> str:
        return self.long_label or self.label

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def edits(self) -> bool:
        """A left drag in this mode changes the active mask."""
        return self.name != PAN

    def tooltip(self) -> str:
        """The tip with every key that chooses the mode, e.g. ``"Paint (P, 2 or B): …"``."""
        keys = self.keys[0] if len(self.keys) == 1 else f"{', '.join(self.keys[:-1])} or {self.keys[-1]}"
        return f"{self.label} ({keys}): {self.tip}"


PAN = "pan"

#: every mode, in the order of the bar (the digits follow that order)
MODES: tuple[Mode, ...] = (
    Mode(PAN, "Pan", ("Z", "1", "H"),
         "pan and zoom: drag to move the image, wheel to zoom; masks are not changed",
         long_label="Pan/Zoom"),
    Mode("brush", "Paint", ("P", "2", "B"),
         "paint with a round brush; Shift erases; [ and ] change its size", brush=True),
    Mode("eraser", "Erase", ("E", "3"),
         "erase with a round brush; [ and ] change its size", brush=True),
    Mode("fill", "Fill", ("F", "4"), "flood-fill the connected region; Shift fills with 0"),
    Mode("rectangle", "Rect", ("R", "5"), "drag a rectangle; Shift erases", long_label="Rectangle"),
    Mode("ellipse", "Ellipse", ("O", "6"), "drag an ellipse; Shift erases"),
    Mode("lasso", "Lasso", ("L", "7"),
         "drag a freehand lasso, or click corners and double-click to close; Shift erases"),
)
MODES_BY_NAME: dict[str, Mode] = {m.name: m for m in MODES}
#: the modes in which a left drag edits a mask
EDIT_MODES: tuple[str, ...] = tuple(m.name for m in MODES if m.edits)


def mode_for_key(text: str) -> str | None:
    """The mode a key chooses (``"p"`` or ``"P"`` → ``"brush"``), or None."""
    up = text.strip().upper()
    for m in MODES:
        if up in m.keys:
            return m.name
    return None


class CanvasModes:
    """The chosen mode and whether Space is held (pan for as long as it is).

    Events
    ------
    changed(mode)
        Another mode was chosen (by the bar, a key or the Masks panel).
    held_changed(held)
        Space was pressed or released: the canvas pans while it is held, whatever the mode.
    """

    def __init__(self) -> None:
        self.mode = PAN
        self.held = False
        self.changed = Event()
        self.held_changed = Event()

    @property
    def current(self) -> Mode:
        return MODES_BY_NAME[self.mode]

    @property
    def panning(self) -> bool:
        """A left drag pans now: pan/zoom mode, or Space held."""
        return self.held or self.mode == PAN

    @property
    def shows_brush(self) -> bool:
        """The cursor shows the brush outline now."""
        return not self.held and self.current.brush

    def set_mode(self, mode: str) -> None:
        """Choose ``mode`` (an id of :data:`MODES`); choosing the current one changes nothing."""
        if mode not in MODES_BY_NAME:
            raise ValueError(f"unknown canvas mode {mode!r}")
        if mode != self.mode:
            self.mode = mode
            self.changed.emit(mode)

    def press_key(self, text: str) -> bool:
        """Choose the mode of the key ``text``; False when it chooses none."""
        mode = mode_for_key(text)
        if mode is None:
            return False
        self.set_mode(mode)
        return True

    def hold(self, held: bool) -> None:
        """Space pressed (True) or released (False)."""
        held = bool(held)
        if held != self.held:
            self.held = held
            self.held_changed.emit(held)
