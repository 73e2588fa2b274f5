"""The masks tool's state, without Qt: the masks of each image, the active mask, the paint tool
and brush, the display settings, the edits and what is unsaved.

Widgets and canvas items listen to the events of :class:`MasksModel`; nothing here imports
PySide6 or pyqtgraph, so the model runs (and is tested) without a ``QApplication``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.mask_feed import AblationRow, MaskFeed, masks_needed
from maskviewer.core.masks import Box, Brush, HistoryEntry, Mask, MaskSet, Stroke
from maskviewer.gui.masks import files
from maskviewer.gui.masks.ablation import summarise
from maskviewer.gui.masks.feeding import FeedMemory, MaskFeeding
from maskviewer.gui.mode_state import EDIT_MODES, MODES, PAN

#: (tool id, label, shortcut, tooltip): the canvas modes (pan/zoom and the mask tools)
TOOLS = tuple((m.name, m.label, m.key, m.tooltip()) for m in MODES)
TOOL_TIPS = {tool: tip for tool, _label, _key, tip in TOOLS}
#: the tools whose left drag edits the active mask (pan/zoom leaves the masks alone)
PAINT_TOOLS = EDIT_MODES


def image_key(image: Any) -> str:
    """The key of an image's masks in :attr:`MasksModel.sets` (its path and size)."""
    return f"{image.path or id(image)}:{image.height}x{image.width}"


def mask_label(mask: Mask) -> str:
    """The name shown in the list: a bullet marks unsaved painting."""
    return f"{mask.name} •" if mask.dirty else mask.name


class PaintSettings:
    """The paint tool, the brush and how the overlays are drawn.

    Events
    ------
    tool_changed(tool), brush_changed(), display_changed()
        The paint tool, the brush, or the overlay opacity/outline changed.
    status(text, milliseconds)
        A short message for the status bar (the chosen tool's tip).
    """

    def __init__(self) -> None:
        self.tool = PAN  # a drag pans until a paint tool is chosen
        self.size = 20  # brush diameter in pixels
        self.hardness = 1.0
        self.intensity = 1.0
        self.tolerance = 0.0
        self.opacity = 0.5
        self.outline = False
        self.tool_changed = Event()
        self.brush_changed = Event()
        self.display_changed = Event()
        self.status = Event()

    def set_tool(self, tool: str) -> None:
        """Choose the paint tool (one of the ids in :data:`TOOLS`)."""
        if tool not in TOOL_TIPS:
            raise ValueError(f"unknown mask tool {tool!r}")
        self.tool = tool
        self.tool_changed.emit(tool)
        self.status.emit(TOOL_TIPS[tool], 4000)

    @property
    def brush(self) -> Brush:
        return Brush(self.size / 2.0, self.hardness, self.intensity)

    def set_brush(self, size: int | None = None, hardness: float | None = None,
                  intensity: float | None = None, tolerance: float | None = None) -> None:
        """Change the brush diameter, hardness, painted value or fill tolerance."""
        new = {"size": size, "hardness": hardness, "intensity": intensity, "tolerance": tolerance}
        changed = False
        for name, value in new.items():
            if value is not None and value != getattr(self, name):
                setattr(self, name, int(value) if name == "size" else float(value))
                changed = True
        if changed:
            self.brush_changed.emit()

    def change_size(self, factor: float) -> None:
        """Scale the brush diameter by ``factor`` (by at least one pixel)."""
        new = int(round(self.size * factor))
        if new == self.size:
            new += 1 if factor > 1 else -1
        self.set_brush(size=min(max(1, new), 1000))

    def set_opacity(self, value: float) -> None:
        self.opacity = float(value)
        self.display_changed.emit()

    def set_outline(self, on: bool) -> None:
        self.outline = bool(on)
        self.display_changed.emit()


