"""The Attention tool's work on the inference thread: what a request asks, what comes back.

Qt-free: the jobs import the attention code only when they run, so importing this module costs
nothing. One :class:`~maskviewer.inference.attention.AttentionCapture` is kept per probe.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import Cancelled, MaskviewerError
from maskviewer.core.mapping import Frame
from maskviewer.core.tokens import TokenGridError, TokenOverride

#: what the tool shows: key -> label
MODES = {
    "heads": "Per-head attention",
    "overview": "Heads × layers overview",
    "rollout": "Attention rollout",
    "attribution": "Class attribution (gradient-weighted rollout)",
}

_CAPTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class AttentionRequest:
    """A snapshot of what the panel asks for."""

    mode: str = "heads"
    layer: str | None = None
    token: int | None = None  # None: the class token (or the mean over tokens without one)
    fusion: str = "mean"
    discard: float = 0.0
    class_index: int | None = None
    output: str | None = None
    override: TokenOverride | None = None


@dataclass
class AttentionOutcome:
    """What a job sends back: the maps to draw, or a message saying why there are none.

    ``map`` is ``(grid_h, grid_w)`` for the image; ``tiles`` the small maps under the controls
    (``(heads, gh, gw)`` per head, or ``(layers * heads, gh, gw)`` for the overview, row-major by
    layer); ``rows``/``cols`` name the tiles' rows (layers) and columns (heads).
    """

    request: AttentionRequest
    frames: dict[str, Frame] = field(default_factory=dict)
    map: np.ndarray | None = None
    tiles: np.ndarray | None = None
    rows: list[str] = field(default_factory=list)
    cols: int = 0
    grid: Any = None
    classes: int | None = None
    score: float | None = None
    error: str = ""


def capture_of(host: Any) -> Any:
    """The (kept) attention capture of the loaded model."""
    from maskviewer.inference.attention import AttentionCapture
    from maskviewer.inference.probe import get_probe

    probe = get_probe(host)
    cap = _CAPTURES.get(probe)
    if cap is None:
        cap = AttentionCapture(probe)
        _CAPTURES[probe] = cap
    return cap


def list_attention_job(ctx: Any) -> list[tuple[str, int]] | str:
    """The ``"attention_info"`` job: ``(path, heads)`` of every attention layer, or why there are none."""
    try:
        cap = capture_of(ctx.host)
    except MaskviewerError as exc:
        return str(exc)
    return [(p, int(getattr(layer, "num_heads", 0) or 0)) for p, layer in cap.layers.items()]


def run_attention(ctx: Any, info: Any, build: Callable, req: AttentionRequest) -> AttentionOutcome:
    """The attention job, on the inference thread; what cannot be computed sets ``error``."""
    from maskviewer.inference import attention_maps as am

    ctx.require_model(info)
    out = AttentionOutcome(req)
    try:
        arrays, frames = build()
        out.frames = frames
        ctx.check()
        packed = ctx.host.pack_inputs(arrays)
        cap = capture_of(ctx.host)
        cap.probe.tokens.override = req.override
        if req.mode == "overview":
            paths, maps, out.grid = am.overview(cap, packed, req.token)
            out.tiles = maps.reshape(-1, *maps.shape[2:])
            out.rows, out.cols = paths, int(maps.shape[1])
            out.map = maps.mean(axis=1)[-1]
        elif req.mode == "rollout":
            res = am.rollout_maps(cap, packed, fusion=req.fusion, discard=req.discard, token=req.token)
            out.map, out.grid = res.maps[0], res.grid
        elif req.mode == "attribution":
            res = am.attribution_maps(
                cap, packed, class_index=req.class_index, output=req.output,
                output_keys=list(ctx.host.loaded.output_keys), token=req.token,
            )
            out.map, out.grid = res.maps[0], res.grid
            out.classes, out.score = int(res.classes[0]), float(res.scores[0])
        else:
            layer = req.layer if req.layer in cap.layers else (cap.paths() or [req.layer])[-1]
            res = am.head_maps(cap, packed, layer, req.token)
            out.map, out.tiles, out.grid = res.maps[0], res.heads[0], res.grid
            out.rows, out.cols = [layer], int(res.heads.shape[1])
    except Cancelled:
        raise
    except (MaskviewerError, TokenGridError) as exc:
        out.error = str(exc)
    except Exception as exc:  # keep the app going; say what failed
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        out.error = f"The attention could not be computed: {type(exc).__name__}: {first}"
    return out
