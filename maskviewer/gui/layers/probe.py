"""The Layers tool's model work: what a probe asks for, what it sends back, and the job itself.

Qt-free: the job runs on the inference thread (kind ``"probe"``) and imports the probe and
Grad-CAM code only when it runs, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import Cancelled, MaskviewerError
from maskviewer.core.heatmap import mask_to_grid
from maskviewer.core.mapping import Frame

#: methods offered, in order: key -> label
METHOD_LABELS = {
    "mean": "Mean over channels",
    "max": "Max over channels",
    "topk": "Top-k channels (by mean)",
    "channel": "One channel",
    "grid": "Channel grid",
    "attention": "Attention map",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
}
CAM_METHODS = ("gradcam", "gradcam++")
#: methods whose channels can be ranked inside the painted mask
RANKED_METHODS = ("topk", "grid", "mean", "max", "channel")


@dataclass
class ProbeRequest:
    """A snapshot of what the panel asks for."""

    path: str
    method: str
    k: int = 5
    channel: int = 0
    output: str | None = None
    class_index: int | None = None
    rank_in_mask: bool = False
    mask_input: str | None = None


@dataclass
class ProbeOutcome:
    """What a probe job sends back: a map to draw, or a message saying why there is none."""

    request: ProbeRequest
    frames: dict[str, Frame] = field(default_factory=dict)
    maps: Any = None  # LayerMaps
    cam: Any = None  # CamResult
    error: str = ""
    notes: list[str] = field(default_factory=list)


def run_probe(ctx: Any, info: Any, build: Callable, req: ProbeRequest, mask: np.ndarray | None) -> ProbeOutcome:
    """The probe job, on the inference thread; a layer that cannot be probed sets ``error``.

    Parameters
    ----------
    ctx
        The job's context (its ``host`` runs the model; ``check()`` raises when cancelled).
    info
        The model info the request was made for: a job for a model no longer loaded is dropped.
    build
        Makes ``(arrays, frames)``, the model's inputs and where each lies over the image.
    req
        What to compute.
    mask
        The painted mask (image pixels) to rank channels inside, or None.
    """
    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import Reduction, get_probe

    if ctx.host.info is not info:
        raise Cancelled("made for a model that is no longer loaded")
    out = ProbeOutcome(req)
    try:
        arrays, frames = build()
        out.frames = frames
        ctx.check()
        packed = ctx.host.pack_inputs(arrays)
        probe = get_probe(ctx.host)
        if req.method in CAM_METHODS:
            out.cam = grad_cam(
                probe,
                packed,
                req.path,
                output_keys=list(ctx.host.loaded.output_keys),
                output=req.output,
                class_index=req.class_index,
                plus=req.method == "gradcam++",
            )
        else:
            weights = None
            if req.rank_in_mask and mask is not None and req.mask_input in frames:
                frame = frames[req.mask_input]
                weights = lambda h, w: mask_to_grid(mask, frame, h, w)  # noqa: E731
            out.maps = probe.reduce(packed, req.path, Reduction(req.method, req.k, req.channel), weights)
            out.notes = list(out.maps.notes)
    except Cancelled:
        raise
    except MaskviewerError as exc:
        out.error = str(exc)
    except Exception as exc:  # a layer the probe cannot run: say which, keep the app going
        out.error = (
            f"Layer {req.path} cannot be probed: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        )
    return out


def describe_layers_job(ctx: Any) -> list | str:
    """The ``"layers_info"`` job: the layer list, or a message saying why there is none."""
    from maskviewer.inference.probe import describe_layers

    try:
        return describe_layers(ctx.host)
    except MaskviewerError as exc:
        return str(exc)
