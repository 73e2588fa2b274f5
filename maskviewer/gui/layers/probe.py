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
from maskviewer.inference.attribution import IG_BASELINES, LAYER_METHODS, METHOD_NAMES
from maskviewer.inference.attribution import METHOD_LABELS as ATTRIBUTION_LABELS

#: methods offered, in order: key -> label (the attribution methods after the reductions)
METHOD_LABELS = {
    "mean": "Mean over channels",
    "max": "Max over channels",
    "topk": "Top-k channels (by mean)",
    "channel": "One channel",
    "grid": "Channel grid",
    "attention": "Attention map",
    **ATTRIBUTION_LABELS,
}
#: methods that explain one output's class (the output and class controls apply)
CAM_METHODS = METHOD_NAMES
#: of those, the ones drawn on the layer's grid (they need a spatial layer); the others are
#: drawn on the input's pixels and ignore the layer
LAYER_CAM_METHODS = LAYER_METHODS
#: methods whose channels can be ranked inside the painted mask
RANKED_METHODS = ("topk", "grid", "mean", "max", "channel")
#: the parameters' limits (the widgets' ranges)
PARAM_LIMITS = {"smooth_samples": (1, 256), "smooth_noise": (0.0, 1.0), "ig_steps": (2, 512),
                "occlusion_window": (0, 4096), "occlusion_stride": (0, 4096), "score_channels": (0, 8192)}


@dataclass
class MethodParams:
    """The parameters of SmoothGrad, Integrated Gradients, Occlusion and Score-CAM, as the
    panel sets them (0: the method's default)."""

    smooth_samples: int = 16
    smooth_noise: float = 0.15
    ig_steps: int = 32
    ig_baseline: str = "black"  # or "blurred"
    occlusion_window: int = 0  # 0: an eighth of the input's shorter side
    occlusion_stride: int = 0  # 0: half the window
    score_channels: int = 0  # 0: every channel

    def set(self, name: str, value: Any) -> bool:
        """Set one parameter (clamped to its limits); True when it changed."""
        if name == "ig_baseline":
            if value not in IG_BASELINES:
                raise ValueError(f"unknown baseline {value!r}; one of {list(IG_BASELINES)}")
        elif name in PARAM_LIMITS:
            lo, hi = PARAM_LIMITS[name]
            value = type(lo)(min(max(value, lo), hi))
        else:
            raise ValueError(f"unknown parameter {name!r}")
        if getattr(self, name) == value:
            return False
        setattr(self, name, value)
        return True


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
    params: MethodParams = field(default_factory=MethodParams)


@dataclass
class ProbeOutcome:
    """What a probe job sends back: a map to draw, or a message saying why there is none."""

    request: ProbeRequest
    frames: dict[str, Frame] = field(default_factory=dict)
    maps: Any = None  # LayerMaps
    cam: Any = None  # AttributionMap (a CAM, or an input-space map)
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
    from maskviewer.inference.probe import Reduction, get_probe

    ctx.require_model(info)
    out = ProbeOutcome(req)
    try:
        arrays, frames = build()
        out.frames = frames
        ctx.check()
        packed = ctx.host.pack_inputs(arrays)
        probe = get_probe(ctx.host)
        if req.method in CAM_METHODS:
            out.cam = run_attribution(probe, ctx.host.loaded, packed, req, ctx.check)
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


def run_attribution(probe: Any, loaded: Any, packed: Any, req: ProbeRequest, check: Any = None) -> Any:
    """Image 0's map of ``req``'s attribution method (an ``AttributionMap``).

    A request is first run eagerly; asked again (a brush stroke, a new image) it runs as a
    traced function, made once: picking through layers never waits for a trace.
    """
    from maskviewer.inference.attribution import AttributionOptions, attribution_function
    from maskviewer.inference.input_parts import packed_key

    p = req.params
    names = [t.name for t in loaded.info.inputs]
    opts = AttributionOptions(smooth_samples=p.smooth_samples, smooth_noise=p.smooth_noise, ig_steps=p.ig_steps,
                              ig_baseline=p.ig_baseline, input=packed_key(loaded, req.mask_input),
                              occlusion_window=p.occlusion_window or None, occlusion_stride=p.occlusion_stride or None,
                              score_channels=p.score_channels or None)
    layer = req.path if req.method in LAYER_CAM_METHODS else None
    fn = attribution_function(probe, req.method, layer, req.output, opts,
                              output_keys=list(loaded.output_keys), compiled="repeat")
    found = fn(packed, req.class_index, check).item(0)
    if found.space == "input":
        found.layer = req.mask_input or (names[0] if names else "input")
    return found


def describe_layers_job(ctx: Any) -> list | str:
    """The ``"layers_info"`` job: the layer list, or a message saying why there is none."""
    from maskviewer.inference.probe import describe_layers

    try:
        return describe_layers(ctx.host)
    except MaskviewerError as exc:
        return str(exc)