class MasksModel:
    """The masks of every image seen, the edits of the current image's, and the feed.

    Parameters
    ----------
    state
        The window's :class:`~maskviewer.core.state.AppState`; the model follows its image, model
        and mappings.
    set_mapping
        How to change an input mapping (the controller's, which also remembers it); defaults to
        ``state.set_mapping``.
    memory
        Where the chosen feed is remembered per model (see :class:`FeedMemory`).

    Events
    ------
    maskset_changed()
        Another image's masks (or none) became current.
    masks_changed()
        Masks were added, removed, renamed, recoloured, or another one became active.
    pixels_changed(mask, box)
        Pixels of ``mask`` changed inside ``box`` (None: anywhere) and are not drawn yet.
    flags_changed()
        Which masks hold unsaved painting may have changed.
    predict(now)
        A mask the model is fed was edited: run the model (at once when ``now``).
    visibility_changed(mask)
        ``mask`` was shown or hidden.
    feed_changed()
        The model or how the mask feeds it changed.
    status(text, milliseconds)
        A short message for the status bar.
    """

    def __init__(
        self,
        state: Any,
        set_mapping: Callable[[str, Any], None] | None = None,
        memory: FeedMemory | None = None,
    ) -> None:
        self.state = state
        self.sets: dict[str, MaskSet] = {}
        self.maskset: MaskSet | None = None
        self.paint = PaintSettings()
        self.stroke: Stroke | None = None
        self._ending_stroke = False
        self._last_names: list[str] = ["mask"]
        #: the outputs of the last mask ablation per variant (None until one ran for this model)
        self.ablation_results: dict[str, dict[str, np.ndarray]] | None = None
        self.maskset_changed = Event()
        self.masks_changed = Event()
        self.pixels_changed = Event()
        self.flags_changed = Event()
        self.predict = Event()
        self.visibility_changed = Event()
        self.feed_changed = Event()
        self.status = Event()
        self.paint.status.connect(self.status.emit)
        self.feeding = MaskFeeding(state, set_mapping or state.set_mapping, self.default_feed_mask,
                                   self.names, memory)
        self.feeding.status.connect(self.status.emit)
        state.image_changed.connect(self.set_image)
        state.model_changed.connect(self._model_changed)
        state.mapping_changed.connect(lambda _name: self.feed_changed.emit())

    def _model_changed(self, info: Any) -> None:
        self.ablation_results = None
        self.feeding.model_changed(info)
        self.feed_changed.emit()

    # -- masks per image -----------------------------------------------------------------------

    def set_image(self, image: Any) -> None:
        """Make ``image``'s masks current, creating them with the last image's mask names."""
        self._drop_stroke()
        if self.maskset is not None:
            self._last_names = self.maskset.names or ["mask"]
            self.maskset.changed.disconnect(self._pixels_changed)
            self.maskset.masks_changed.disconnect(self.masks_changed.emit)
        if image is None:
            self.maskset = None
            self.maskset_changed.emit()
            return
        key = image_key(image)
        ms = self.sets.get(key)
        if ms is None:
            ms = MaskSet(image.height, image.width, image_path=image.path)
            # keep the previous image's mask names, so the mask fed to the model stays fed
            for name in self._last_names:
                ms.add(name)
            ms.set_active(ms.names[0])
            self.sets[key] = ms
        self.maskset = ms
        ms.changed.connect(self._pixels_changed)
        ms.masks_changed.connect(self.masks_changed.emit)
        self.maskset_changed.emit()

    def names(self) -> list[str]:
        """The current image's mask names (the last image's while there is none)."""
        return self.maskset.names if self.maskset is not None else list(self._last_names)

    def current_mask(self) -> np.ndarray | None:
        """The active mask: a read-only ``(H, W)`` float32 view in 0..1 (None without an image)."""
        if self.maskset is None or self.maskset.active is None:
            return None
        view = self.maskset.active.data.view()
        view.flags.writeable = False
        return view

    def provide_masks(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Copies of the named masks (taken now, on the GUI thread, so painting may go on)."""
        if self.maskset is None:
            return {}
        return {n: m.data.copy() for n in names if (m := self.maskset.get(n)) is not None}

    def ablation_finished(self, result: dict[str, dict[str, np.ndarray]]) -> tuple[list[AblationRow], str]:
        """Keep the ablation's outputs; returns the table rows and the summary to show."""
        self.ablation_results = result
        return summarise(result, self.state.labels)

    def default_feed_mask(self) -> str:
        if self.maskset is not None and self.maskset.active is not None:
            return self.maskset.active.name
        return self._last_names[0] if self._last_names else "mask"

    def _pixels_changed(self, mask: Mask, box: Box | None) -> None:
        if self._ending_stroke:  # a stroke's dabs are drawn and fed already
            return
        self.pixels_changed.emit(mask, box)
        if self.stroke is None:  # an edit finished: feed it
            self.mask_edited(mask)

    def mask_edited(self, mask: Mask, now: bool = False) -> None:
        """Re-run the model if ``mask`` feeds it: at once after a stroke (a single event),
        through the controller's debounce otherwise (bursts of undo, fills)."""
        self.flags_changed.emit()
        if mask.name in masks_needed(self.state.mappings):
            self.predict.emit(now)

    # -- the list ------------------------------------------------------------------------------

    def select(self, name: str) -> None:
        """Make the mask ``name`` the one painted on."""
        if self.maskset is not None:
            self.maskset.set_active(name)

    def set_visible(self, name: str, visible: bool) -> None:
        mask = self.maskset.get(name) if self.maskset is not None else None
        if mask is not None:
            mask.visible = bool(visible)
            self.visibility_changed.emit(mask)

    def add_mask(self, name: str | None = None) -> Mask | None:
        """Add an empty mask (``"mask"`` when no name is given) and make it active."""
        if self.maskset is None:
            return None
        return self.maskset.add(name or "mask")

    def rename_mask(self, new: str) -> str | None:
        """Rename the active mask; the feed follows it. Returns the name given (made unique)."""
        ms = self.maskset
        if ms is None or ms.active is None:
            return None
        old = ms.active.name
        fed_before = self.feeding.feed()
        given = ms.rename(old, new)
        if fed_before.mask_name == old and given != old:  # keep feeding the renamed mask
            self.feeding.apply(MaskFeed(fed_before.mode, fed_before.input_name, given))
        return given

    def delete_active(self) -> None:
        """Delete the active mask; an image always keeps one mask."""
        ms = self.maskset
        if ms is None or ms.active is None:
            return
        ms.remove(ms.active.name)
        if not ms.masks:
            ms.add("mask")

    def set_color(self, rgb: tuple[int, int, int]) -> None:
        ms = self.maskset
        if ms is not None and ms.active is not None:
            ms.set_color(ms.active.name, rgb)

    # -- edits ---------------------------------------------------------------------------------

    def undo(self) -> None:
        if self.stroke is None and self.maskset is not None:
            entry = self.maskset.undo()
            self.status.emit(f"Undid: {entry.label}" if entry else "Nothing to undo.", 3000)

    def redo(self) -> None:
        if self.stroke is None and self.maskset is not None:
            entry = self.maskset.redo()
            self.status.emit(f"Redid: {entry.label}" if entry else "Nothing to redo.", 3000)

    def invert(self) -> None:
        if self.maskset is not None:
            self.maskset.invert()

    def clear(self) -> None:
        if self.maskset is not None:
            self.maskset.clear()

    def begin_stroke(self, x: float, y: float, erase: bool) -> None:
        """Start a brush stroke on the active mask at ``(x, y)`` (pixel-centre coordinates)."""
        if self.maskset is None or self.maskset.active is None:
            return
        self.stroke = self.maskset.begin_stroke(self.paint.brush, erase)
        self.maskset.stroke_to(self.stroke, x, y)

    def stroke_to(self, x: float, y: float) -> None:
        if self.stroke is not None and self.maskset is not None:
            self.maskset.stroke_to(self.stroke, x, y)

    def end_stroke(self) -> HistoryEntry | None:
        """Finish the stroke: the model is fed before the (slower) undo entry is built."""
        stroke, self.stroke = self.stroke, None
        if stroke is None or self.maskset is None:
            return None
        if stroke.box is not None:
            self.mask_edited(stroke.mask, now=True)
        self._ending_stroke = True
        try:
            entry = self.maskset.end_stroke(stroke)
        finally:
            self._ending_stroke = False
        self.flags_changed.emit()  # the mask is now unsaved
        return entry

    def _drop_stroke(self) -> None:
        """End a stroke cut short (another image): its pixels stay, drawn but not fed."""
        if self.stroke is not None and self.maskset is not None:
            self.maskset.end_stroke(self.stroke)
        self.stroke = None

    def fill(self, x: float, y: float, erase: bool) -> None:
        """Flood-fill from the pixel under ``(x, y)`` with the intensity (0 when ``erase``)."""
        ms = self.maskset
        cx, cy = int(round(x)), int(round(y))
        if ms is not None and 0 <= cx < ms.width and 0 <= cy < ms.height:
            ms.fill(cx, cy, 0.0 if erase else self.paint.intensity, self.paint.tolerance)

    def shape(self, kind: str, corners: tuple[int, int, int, int], erase: bool) -> None:
        """Paint a ``"rectangle"`` or ``"ellipse"`` spanning the pixels ``x0, y0, x1, y1``."""
        if self.maskset is None:
            return
        draw = self.maskset.rectangle if kind == "rectangle" else self.maskset.ellipse
        draw(*corners, self.paint.intensity, erase)

    def polygon(self, points: list[tuple[float, float]], erase: bool) -> None:
        if self.maskset is not None and len(points) >= 3:
            self.maskset.polygon(points, self.paint.intensity, erase)

    # -- files and unsaved painting ------------------------------------------------------------

    def dirty_sets(self) -> list[MaskSet]:
        """The mask sets (of any image) holding unsaved painting."""
        return [ms for ms in self.sets.values() if ms.dirty]

    def save_unsaved(self, folder: str | Path) -> None:
        """Save every unsaved mask of every image into ``folder`` (see :func:`files.save_unsaved`)."""
        files.save_unsaved(self.dirty_sets(), folder)
        self.flags_changed.emit()

    def load_file(self, path: str | Path, confirm_resize: Callable[[str], bool]) -> bool:
        """Load a mask file into the active mask (see :func:`files.load_into_active`)."""
        if self.maskset is None or self.maskset.active is None:
            raise ValueError("no active mask")
        loaded = files.load_into_active(self.maskset, path, confirm_resize)
        self.flags_changed.emit()
        return loaded

    def save_file(self, path: str | Path, name: str | None = None) -> Mask | None:
        """Save the mask ``name`` (the active one by default); None without such a mask."""
        mask = files.save_one(self.maskset, path, name) if self.maskset is not None else None
        if mask is not None:
            self.flags_changed.emit()
        return mask
