"""How the painted mask feeds the model, without Qt: read from and written to the input mappings.

The feed lives in the mappings' ``source`` (see :mod:`maskviewer.core.mask_feed`); this module
proposes one when a model opens, applies the user's choice, and lays out the choices the
Masks panel shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.events import Event
from maskviewer.core.mask_feed import (
    MODE_LABELS,
    MaskFeed,
    apply_feed,
    current_feed,
    feed_options,
    propose_mask_mode,
)

NO_MODEL_NOTE = "Open a model to feed the mask to it."
_MODE_NOTES = {
    "none": "",
    "channel": " The mask channel is in 0..1 whatever the image scaling.",
    "multiply": " Pixels are multiplied by the mask before scaling.",
    "input": " The mask is scaled like a grey image with values 0..1.",
}


def feed_text(feed: MaskFeed) -> str:
    """How a feed is named in the panel and the status bar."""
    if feed.mode == "none":
        return MODE_LABELS["none"]
    return f"{MODE_LABELS[feed.mode]} — input {feed.input_name!r}"


class FeedMemory:
    """Remembers, per model, the feed the user chose, so a model is proposed one only once.

    This one forgets on exit; the tool keeps the choices in the application settings.
    """

    def __init__(self) -> None:
        self._chosen: dict[str, str] = {}

    def was_chosen(self, info: Any) -> bool:
        return str(info.path) in self._chosen

    def remember(self, info: Any, label: str) -> None:
        self._chosen[str(info.path)] = label


class MaskFeeding:
    """The mask → model link of the masks tool.

    Parameters
    ----------
    state
        The window's :class:`~maskviewer.core.state.AppState`.
    set_mapping
        Changes one input mapping (the controller's ``set_mapping``).
    default_mask
        The name of the mask to feed when none is named (the active one).
    names
        The names of the current image's masks.
    memory
        Where choices are remembered per model.

    Events
    ------
    status(text, milliseconds)
        A proposal was made (for the status bar).
    """

    def __init__(
        self,
        state: Any,
        set_mapping: Callable[[str, Any], None],
        default_mask: Callable[[], str],
        names: Callable[[], list[str]],
        memory: FeedMemory | None = None,
    ) -> None:
        self.state = state
        self._set_mapping = set_mapping
        self._default_mask = default_mask
        self._names = names
        self.memory = memory if memory is not None else FeedMemory()
        self.status = Event()

    def feed(self) -> MaskFeed:
        """How the mask feeds the model now (read from the input mappings)."""
        return current_feed(self.state.mappings)

    def set_feed(self, mode: str, input_name: str | None = None, mask_name: str | None = None) -> None:
        """Feed a mask to the model: ``mode`` is none, channel, multiply or input."""
        if mode != "none" and input_name is None:
            info = self.state.model_info
            options = [o for o in feed_options(info) if o.mode == mode] if info else []
            if not options:
                raise MaskviewerError(f"This model has no input that takes the mask as {mode!r}.")
            input_name = options[0].input_name
        self.apply(MaskFeed(mode, input_name, mask_name or self._default_mask()))

    def apply(self, feed: MaskFeed) -> None:
        """Write ``feed`` into the mappings (only those that change) and remember it."""
        info = self.state.model_info
        if info is None:
            return
        new = apply_feed(self.state.mappings, feed)
        for name, m in new.items():
            if self.state.mappings.get(name) != m:
                self._set_mapping(name, m)
        self.memory.remember(info, feed.label)

    def model_changed(self, info: Any) -> None:
        """Propose a feed from a new model's inputs, unless one was chosen for it before."""
        if info is None or self.feed().mode != "none" or self.memory.was_chosen(info):
            return
        image = self.state.image
        channels = None
        if image is not None:
            channels = 1 if image.channels in (1, 2) else 3
        proposal = propose_mask_mode(info, channels)
        if proposal.mode != "none":
            self.apply(MaskFeed(proposal.mode, proposal.input_name, self._default_mask()))
            self.status.emit(
                f"Proposed from the model's inputs: {feed_text(proposal)} "
                "(change it in the Masks panel).", 10000,
            )

    # -- what the panel shows --------------------------------------------------------------------

    def mode_choices(self) -> tuple[list[tuple[str, MaskFeed]], int, str]:
        """The ways to feed this model as ``(text, feed)``, the index of the current one and a
        note describing it."""
        info = self.state.model_info
        if info is None:
            return [(MODE_LABELS["none"], MaskFeed())], 0, NO_MODEL_NOTE
        feed = self.feed()
        current_input = feed.input_name if feed.mode != "none" else None
        choices, index = [], 0
        for opt in feed_options(info):
            choices.append((feed_text(opt), opt))
            if (opt.mode, opt.input_name) == (feed.mode, current_input):
                index = len(choices) - 1
        resize = "" if feed.mode in ("none", "multiply") else (
            " A binary mask is resized with nearest neighbour, a soft one bilinearly.")
        return choices, index, feed.describe() + _MODE_NOTES[feed.mode] + resize

    def mask_choices(self) -> tuple[list[str], str | None, bool]:
        """The masks that may be fed, the one fed (None: not named) and whether one is fed."""
        feed = self.feed()
        names = self._names()
        if feed.mask_name and feed.mask_name not in names:
            names = names + [feed.mask_name]
        return names, feed.mask_name, feed.mode != "none"

    def mode_picked(self, option: MaskFeed, mask_name: str) -> None:
        """The user chose ``option`` in the panel, with ``mask_name`` (may be empty) shown."""
        self.apply(MaskFeed(option.mode, option.input_name, mask_name or self._default_mask()))

    def mask_picked(self, name: str) -> None:
        """The user chose the mask ``name`` to feed."""
        feed = self.feed()
        if feed.mode != "none" and name and name != feed.mask_name:
            self.apply(MaskFeed(feed.mode, feed.input_name, name))
