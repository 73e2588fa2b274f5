"""The input-space methods of :mod:`maskviewer.inference.attribution`: Saliency, SmoothGrad, IG.

Each runs one traced gradient pass (the gradient of every row's class score with respect to
one input, TensorFlow or JAX), reduced on the device, over batches of rows: the images
themselves (Saliency), an image's noisy copies (SmoothGrad) or the points on its path from the
baseline (IG). A short last batch is padded with weight-0 rows so that every batch reuses one
trace. SmoothGrad and IG first run a forward pass on the clean images for their classes and
scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from maskviewer.inference.attribution import (
    AttributionBatch,
    AttributionError,
    AttributionOptions,
    check_classes,
    class_array,
    ig_points,
    smooth_noise,
)
from maskviewer.inference.backend import backend_name
from maskviewer.inference.cam import batch_class_score, select_output
from maskviewer.inference.input_parts import input_part, map_parts, replace_part


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """``x`` (``(H, W)`` or ``(H, W, C)``) blurred over its first two axes (reflected edges)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-6)) ** 2)
    k /= k.sum()
    out = np.asarray(x, np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="symmetric" if out.shape[axis] > r else "edge")
        moved = np.moveaxis(padded, axis, -1)
        windows = np.lib.stride_tricks.sliding_window_view(moved, 2 * r + 1, axis=-1)
        out = np.moveaxis(windows @ k, -1, axis)
    return out.astype(np.float32)


