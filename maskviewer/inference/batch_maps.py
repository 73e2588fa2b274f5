"""Layer maps for a whole batch of images in one pass: the engine of the command-line export.

The window reduces one image's layer outputs with :func:`maskviewer.inference.probe.reduce_tensor`
(batch item 0). Exporting a folder runs the model on batches, so here the same reductions are
computed for every batch item at once, on the device, inside one traced function together with
the forward pass: only the reduced maps are copied to the host. Item ``i`` of a batch equals what
the probe gives for that image alone (tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from maskviewer.inference.probe import MAX_GRID_CHANNELS, LayerMaps, Reduction, get_probe


def reduce_batch(x: Any, reduction: Reduction) -> dict[str, Any]:
    """Reduce a batched layer output for every item, as :func:`~maskviewer.inference.probe.reduce_tensor` does for one.

    Returns
    -------
    dict of str to tensor
        Keys as ``reduce_tensor``'s, each with a leading batch axis (``min``/``max``: ``(B,)``).
    """
    from keras import ops

    rank = len(x.shape)
    if rank != 4:
        if rank == 1:
            return {"vector": ops.reshape(x, (-1, 1))}
        if rank == 2:
            return {"vector": x}
        return {"vector": ops.mean(x, axis=tuple(range(1, rank - 1)))}
    out: dict[str, Any] = {"min": ops.min(x, axis=(1, 2, 3)), "max": ops.max(x, axis=(1, 2, 3))}
    means = ops.mean(x, axis=(1, 2))  # (B, C)
    out["channel_means"] = means
    out["rank_scores"] = means
    method = reduction.method
    c = int(x.shape[-1])

    def pick(idx: Any) -> Any:
        """``(B, k, H, W)``: the channels ``idx`` (B, k) of each item."""
        xt = ops.transpose(x, (0, 3, 1, 2))
        shape = ops.shape(xt)
        full = ops.broadcast_to(idx[:, :, None, None], (shape[0], idx.shape[1], shape[2], shape[3]))
        return ops.take_along_axis(xt, full, axis=1)

    if method == "mean":
        out["map"] = ops.mean(x, axis=-1)
    elif method == "max":
        out["map"] = ops.max(x, axis=-1)
    elif method == "topk":
        k = max(1, min(int(reduction.k), c))
        _, idx = ops.top_k(means, k)
        chosen = pick(idx)
        out["map"] = ops.mean(chosen, axis=1)
        out["maps"] = chosen
        out["channels"] = idx
    elif method in ("channel", "attention"):
        out["map"] = x[:, :, :, reduction.channel if method == "channel" else 0]
    elif method == "grid":
        out["map"] = x[:, :, :, reduction.channel]
        if c > MAX_GRID_CHANNELS:
            _, idx = ops.top_k(means, MAX_GRID_CHANNELS)
            out["maps"] = pick(idx)
            out["channels"] = idx
        else:
            out["maps"] = ops.transpose(x, (0, 3, 1, 2))
    elif method == "full":
        out["full"] = x
    return out


def _compile(fn: Callable) -> Callable:
    from maskviewer.inference.backend import backend_name

    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend_name() == "jax":
        import jax

        return jax.jit(fn)
    return fn


class BatchMapper:
    """Every requested layer's reduced map and the model's outputs for a batch, in one pass.

    Parameters
    ----------
    host : ModelHost
        Holds the loaded model (on this thread).
    paths : list of str
        Layers to reduce (may be empty: outputs only).
    reduction : Reduction
        The same for every layer.
    compiled : bool
        Trace the pass and the reductions into one function (retraced per batch shape).
    """

    def __init__(self, host: Any, paths: list[str], reduction: Reduction, compiled: bool = True) -> None:
        self.host = host
        self.probe = get_probe(host)
        self.paths = list(paths)
        self.reduction = reduction
        for p in self.paths:
            self.probe.layer(p)  # unknown paths fail here, with the probe's message

        def fn(x: Any) -> tuple[dict[str, Any], Any]:
            captured, outputs = self.probe.forward(x, self.paths)
            return {p: reduce_batch(captured[p], reduction) for p in self.paths}, outputs

        self._fn = _compile(fn) if compiled else fn

    def run(self, arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, LayerMaps]], dict[str, np.ndarray]]:
        """Run a batch (named inputs, batch axis first).

        Returns
        -------
        maps : list of dict
            Per batch item: layer path -> :class:`LayerMaps`.
        outputs : dict
            Output name -> ``(B, ...)`` numpy.
        """
        from keras import ops

        from maskviewer.inference.runner import explain_inference_error

        packed = self.host.pack_inputs(arrays)
        try:
            reduced, outs = self._fn(packed)
        except Exception as exc:
            raise explain_inference_error(exc, self.host.info, arrays) from exc
        outputs = self.host.unpack_outputs(outs)
        n = len(next(iter(arrays.values())))
        items: list[dict[str, LayerMaps]] = [{} for _ in range(n)]
        for path, parts in reduced.items():
            host_parts = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in parts.items()}
            for i in range(n):
                items[i][path] = self._layer_maps(path, host_parts, i)
        return items, outputs

    def _layer_maps(self, path: str, parts: dict[str, np.ndarray], i: int) -> LayerMaps:
        spatial = "vector" not in parts
        lm = LayerMaps(path=path, shape=(), spatial=spatial, method=self.reduction.method)
        for key in ("map", "maps", "channel_means", "rank_scores", "vector", "full"):
            if key in parts:
                setattr(lm, key, np.ascontiguousarray(parts[key][i], dtype=np.float32))
        if "channels" in parts:
            lm.channels = parts["channels"][i].astype(np.int64)
        elif "maps" in parts:
            lm.channels = np.arange(parts["maps"].shape[1])
        if "min" in parts:
            lm.value_range = (float(parts["min"][i]), float(parts["max"][i]))
        if lm.map is not None and lm.channel_means is not None:
            lm.shape = (*lm.map.shape, len(lm.channel_means))
        elif lm.full is not None:
            lm.shape = tuple(lm.full.shape)
        elif lm.vector is not None:
            lm.shape = tuple(lm.vector.shape)
        return lm
