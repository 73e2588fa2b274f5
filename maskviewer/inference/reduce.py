"""Layer-output reductions computed with ``keras.ops`` on the device, and their host copies.

Reductions (mean or max over channels, top-k channels by mean, one channel, the grid) run before
anything is converted to numpy, so only what is displayed is copied; they are traceable, so a
compiled probe pass computes them in the same function. Import these names from
:mod:`maskviewer.inference.probe`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import InferenceError

#: reduction methods: maps for spatial layers ("full" returns the whole activation)
METHODS = ("mean", "max", "topk", "channel", "grid", "attention", "full")
#: the most channels a grid copies to the host (the top ones by score beyond that)
MAX_GRID_CHANNELS = 1024


class ProbeError(InferenceError):
    """A layer cannot be probed; the message says why and what to do."""


@dataclass(frozen=True)
class Reduction:
    """What to compute from a layer's output before it leaves the device.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`: ``"mean"``/``"max"`` over channels, ``"topk"`` (the ``k``
        channels with the highest score, their mean as the map), ``"channel"`` (channel
        ``channel``), ``"grid"`` (every channel, map = channel ``channel``), ``"attention"``
        (the single channel of an attention layer), ``"full"`` (the whole output).
    k : int
        Channels for ``"topk"``.
    channel : int
        The chosen channel.
    """

    method: str = "mean"
    k: int = 5
    channel: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown reduction {self.method!r}; choose one of {', '.join(METHODS)}.")


@dataclass
class LayerMaps:
    """One layer's reduced output as numpy (batch item 0).

    Attributes
    ----------
    path : str
        The layer's path (``"backbone/conv"``).
    shape : tuple
        The layer output's shape without the batch axis.
    spatial : bool
        ``(H, W, C)`` output; otherwise ``vector`` holds a 1-D summary.
    method : str
        The reduction that made it.
    map : ndarray or None
        ``(H, W)``: the map to draw over the image.
    maps : ndarray or None
        ``(N, H, W)``: tiles (grid: every channel; top-k: the k channels, best first).
    channels : ndarray or None
        The channel index of each tile in ``maps``.
    channel_means : ndarray or None
        ``(C,)``: every channel's mean over the whole map.
    rank_scores : ndarray or None
        ``(C,)``: what channels were ranked by (the means, or the means inside a mask).
    value_range : tuple of float
        The layer's min and max over all channels (for shared normalisation).
    vector : ndarray or None
        Non-spatial layers: the output (``(N,)``), or its mean over all axes but the last.
    full : ndarray or None
        ``"full"``: the whole output ``(H, W, C)`` (or any shape).
    notes : list of str
        Things the user should know (e.g. several outputs, only the first shown).
    tokens : TokenGrid or None
        For a ``(N, C)`` token layer: the grid its tokens were reshaped to (``shape`` is then
        the grid's ``(grid_h, grid_w, C)``).
    """

    path: str
    shape: tuple
    spatial: bool
    method: str
    map: np.ndarray | None = None
    maps: np.ndarray | None = None
    channels: np.ndarray | None = None
    channel_means: np.ndarray | None = None
    rank_scores: np.ndarray | None = None
    value_range: tuple[float, float] = (0.0, 0.0)
    vector: np.ndarray | None = None
    full: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    #: a token layer's grid (:class:`~maskviewer.core.tokens.TokenGrid`); None for others
    tokens: Any = None


# ---------------------------------------------------------------------------------------------
# Reductions (keras.ops: on the device, traceable)


def reduce_batch(x: Any, reduction: Reduction, weights: Any = None) -> dict[str, Any]:
    """Reduce a batched layer output for every batch item, on its device.

    Parameters
    ----------
    x : tensor
        ``(B, H, W, C)`` for spatial layers; anything else is summarised as a vector per item.
    reduction : Reduction
    weights : tensor, optional
        ``(H, W)`` weights in [0, 1] (a mask on the layer grid): channels are then ranked by
        their weighted mean instead of their mean.

    Returns
    -------
    dict of str to tensor
        Keys as the fields of :class:`LayerMaps` (``min``/``max`` for the value range), each
        with a leading batch axis.
    """
    from keras import ops

    x = as_float32(x)
    rank = len(x.shape)
    if rank != 4:
        return {"vector": _vector(x, rank)}
    out: dict[str, Any] = {"min": ops.min(x, axis=(1, 2, 3)), "max": ops.max(x, axis=(1, 2, 3))}
    means = ops.mean(x, axis=(1, 2))  # (B, C)
    out["channel_means"] = means
    scores = means if weights is None else _weighted_means(x, weights)
    out["rank_scores"] = scores
    out.update(_channel_maps(x, reduction, scores))
    return out


def as_float32(x: Any) -> Any:
    """``x`` in float32 when it is a narrower float (a mixed-precision layer's float16 or
    bfloat16): means over thousands of values summed in float16 are off by ~1e-4."""
    from keras import backend, ops

    if backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        return ops.cast(x, "float32")
    return x


def _vector(x: Any, rank: int) -> Any:
    """A non-spatial output as ``(B, N)``: as it is, or averaged over all axes but the last."""
    from keras import ops

    if rank == 1:
        return ops.reshape(x, (-1, 1))
    if rank == 2:
        return x
    return ops.mean(x, axis=tuple(range(1, rank - 1)))


def _weighted_means(x: Any, weights: Any) -> Any:
    """``(B, C)``: each channel's mean weighted by ``(H, W)`` mask weights."""
    from keras import ops

    w = ops.cast(ops.convert_to_tensor(weights), x.dtype)
    total = ops.maximum(ops.sum(w), ops.cast(1e-12, x.dtype))
    return ops.sum(x * w[None, :, :, None], axis=(1, 2)) / total


def _pick(x: Any, idx: Any) -> Any:
    """``(B, k, H, W)``: the channels ``idx`` (B, k) of each item of ``x`` (B, H, W, C)."""
    from keras import ops

    xt = ops.transpose(x, (0, 3, 1, 2))
    shape = ops.shape(xt)
    full = ops.broadcast_to(idx[:, :, None, None], (shape[0], idx.shape[1], shape[2], shape[3]))
    return ops.take_along_axis(xt, full, axis=1)


def _channel_maps(x: Any, reduction: Reduction, scores: Any) -> dict[str, Any]:
    """The map (and tiles, channels or the full output) the reduction's method asks for."""
    from keras import ops

    method = reduction.method
    c = int(x.shape[-1])
    out: dict[str, Any] = {}
    if method == "mean":
        out["map"] = ops.mean(x, axis=-1)
    elif method == "max":
        out["map"] = ops.max(x, axis=-1)
    elif method == "topk":
        k = max(1, min(int(reduction.k), c))
        _, idx = ops.top_k(scores, k)
        chosen = _pick(x, idx)
        out["map"] = ops.mean(chosen, axis=1)
        out["maps"] = chosen
        out["channels"] = idx
    elif method in ("channel", "attention"):
        out["map"] = x[:, :, :, reduction.channel if method == "channel" else 0]
    elif method == "grid":
        out["map"] = x[:, :, :, reduction.channel]
        if c > MAX_GRID_CHANNELS:
            _, idx = ops.top_k(scores, MAX_GRID_CHANNELS)
            out["maps"] = _pick(x, idx)
            out["channels"] = idx
        else:
            out["maps"] = ops.transpose(x, (0, 3, 1, 2))
    elif method == "full":
        out["full"] = x
    return out


def reduce_tensor(x: Any, reduction: Reduction, weights: Any = None) -> dict[str, Any]:
    """Reduce batch item 0 of a layer output on its device (see :func:`reduce_batch`)."""
    return {key: value[0] for key, value in reduce_batch(x[:1], reduction, weights).items()}


def _check_reduction(path: str, shape: tuple, reduction: Reduction) -> None:
    if len(shape) != 4:
        return
    c = shape[-1]
    if reduction.method in ("channel", "grid") and c is not None and not 0 <= reduction.channel < c:
        raise ProbeError(
            f"Layer {path} has {c} channels (0 to {c - 1}); channel {reduction.channel} does "
            "not exist. Pick a channel in that range."
        )
    if reduction.method == "attention" and c not in (None, 1):
        raise ProbeError(
            f"Layer {path} has {c} channels; an attention map needs a single-channel layer "
            "(e.g. a 1x1 sigmoid convolution). Choose another method or layer."
        )


def to_layer_maps(path: str, shape: tuple | None, method: str, reduced: dict[str, Any]) -> LayerMaps:
    """Copy a :func:`reduce_tensor` result to the host as a :class:`LayerMaps`.

    ``shape`` is the layer output's shape with the batch axis; when unknown (None, or None
    dims) it is read off the reduced arrays.
    """
    from keras import ops

    host = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in reduced.items()}
    spatial = "vector" not in host
    lm = LayerMaps(path=path, shape=(), spatial=spatial, method=method)
    for key in ("map", "maps", "channel_means", "rank_scores", "vector", "full"):
        if key in host:
            setattr(lm, key, host[key].astype(np.float32, copy=False))
    if "channels" in host:
        lm.channels = host["channels"].astype(np.int64)
    elif "maps" in host:
        lm.channels = np.arange(host["maps"].shape[0])
    if "min" in host:
        lm.value_range = (float(host["min"]), float(host["max"]))
    if shape is not None and all(d is not None for d in shape[1:]):
        lm.shape = tuple(int(d) for d in shape[1:])
    elif lm.full is not None:
        lm.shape = tuple(lm.full.shape)
    elif lm.map is not None and lm.channel_means is not None:
        lm.shape = (*lm.map.shape, len(lm.channel_means))
    elif lm.vector is not None:
        lm.shape = tuple(lm.vector.shape)
    return lm
