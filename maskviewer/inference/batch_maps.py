"""Layer maps for a whole batch of images in one pass: the engine of the command-line export.

The window reduces one image's layer outputs with :func:`maskviewer.inference.probe.reduce_tensor`
(batch item 0). Exporting a folder runs the model on batches: the same reductions
(:func:`~maskviewer.inference.probe.reduce_batch`, which ``reduce_tensor`` wraps) run for every
batch item at once, on the device, inside one traced function together with the forward pass:
only the reduced maps are copied to the host. Item ``i`` of a batch equals what
the probe gives for that image alone (tests compare them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maskviewer.inference.probe import (
    LayerMaps,
    Reduction,
    compile_function,
    get_probe,
    reduce_batch,
)


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
            return {p: reduce_batch(self.probe.grid_view(p, captured[p], x), reduction) for p in self.paths}, outputs

        self._fn = compile_function(fn) if compiled else fn

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
        lm.tokens = self.probe.token_grid(path)
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
