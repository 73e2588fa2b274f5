"""Occlusion (Zeiler & Fergus 2014) through :mod:`maskviewer.inference.attribution`, as Captum's
``Occlusion`` computes it: a window slides over the input (all channels at once) and is set to
the baseline (zeros in model units); each pixel's value is the mean, over the windows that cover
it, of ``f(x) - f(x with that window occluded)`` for the explained class (the output itself,
no softmax). The window is ``options.occlusion_window`` pixels (default: an eighth of the
input's shorter side), moved by ``options.occlusion_stride`` (default: half the window). Where
the stride does not fit, a last window is added flush with the far edge (Captum leaves those
pixels uncovered, at 0). The occluded inputs go through one traced forward pass,
``options.batch`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from maskviewer.inference.attribution import (
    AttributionBatch,
    AttributionError,
    check_classes,
    class_array,
)
from maskviewer.inference.input_parts import input_part, map_parts, replace_part


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where windows of ``window`` start along an axis of ``size`` (the last flush with the end)."""
    last = max(0, size - window)
    starts = list(range(0, last + 1, max(1, stride)))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion_geometry(h: int, w: int, window: int | None, stride: int | None) -> tuple[int, int, list[tuple[int, int]]]:
    """``(window, stride, [(top, left), ...])`` for an ``h`` × ``w`` input."""
    win = int(window) if window else max(1, round(min(h, w) / 8))
    win = min(win, h, w)
    step = int(stride) if stride else max(1, win // 2)
    return win, step, [(y, x) for y in window_starts(h, win, step) for x in window_starts(w, win, step)]


class OcclusionAttribution:
    """Occlusion of one output (see the module docs)."""

    space = "input"
    method = "occlusion"

    def __init__(self, probe: Any, *, output: str | None, options: Any, output_keys: list[str], compiled: bool) -> None:
        from maskviewer.inference.probe import compile_function

        self.probe, self.output, self.options, self.output_keys = probe, output, options, output_keys
        self.output_name: str | None = None
        self.n_classes: int | None = None
        # two traces: the images' own pass and the occluded batches' (one shape each)
        self._clean: Callable = compile_function(self._pass) if compiled else self._pass
        self._scores: Callable = compile_function(self._pass) if compiled else self._pass

    def _pass(self, inputs: Any, classes: Any) -> tuple[Any, Any]:
        from maskviewer.inference.cam import batch_class_score, select_output

        _, outputs = self.probe.forward(inputs, [])
        name, y = select_output(outputs, self.output_keys, self.output)
        scores, chosen, self.n_classes = batch_class_score(y, classes)
        self.output_name = name
        return scores, chosen

    def _run(self, inputs: Any, classes: np.ndarray, clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
        from keras import ops

        scores, chosen = (self._clean if clean else self._scores)(inputs, classes)
        return np.asarray(ops.convert_to_numpy(scores)), np.asarray(ops.convert_to_numpy(chosen))

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None,
                 check: Callable[[], None] | None = None) -> AttributionBatch:
        from keras import ops

        check = check or (lambda: None)
        host = map_parts(inputs, lambda t: np.asarray(ops.convert_to_numpy(t)))
        key, x = input_part(host, self.options.input)
        if x.ndim not in (3, 4):
            raise AttributionError(f"Occlusion: the input has shape {x.shape[1:]}, not an image (H, W, C).")
        wanted = class_array(len(x), class_index)
        check_classes(wanted, self.n_classes)
        scores, classes = self._run(host, wanted, clean=True)
        check_classes(wanted, self.n_classes)
        h, w = x.shape[1:3]
        win, _step, corners = occlusion_geometry(h, w, self.options.occlusion_window, self.options.occlusion_stride)
        size = min(int(self.options.batch), len(corners))
        maps = np.zeros((len(x), h, w), np.float32)
        for i in range(len(x)):
            total, count = np.zeros((h, w), np.float64), np.zeros((h, w), np.float64)
            others = map_parts(host, lambda t, i=i: np.repeat(t[i : i + 1], size, axis=0), skip=key)
            for start in range(0, len(corners), size):
                check()
                part = corners[start : start + size]
                rows = np.repeat(x[i : i + 1], size, axis=0)  # padded to one traced shape
                for r, (y0, x0) in enumerate(part):
                    rows[r, y0 : y0 + win, x0 : x0 + win] = 0
                got, _ = self._run(replace_part(others, key, rows), np.full(size, classes[i], np.int32))
                for r, (y0, x0) in enumerate(part):
                    total[y0 : y0 + win, x0 : x0 + win] += scores[i] - got[r]
                    count[y0 : y0 + win, x0 : x0 + win] += 1
            maps[i] = total / np.maximum(count, 1)
        return AttributionBatch(
            maps=maps, scores=scores.astype(np.float32), classes=classes.astype(np.int64), space="input",
            method="occlusion", output=str(self.output_name),
        )