class InputAttribution:
    """Saliency, SmoothGrad or Integrated Gradients of one output (see the package docs)."""

    space = "input"

    def __init__(self, probe: Any, method: str, *, output: str | None, options: AttributionOptions,
                 output_keys: list[str], compiled: bool) -> None:
        from maskviewer.inference.probe import compile_function

        self.probe, self.method, self.output = probe, method, output
        self.options, self.output_keys = options, output_keys
        self.output_name: str | None = None
        self.n_classes: int | None = None
        self._noise: np.ndarray | None = None
        #: how the pass reduces its rows' gradients: per row, or their weighted (|g|) sum
        self.mode = {"saliency": "rows", "smoothgrad": "abs", "ig": "signed"}[method]
        grad = self._jax_grad if backend_name() == "jax" else self._tf_grad
        self._grad: Callable = compile_function(grad) if compiled else grad
        self._forward: Callable = compile_function(self._score_pass) if compiled else self._score_pass

    # -- the traced passes ------------------------------------------------------------------------

    def _select(self, outputs: Any, classes: Any) -> tuple[Any, Any]:
        name, y = select_output(outputs, self.output_keys, self.output)
        scores, chosen, self.n_classes = batch_class_score(y, classes)
        self.output_name = name
        return scores, chosen

    def _score_pass(self, inputs: Any, classes: Any) -> tuple[Any, Any]:
        _, outputs = self.probe.forward(inputs, [])
        return self._select(outputs, classes)

    def _reduce(self, g: Any, weights: Any) -> Any:
        from keras import ops

        g = ops.cast(g, "float32")
        if self.mode == "rows":
            return ops.max(ops.abs(g), axis=-1) if len(g.shape) == 4 else ops.abs(g)
        w = ops.reshape(ops.cast(weights, "float32"), (-1,) + (1,) * (len(g.shape) - 1))
        return ops.sum(w * (ops.abs(g) if self.mode == "abs" else g), axis=0)

    def _no_gradient(self) -> AttributionError:
        return AttributionError(f"The output {self.output_name!r} does not depend on this input (no gradient flows back to it).")

    def _tf_grad(self, inputs: Any, classes: Any, weights: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        key, x = input_part(inputs, self.options.input)
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, outputs = self.probe.forward(replace_part(inputs, key, x), [])
            scores, chosen = self._select(outputs, classes)
        g = tape.gradient(scores, x)  # of the summed scores: each row's own gradient
        if g is None:
            raise self._no_gradient()
        return self._reduce(g, weights), scores, chosen

    def _jax_grad(self, inputs: Any, classes: Any, weights: Any) -> tuple[Any, Any, Any]:
        import jax
        import jax.numpy as jnp

        key, x = input_part(inputs, self.options.input)

        def total(xx: Any) -> tuple[Any, tuple]:
            _, outputs = self.probe.forward(replace_part(inputs, key, xx), [])
            scores, chosen = self._select(outputs, classes)
            return jnp.sum(scores), (scores, chosen)

        g, (scores, chosen) = jax.grad(total, has_aux=True)(jnp.asarray(x))
        return self._reduce(g, weights), scores, chosen

    # -- a call -------------------------------------------------------------------------------------

    def __call__(self, inputs: Any, class_index: int | Sequence[int] | None = None,
                 check: Callable[[], None] | None = None) -> AttributionBatch:
        from keras import ops

        self._check = check or (lambda: None)
        host = map_parts(inputs, lambda t: np.asarray(ops.convert_to_numpy(t)))
        key, x = input_part(host, self.options.input)
        if not np.issubdtype(x.dtype, np.floating):
            raise AttributionError(f"The input is {x.dtype}, not floating point: it has no gradient.")
        if x.ndim not in (3, 4):
            raise AttributionError(
                f"{self.method}: the input has shape {x.shape[1:]}, not an image (H, W, C), so there is no map over it."
            )
        wanted = class_array(len(x), class_index)
        check_classes(wanted, self.n_classes)
        if self.method == "saliency":
            maps, scores, classes = self._saliency(host, wanted)
        else:
            scores, classes = (np.asarray(ops.convert_to_numpy(t)) for t in self._forward(host, wanted))
            check_classes(wanted, self.n_classes)
            run = self._smoothgrad if self.method == "smoothgrad" else self._integrated
            maps = np.stack([run(host, key, i, classes[i]) for i in range(len(x))])
        return AttributionBatch(
            maps=maps.astype(np.float32), scores=np.asarray(scores, np.float32),
            classes=np.asarray(classes).astype(np.int64), space="input", method=self.method,
            output=str(self.output_name),
        )

    def _saliency(self, host: Any, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from keras import ops

        n, size = len(wanted), int(self.options.batch)
        parts = []
        for start in range(0, n, size):
            rows = map_parts(host, lambda t, s=start: t[s : s + size])
            weights = np.ones(min(size, n - start), np.float32)
            parts.append([np.asarray(ops.convert_to_numpy(t)) for t in self._grad(rows, wanted[start : start + size], weights)])
        check_classes(wanted, self.n_classes)
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    def _rows(self, host: Any, key: Any, i: int, rows: np.ndarray, weights: np.ndarray, cls: int) -> np.ndarray:
        """The weighted reduction of ``rows`` (image ``i``'s target input, changed), in padded batches."""
        from keras import ops

        size = min(int(self.options.batch), len(rows))
        total = None
        for start in range(0, len(rows), size):
            self._check()
            chunk, w = rows[start : start + size], weights[start : start + size]
            if len(chunk) < size:  # pad with weight-0 rows: one traced shape for every batch
                fill = size - len(chunk)
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fill, axis=0)])
                w = np.concatenate([w, np.zeros(fill, np.float32)])
            others = map_parts(host, lambda t: np.repeat(t[i : i + 1], size, axis=0), skip=key)
            part = self._grad(replace_part(others, key, chunk), np.full(size, cls, np.int32), w)[0]
            part = np.asarray(ops.convert_to_numpy(part))
            total = part if total is None else total + part
        assert total is not None
        return total

    def _smoothgrad(self, host: Any, key: Any, i: int, cls: int) -> np.ndarray:
        _, x = input_part(host, key)
        n = int(self.options.smooth_samples)
        xi = x[i].astype(np.float32)
        sigma = float(self.options.smooth_noise) * float(xi.max() - xi.min())
        shape = (n, *xi.shape)
        if self._noise is None or self._noise.shape != shape:  # the same for every image and call
            self._noise = smooth_noise(int(self.options.seed), shape)
        noise = self._noise
        total = self._rows(host, key, i, xi[None] + sigma * noise, np.full(n, 1.0 / n, np.float32), cls)
        return total.max(axis=-1) if total.ndim == 3 else total

    def baseline(self, x: np.ndarray, i: int = 0) -> np.ndarray:
        """IG's baseline for image ``i``, ``x`` (``(H, W[, C])``, model units)."""
        b = self.options.ig_baseline
        if isinstance(b, str):
            if b == "black":
                return np.zeros_like(x, np.float32)
            return gaussian_blur(x, 0.05 * max(x.shape[:2]))
        arr = np.asarray(b, np.float32)
        if arr.ndim == x.ndim + 1:  # one per image
            arr = arr[min(i, len(arr) - 1)]
        try:
            return np.broadcast_to(arr, x.shape).astype(np.float32)
        except ValueError:
            raise AttributionError(f"The baseline has shape {arr.shape}; the input is {x.shape}.") from None

    def _integrated(self, host: Any, key: Any, i: int, cls: int) -> np.ndarray:
        _, x = input_part(host, key)
        xi = x[i].astype(np.float32)
        base = self.baseline(xi, i)
        alphas, weights = ig_points(int(self.options.ig_steps), self.options.ig_rule)
        rows = base[None] + alphas.reshape((-1,) + (1,) * xi.ndim) * (xi - base)[None]
        attributions = (xi - base) * self._rows(host, key, i, rows, weights, cls)
        return attributions.sum(axis=-1) if attributions.ndim == 3 else attributions
