"""The Layers tool's state, Qt-free: the layer list, what to compute and how to show it.

:class:`LayersModel` holds the layer entries and the selected layer, the request (method,
k, channel, output and class for Grad-CAM, ranking inside the mask), the display options
(colour map, opacity, scaling, the input drawn over) and the latest probe outcome. It turns
that outcome into a :class:`Drawing` (the colour indices of the heatmap, the channel grid,
the bars, the channel ranking) with numpy only, so the widgets merely copy pixels and the
whole tool can be tested without a QApplication (see :mod:`maskviewer.gui.layers.drawing`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.heatmap import (
    COLORMAPS,
    DEFAULT_OPACITY,
    NORMALISATIONS,
    default_cam_layer,
    is_one_by_one,
)
from maskviewer.core.mapping import Frame, is_image_input
from maskviewer.gui.layers.drawing import (
    Drawing,
    Heatmap,
    current_frame,
    current_map,
    describe,
    make_drawing,
    make_heatmap,
)
from maskviewer.gui.layers.probe import (
    LAYER_CAM_METHODS,
    METHOD_LABELS,
    MethodParams,
    ProbeOutcome,
    ProbeRequest,
)

NO_SPATIAL_NOTE = (
    "This model has no layer with a spatial (H, W, C) output, so there is no map "
    "to draw over the image; its layers are shown as bars."
)
#: a CAM drawn on a 1×1 layer (after a global pooling) is one flat value
ONE_BY_ONE_NOTE = (
    "Layer {path} is 1×1, so its Grad-CAM is a single value over the whole image; "
    "pick an earlier layer with a larger map."
)
#: the spin boxes' limits, which the values are clamped to as the widgets would
K_MAX = 1024
CLASS_MAX = 100_000


class LayersModel:
    """The Layers tool's state and actions.

    Events
    ------
    layers_changed()
        The layer list was replaced.
    choices_changed()
        The outputs, inputs or the selected layer's channel count changed.
    request_changed()
        What to compute changed (layer, method, k, channel, output, class, mask ranking).
    display_changed()
        Only how it looks changed (colour map, opacity, scaling, input drawn over).
    message_changed(text), info_changed(text)
        The warning line and the description of the map shown.
    cleared()
        Nothing is drawn any more.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}  # path -> LayerEntry, in the model's order
        self.layer_infos: dict[str, Any] = {}  # path -> LayerInfo (which outputs it feeds)
        self.selected: str | None = None
        self.outputs: list[str] = []
        self.inputs: list[str] = []
        self.channel_count = 1
        self.method = "mean"
        self.k = 5
        self.channel = 0
        self.output: str | None = None
        self.class_index = -1  # -1: the top class
        #: outputs read as values (regression): a map explains the value, there is no class to pick
        self.value_outputs: set[str] = set()
        self.rank_in_mask = False
        self.params = MethodParams()  # SmoothGrad's and IG's parameters
        self.colormap = "viridis"
        self.opacity = round(DEFAULT_OPACITY * 100)  # percent
        self.normalisation = "per_map"
        self.input: str | None = None
        self.outcome: ProbeOutcome | None = None
        self.message = ""
        self.info = ""
        self.model_note = ""  # shown whenever no error is: e.g. "no spatial layers"
        # the channel grid last drawn, to find the channel under a click
        self.grid_layout = None
        self.grid_channels: np.ndarray | None = None
        self._channel_max = 0
        self._k_max = K_MAX
        self.layers_changed = Event()
        self.choices_changed = Event()
        self.request_changed = Event()
        self.display_changed = Event()
        self.message_changed = Event()
        self.info_changed = Event()
        self.cleared = Event()

    # -- the model and its layers ----------------------------------------------------------------

    def set_model(self, info: Any) -> bool:
        """Forget the layers of the model before; True when ``info``'s layers can be read."""
        self.model_note = ""
        self.entries, self.selected = {}, None
        # no layer yet: k and channel are bounded by the next layer chosen, not the last one
        self.channel_count, self._k_max = 1, K_MAX
        self.layers_changed.emit()
        self.clear()
        if info is None:
            self.set_message("No model loaded. Open a model to see its layers.")
            return False
        self.outputs = [t.name for t in info.outputs]
        self.output = self.outputs[0] if self.outputs else None
        self.inputs = [t.name for t in info.inputs if is_image_input(t.shape)] or [t.name for t in info.inputs]
        self.input = self.inputs[0] if self.inputs else None
        self.choices_changed.emit()
        if not info.probe_supported:
            self.set_message(info.note or "This model's layers cannot be probed.")
            return False
        self.set_message("Reading the layers…")
        return True

    def set_layers(self, result: list | str, info: Any = None) -> None:
        """The ``"layers_info"`` result: the entries (and a default layer), or why there are none."""
        if isinstance(result, str):
            self.set_message(result)
            return
        self.entries, self.selected = {e.path: e for e in result}, None
        self.layer_infos = {layer.path: layer for layer in info.iter_layers()} if info is not None else {}
        self.layers_changed.emit()
        spatial = [e for e in result if e.spatial]
        self.model_note = "" if spatial else NO_SPATIAL_NOTE
        self.set_message(self.model_note)
        default = default_cam_layer(info, self.output) if info is not None else None
        path = default.path if default is not None and default.path in self.entries else None
        path = path or (spatial[-1].path if spatial else (result[0].path if result else None))
        if path:
            self.select_layer(path)

    def select_layer(self, path: str | None) -> bool:
        """Select a listed layer (None: no layer); True when the selection changed.

        The layer's channel count bounds k and channel, and attention layers switch a mean/max
        method to the attention map (and back).
        """
        if path is None and self.selected is not None:  # the list's selection was cleared
            self.selected = None
            self.request_changed.emit()
            return True
        entry = self.entries.get(path) if path else None
        if entry is None or path == self.selected:
            return False
        self.selected = path
        c = entry.shape[-1] if entry.spatial and entry.shape[-1] is not None else 1
        self.channel_count = int(c)
        self._channel_max, self._k_max = max(0, c - 1), max(1, c)
        self.channel, self.k = min(self.channel, self._channel_max), min(self.k, self._k_max)
        if entry.attention and self.method in ("mean", "max"):
            self.method = "attention"
        elif not entry.attention and self.method == "attention" and c != 1:
            self.method = "mean"
        self.choices_changed.emit()
        self.request_changed.emit()
        return True

    @property
    def entry(self) -> Any:
        """The selected layer's entry, or None."""
        return self.entries.get(self.selected) if self.selected else None

    # -- the request -----------------------------------------------------------------------------

    def _set(self, name: str, value: Any, event: Event) -> None:
        if getattr(self, name) != value:
            setattr(self, name, value)
            event.emit()

    def set_method(self, method: str) -> None:
        if method not in METHOD_LABELS:
            raise ValueError(f"unknown method {method!r}; one of {list(METHOD_LABELS)}")
        self._set("method", method, self.request_changed)

    def set_k(self, k: int) -> None:
        self._set("k", min(max(int(k), 1), self._k_max), self.request_changed)

    def set_channel(self, channel: int) -> None:
        self._set("channel", min(max(int(channel), 0), self._channel_max), self.request_changed)

    def set_output(self, output: str | None) -> None:
        self._set("output", output, self.request_changed)

    def set_class_index(self, index: int) -> None:
        self._set("class_index", min(max(int(index), -1), CLASS_MAX), self.request_changed)

    def set_rank_in_mask(self, on: bool) -> None:
        self._set("rank_in_mask", bool(on), self.request_changed)

    def set_param(self, name: str, value: Any) -> None:
        """Set an attribution method's parameter (see :class:`~maskviewer.gui.layers.probe.MethodParams`)."""
        if self.params.set(name, value):
            self.request_changed.emit()

    def select_channel(self, channel: int) -> None:
        """Show one channel: in grid mode the grid stays, otherwise the method becomes 'one channel'."""
        self.channel = min(max(int(channel), 0), self._channel_max)
        if self.method != "grid":
            self.method = "channel"
        self.request_changed.emit()

    def click_tile(self, x: float, y: float) -> int | None:
        """Select the channel of the grid tile at grid pixel ``(x, y)``; returns it."""
        if self.grid_layout is None or self.grid_channels is None:
            return None
        i = self.grid_layout.tile_at(x, y)
        if i is None:
            return None
        channel = int(self.grid_channels[i])
        self.select_channel(channel)
        return channel

    def current_request(self) -> ProbeRequest | None:
        """A snapshot of what to compute, or None without a selected layer."""
        if self.selected is None:
            return None
        return ProbeRequest(
            path=self.selected,
            method=self.method,
            k=self.k,
            channel=self.channel,
            output=self.output,
            class_index=None if self.class_index < 0 else self.class_index,
            rank_in_mask=self.rank_in_mask,
            mask_input=self.input,
            params=replace(self.params),
        )

    def request_problem(self, req: ProbeRequest) -> str:
        """Why ``req`` cannot be computed ("" when it can)."""
        entry = self.entries.get(req.path)
        if entry is not None and not entry.spatial and req.method in LAYER_CAM_METHODS:
            return (
                f"Layer {req.path} has no spatial output, so there is no map for "
                f"{METHOD_LABELS[req.method]}; pick a convolutional layer."
            )
        if req.method in LAYER_CAM_METHODS:
            return cam_layer_problem(self.layer_infos.get(req.path), req.output or (self.outputs or [None])[0])
        return ""

    # -- display options ---------------------------------------------------------------------------

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            raise ValueError(f"unknown colour map {name!r}; one of {list(COLORMAPS)}")
        self._set("colormap", name, self.display_changed)

    def set_normalisation(self, name: str) -> None:
        if name not in NORMALISATIONS:
            raise ValueError(f"unknown scaling {name!r}; one of {list(NORMALISATIONS)}")
        self._set("normalisation", name, self.display_changed)

    def set_opacity(self, percent: int) -> None:
        self._set("opacity", min(max(int(percent), 0), 100), self.display_changed)

    def set_input(self, name: str | None) -> None:
        self._set("input", name, self.display_changed)

    # -- outcome, messages -------------------------------------------------------------------------

    def set_outcome(self, outcome: ProbeOutcome) -> bool:
        """Keep a probe's outcome; True when it has a map to draw (an error is shown otherwise)."""
        self.outcome = outcome
        if outcome.error:
            self.show_error(outcome.error)
            return False
        # an error before is solved; the model's note stays (or a CAM on a 1×1 layer is warned of)
        req = outcome.request
        one = req is not None and req.method in LAYER_CAM_METHODS and _is_one_by_one(self.layer_infos.get(req.path))
        self.set_message(ONE_BY_ONE_NOTE.format(path=req.path) if one else self.model_note)
        return True

    def show_error(self, message: str) -> None:
        """Say ``message`` and draw nothing (the outcome is kept for its frames)."""
        self.set_message(message)
        self.clear(keep_outcome=True)

    def clear(self, keep_outcome: bool = False) -> None:
        """Draw nothing; forget the outcome unless ``keep_outcome``."""
        if not keep_outcome:
            self.outcome = None
        self.cleared.emit()
        self.set_info("")

    def set_message(self, text: str) -> None:
        self.message = text
        self.message_changed.emit(text)

    def set_info(self, text: str) -> None:
        self.info = text
        self.info_changed.emit(text)

    # -- what to draw ------------------------------------------------------------------------------

    def current_map(self) -> tuple[np.ndarray | None, tuple[float, float] | None]:
        """The map to draw (layer resolution) and the shared range, from the latest result."""
        return current_map(self.outcome)

    def current_frame(self) -> Frame | None:
        """Where the map lies over the image: the frame of the input drawn over."""
        return current_frame(self.outcome, self.input)

    def heatmap(self) -> Heatmap | None:
        """The current map normalised and upsampled to colour-table indices, or None."""
        return make_heatmap(self.outcome, self.normalisation, self.input)

    def drawing(self) -> Drawing | None:
        """What to show for the latest outcome (None without one, or after an error).

        Remembers the channel grid drawn, for :meth:`click_tile` (bars leave it as it was).
        """
        out = make_drawing(self.outcome, self.colormap, self.normalisation, self.input, self.channel)
        if out is not None and out.view != "bars":
            self.grid_layout, self.grid_channels = out.grid_layout, out.grid_channels
        return out

    def describe(self, labels: list[str] | None = None, kinds: Any = None) -> str | None:
        """The description of the map shown (None without a result); ``labels`` name classes,
        ``kinds`` say how each output is read."""
        return describe(self.outcome, labels, kinds)


def _is_one_by_one(layer: Any) -> bool:
    return layer is not None and is_one_by_one(layer)


def cam_layer_problem(layer: Any, output: str | None) -> str:
    """Why a CAM of ``output`` cannot be drawn on ``layer`` (a LayerInfo) ("" when it can):
    the output is not computed from the layer, so its gradient there is nothing."""
    if layer is None or output is None or layer.feeds is None or output in layer.feeds:
        return ""
    return (
        f"The output {output} is not computed from layer {layer.path}, so Grad-CAM has "
        "nothing to show there; pick a layer on the way to that output, or another output."
    )
