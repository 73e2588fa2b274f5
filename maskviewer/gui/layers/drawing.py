"""What the Layers tool shows for a probe outcome, computed with numpy only.

:func:`make_drawing` turns a :class:`~maskviewer.gui.layers.probe.ProbeOutcome` and the
display options into a :class:`Drawing`: the heatmap's colour-table indices at display size,
the channel grid or the bars under the controls, and the channel ranking. The widgets only
copy these pixels, and recolouring never asks the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core.heatmap import channel_grid, colorize, normalize, to_indices, upsample_to_frame
from maskviewer.core.mapping import Frame
from maskviewer.gui.layers.probe import METHOD_LABELS, ProbeOutcome


@dataclass
class Heatmap:
    """The map over the image: colour-table indices at display size, where, and its range."""

    indices: np.ndarray  # (H, W) uint8
    frame: Frame
    lo: float
    hi: float
    caption: str


@dataclass
class Ranking:
    """Channels best first with their values (and their means inside the mask)."""

    order: np.ndarray
    values: np.ndarray
    scores: np.ndarray | None = None
    bold: int = 0
    value_label: str = "Mean"


@dataclass
class Drawing:
    """Everything the dock and the canvas show for one outcome.

    ``view`` names the picture under the controls: ``"grid"`` (``grid_rgba``, with the
    selected tile at ``highlight``), ``"bars"`` (``bars``) or ``"none"``. ``grid_layout`` and
    ``grid_channels`` say which channel each grid tile shows (None without a grid).
    """

    heatmap: Heatmap | None
    view: str
    bars: np.ndarray | None = None
    grid_rgba: np.ndarray | None = None
    highlight: tuple[float, float, float, float] | None = None
    ranking: Ranking | None = None
    grid_layout: Any = None
    grid_channels: np.ndarray | None = None


def current_map(o: ProbeOutcome | None) -> tuple[np.ndarray | None, tuple[float, float] | None]:
    """The map to draw (layer resolution) and the shared range, from an outcome."""
    if o is None or o.error:
        return None, None
    if o.cam is not None:  # divided by its largest magnitude: IG's signed maps reach -1
        return o.cam.heatmap, (-1.0 if float(o.cam.heatmap.min()) < 0 else 0.0, 1.0)
    if o.maps is not None and o.maps.spatial:
        return o.maps.map, o.maps.value_range
    return None, None


def current_frame(o: ProbeOutcome | None, input_name: str | None) -> Frame | None:
    """Where the map lies over the image: the frame of ``input_name`` (else the first)."""
    if o is None or not o.frames:
        return None
    return o.frames.get(input_name) or next(iter(o.frames.values()))


def make_heatmap(o: ProbeOutcome | None, normalisation: str, input_name: str | None) -> Heatmap | None:
    """The outcome's map normalised and upsampled to colour-table indices, or None."""
    values, shared = current_map(o)
    frame = current_frame(o, input_name)
    if values is None or frame is None or o is None:
        return None
    unit, (lo, hi) = normalize(values, normalisation, vrange=shared if normalisation == "shared" else None)
    idx = to_indices(upsample_to_frame(unit, frame))
    caption = "relative to the maximum" if o.cam is not None else METHOD_LABELS[o.request.method].lower()
    return Heatmap(idx, frame, lo, hi, caption)


def make_drawing(
    o: ProbeOutcome | None, colormap: str, normalisation: str, input_name: str | None, channel: int
) -> Drawing | None:
    """What to show for outcome ``o`` (None without one, or for an error).

    ``channel`` is the selected channel, framed in the channel grid.
    """
    if o is None or o.error:
        return None
    lm = o.maps
    heat = make_heatmap(o, normalisation, input_name)
    if lm is not None and not lm.spatial:
        return Drawing(heat, "bars", bars=lm.vector.reshape(-1)[:4096])
    out = Drawing(heat, "none")
    if lm is not None and lm.maps is not None:
        shared = lm.value_range if normalisation == "shared" else None
        grid, layout = channel_grid(lm.maps, normalisation, vrange=shared)
        rgba = colorize(np.nan_to_num(grid), colormap)
        rgba[np.isnan(grid), 3] = 0
        out.view, out.grid_rgba, out.grid_layout, out.grid_channels = "grid", rgba, layout, lm.channels
        if lm.method == "grid":
            out.highlight = _highlight(layout, lm.channels, channel)
    out.ranking = _ranking(o)
    return out


def _highlight(layout: Any, channels: np.ndarray, channel: int) -> tuple[float, float, float, float] | None:
    hits = np.nonzero(channels == channel)[0]
    if not len(hits):
        return None
    x, y = layout.tile_origin(int(hits[0]))
    return (x - 0.5, y - 0.5, layout.tile_w + 1, layout.tile_h + 1)


def _ranking(o: ProbeOutcome) -> Ranking | None:
    lm = o.maps
    if lm is not None and lm.channel_means is not None:
        masked = lm.rank_scores is not None and not np.array_equal(lm.rank_scores, lm.channel_means)
        order = np.argsort(-lm.rank_scores, kind="stable")
        bold = min(o.request.k, len(order)) if o.request.method == "topk" else 0
        return Ranking(order, lm.channel_means, lm.rank_scores if masked else None, bold)
    if o.cam is not None and o.cam.weights is not None:
        w = o.cam.weights
        return Ranking(np.argsort(-w, kind="stable"), w, None, value_label="CAM weight")
    return None


def describe(o: ProbeOutcome | None, labels: list[str] | None = None, kinds: Any = None) -> str | None:
    """The description of the map shown (None without a result); ``labels`` name classes and
    ``kinds`` (:class:`~maskviewer.core.output_kinds.OutputKinds`) say how outputs are read."""
    from maskviewer.core.output_kinds import REGRESSION, target_text

    if o is None or o.error:
        return None
    parts = []
    if o.cam is not None:
        kind = kinds.kind_of(o.cam.output).kind if kinds is not None else None
        target = target_text(kind, o.cam.output, o.cam.class_index, labels)
        where = f"the input {o.cam.layer}" if getattr(o.cam, "space", "layer") == "input" else o.cam.layer
        of = target if kind == REGRESSION else f"{o.cam.output} {target}"
        parts.append(
            f"{METHOD_LABELS.get(o.cam.method, o.cam.method)} of {of} (score {o.cam.score:.4g}) on {where}"
        )
        params = getattr(o.request, "params", None)
        if o.cam.method == "occlusion" and params is not None:  # the window "auto" chose
            from maskviewer.inference.attribution_occlusion import occlusion_geometry

            h, w = np.shape(o.cam.map)[:2]
            win, step, corners = occlusion_geometry(h, w, params.occlusion_window or None,
                                                    params.occlusion_stride or None)
            parts.append(f"window {win} px, stride {step} px: {len(corners)} windows")
        elif o.cam.method == "scorecam" and params is not None and params.score_channels:
            parts.append(f"the {params.score_channels} channels of largest spread")
    elif o.maps is not None:
        shape = "×".join(str(d) for d in o.maps.shape)
        if o.maps.spatial:
            parts.append(f"{o.maps.path} · {shape} · {METHOD_LABELS[o.maps.method].lower()}")
            if o.maps.method == "topk":
                parts.append("top channels: " + ", ".join(str(int(c)) for c in o.maps.channels))
            elif o.maps.method in ("channel", "grid"):
                parts.append(f"channel {o.request.channel}")
        else:
            parts.append(f"{o.maps.path} · {shape}: not spatial, shown as bars")
    parts.extend(o.notes)
    return "\n".join(parts)
