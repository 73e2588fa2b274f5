"""The Attention tool's state, Qt-free: which attention to show and how, and the latest maps.

:class:`AttentionModel` holds the attention layers of the loaded model, the request (what to
show: per-head maps of a layer, the heads × layers overview, rollout or the class attribution;
the query token — the class token, or a patch the user clicked; the head fusion and discard
fraction of rollout; the class; the user's grid and extra-token override) and the latest
outcome, and turns it into colour-table indices with numpy only (:meth:`heatmap`, :meth:`tiles`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.heatmap import channel_grid, colorize, normalize, to_indices, upsample_to_frame
from maskviewer.core.mapping import Frame
from maskviewer.core.rollout import HEAD_FUSIONS
from maskviewer.core.tokens import TokenGridError, TokenOverride, parse_grid, patch_of_pixel
from maskviewer.gui.attention.jobs import MODES, AttentionOutcome, AttentionRequest

NO_MODEL = "No model loaded. Open a vision transformer to see its attention."
NO_ATTENTION = (
    "This model has no MultiHeadAttention layer, so there is no attention to show. The "
    "Attention view is for transformers (ViTs and hybrids) built with keras.layers.MultiHeadAttention; "
    "try the vision-transformer demo (Help → Demos)."
)


class AttentionModel:
    """The Attention tool's state and actions.

    Events
    ------
    layers_changed()
        The attention layer list was replaced.
    request_changed()
        What to compute changed.
    display_changed()
        Only how it looks changed (colour map, opacity, the head shown).
    message_changed(text)
        The line under the controls: how to start, an error, or what is shown.
    cleared()
        Nothing is drawn any more.
    """

    def __init__(self) -> None:
        self.layers: list[tuple[str, int]] = []
        self.request = AttentionRequest()
        self.head: int | None = None  # None: the mean of the heads
        self.colormap = "inferno"
        self.opacity = 60
        self.outcome: AttentionOutcome | None = None
        self.message = NO_MODEL
        self.has_model = False
        self.layers_changed = Event()
        self.request_changed = Event()
        self.display_changed = Event()
        self.message_changed = Event()
        self.cleared = Event()

    # -- the model -------------------------------------------------------------------------------

    def set_model(self, info: Any) -> bool:
        """Forget the layers of the model before; True when the new one's can be listed."""
        self.layers, self.outcome, self.head = [], None, None
        self.request = AttentionRequest(mode=self.request.mode, fusion=self.request.fusion,
                                        discard=self.request.discard)
        self.has_model = info is not None and bool(getattr(info, "probe_supported", False))
        self.layers_changed.emit()
        self.cleared.emit()
        if info is None:
            self.set_message(NO_MODEL)
            return False
        if not self.has_model:
            self.set_message(getattr(info, "note", "") or "This model's layers cannot be probed.")
            return False
        self.set_message("Reading the model's attention layers…")
        return True

    def set_layers(self, result: list[tuple[str, int]] | str) -> None:
        """The attention layers (``(path, heads)``), or a message saying why there are none."""
        if isinstance(result, str):
            self.layers = []
            self.set_message(result)
        else:
            self.layers = list(result)
            if self.layers:
                self.request = replace(self.request, layer=self.layers[-1][0])
                self.set_message("Open an image to see where the model attends.")
            else:
                self.set_message(NO_ATTENTION)
        self.layers_changed.emit()
        if self.layers:
            self.request_changed.emit()

    @property
    def ready(self) -> bool:
        return bool(self.layers)

    # -- the request -----------------------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        new = replace(self.request, **changes)
        if new != self.request:
            self.request = new
            self.request_changed.emit()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"Unknown attention view {mode!r}; choose one of {', '.join(MODES)}.")
        self._update(mode=mode)

    def select_layer(self, path: str) -> None:
        if path and path in dict(self.layers):
            self.head = None
            self._update(layer=path)

    def set_head(self, head: int | None) -> None:
        """Show head ``head`` over the image (None: the mean of the heads); no new job."""
        self.head = head
        self.display_changed.emit()

    def set_fusion(self, fusion: str) -> None:
        if fusion in HEAD_FUSIONS:
            self._update(fusion=fusion)

    def set_discard(self, fraction: float) -> None:
        self._update(discard=float(min(max(fraction, 0.0), 0.99)))

    def set_class(self, class_index: int | None) -> None:
        self._update(class_index=None if class_index is None or class_index < 0 else int(class_index))

    def use_class_token(self) -> None:
        """Query from the class token again (or the mean over tokens without one)."""
        self._update(token=None)

    def pick_pixel(self, x: float, y: float, frame: Frame | None = None) -> int | None:
        """The token of the patch under image pixel ``(x, y)`` becomes the query; returns it.

        ``frame`` is where the model input lies over the image (the latest outcome's by default).
        """
        o = self.outcome
        frame = frame or self.current_frame()
        if o is None or o.grid is None or frame is None:
            self.set_message("Show an attention map first, then click a patch to see where it attends.")
            return None
        col, row = (x - frame.x), (y - frame.y)
        if not (0 <= col < frame.width and 0 <= row < frame.height):
            return None
        token = patch_of_pixel(row, col, (frame.height, frame.width), o.grid)
        self._update(token=token)
        return token

    def set_override(self, grid_text: str, extra: int | None) -> bool:
        """The user's grid (``"HxW"``, empty for found) and extra tokens (None for found)."""
        try:
            grid = parse_grid(grid_text) if grid_text.strip() else None
            override = TokenOverride(grid, extra)
        except TokenGridError as exc:
            self.set_message(str(exc))
            return False
        self._update(override=None if override.empty else override, token=None)
        return True

    # -- the outcome -----------------------------------------------------------------------------

    def set_outcome(self, outcome: AttentionOutcome) -> bool:
        """Keep the outcome; False (and the message) when it is an error."""
        if outcome.error:
            self.outcome = None
            self.set_message(outcome.error)
            self.cleared.emit()
            return False
        self.outcome = outcome
        if self.head is not None and (outcome.tiles is None or self.head >= outcome.cols):
            self.head = None
        self.set_message(self.describe())
        return True

    def set_message(self, text: str) -> None:
        self.message = text
        self.message_changed.emit(text)

    def current_frame(self) -> Frame | None:
        o = self.outcome
        if o is None or not o.frames:
            return None
        return next(iter(o.frames.values()))

    def current_map(self) -> np.ndarray | None:
        """The map over the image: the chosen head's, or the outcome's map."""
        o = self.outcome
        if o is None or o.map is None:
            return None
        if self.head is not None and o.tiles is not None and o.request.mode == "heads":
            return o.tiles[self.head]
        return o.map

    def heatmap(self) -> tuple[np.ndarray, Frame] | None:
        """Colour-table indices at display size and where they go, or None."""
        values, frame = self.current_map(), self.current_frame()
        if values is None or frame is None:
            return None
        unit, _ = normalize(values, "per_map")
        return to_indices(upsample_to_frame(unit, frame)), frame

    def tiles(self) -> tuple[np.ndarray, Any] | None:
        """The small maps under the controls as RGBA, and their layout (None without tiles)."""
        o = self.outcome
        if o is None or o.tiles is None:
            return None
        grid, layout = channel_grid(o.tiles, "per_map", cols=o.cols)
        rgba = colorize(np.nan_to_num(grid), self.colormap)
        rgba[np.isnan(grid), 3] = 0
        return rgba, layout

    def describe(self) -> str:
        """What is shown, in words."""
        o = self.outcome
        if o is None:
            return self.message
        r = o.request
        who = "the class token" if r.token is None else f"token {r.token} (the clicked patch)"
        if r.token is None and o.grid is not None and not o.grid.extra:
            who = "all tokens (mean; the model has no class token)"
        grid = o.grid.describe() if o.grid is not None else ""
        if r.mode == "heads":
            head = "mean of the heads" if self.head is None else f"head {self.head}"
            text = f"{r.layer}: where {who} attends · {head} · {o.cols} heads"
        elif r.mode == "overview":
            text = f"Heads × layers: where {who} attends ({len(o.rows)} layers × {o.cols} heads); the image shows the last layer's mean"
        elif r.mode == "rollout":
            text = f"Attention rollout from {who} · heads fused by {r.fusion}"
            if r.discard:
                text += f" · lowest {r.discard:.0%} discarded"
        else:
            text = f"Attribution of class {o.classes} (score {o.score:.4g}) · gradient-weighted rollout from {who}"
        return f"{text}\n{grid}" if grid else text

