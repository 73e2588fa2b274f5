"""Deletion and insertion curves: how faithful a saliency map is to the model (numpy only).

Petsiuk et al. 2018 (RISE): order the input's pixels by the map (upsampled to the input's
resolution, most salient first), then

- **deletion**: replace them, in that order, with a baseline (black, a blurred copy of the
  input or its mean colour) in ``steps`` equal steps, scoring the class after each step;
  a faithful map makes the score fall fast, so a *lower* area under the curve is better;
- **insertion**: start from the baseline (a blurred copy by default) and put the pixels
  back in that order; a faithful map makes the score rise fast, so a *higher* area is better.

The area is the trapezoid rule over the fraction of pixels changed, 0..1. This module only
makes the step inputs (a generator of bounded batches) and integrates the scores; the model
runs in :mod:`maskviewer.inference.faithfulness`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.heatmap import upsample

MODES = ("deletion", "insertion")
#: what removed pixels become: zeros of the model input, a blurred copy, the per-channel mean
BASELINES = ("black", "blur", "mean")
#: the baseline each mode uses unless one is chosen (as in RISE)
DEFAULT_BASELINES = {"deletion": "black", "insertion": "blur"}
DEFAULT_STEPS = 32
DEFAULT_BATCH = 16


@dataclass
class Curve:
    """One deletion or insertion curve.

    Attributes
    ----------
    mode : str
        ``"deletion"`` or ``"insertion"``.
    fractions : ndarray
        ``(steps + 1,)`` float64: the fraction of pixels removed (or inserted), 0..1.
    scores : ndarray
        ``(steps + 1,)`` float64: the class score after each step.
    auc : float
        The area under the curve (trapezoid over ``fractions``).
    baseline : str
        What the removed pixels became (one of :data:`BASELINES`).
    """

    mode: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float
    baseline: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: the manifest's record of the curve."""
        return {
            "mode": self.mode, "baseline": self.baseline, "auc": float(self.auc),
            "fractions": [float(f) for f in self.fractions], "scores": [float(s) for s in self.scores],
        }


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of an ``(H, W)`` or ``(H, W, C)`` array (edges reflected)."""
    a = np.asarray(x, dtype=np.float32)
    if sigma <= 0:
        return a.copy()
    radius = max(1, int(3.0 * sigma + 0.5))  # as scipy.ndimage (truncate 3)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if n > 1 else "edge")
        acc = np.zeros_like(out)
        for k, w in enumerate(kernel):
            acc += w * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def default_blur_sigma(height: int, width: int) -> float:
    """The blur of the ``"blur"`` baseline: 1/16 of the longer side (14 pixels at 224²)."""
    return max(1.0, max(height, width) / 16.0)


def baseline_input(x: np.ndarray, kind: str, blur_sigma: float | None = None) -> np.ndarray:
    """The baseline of one model input ``(H, W[, C])``, in the input's own units.

    ``"black"`` is zeros (black for inputs scaled to 0..1 or 0..255), ``"mean"`` each
    channel's mean value, ``"blur"`` a Gaussian blur (:func:`default_blur_sigma` unless given).
    """
    a = np.asarray(x, dtype=np.float32)
    if kind == "black":
        return np.zeros_like(a)
    if kind == "mean":
        axes = (0, 1)
        return np.broadcast_to(a.mean(axis=axes, keepdims=True), a.shape).astype(np.float32)
    if kind == "blur":
        sigma = default_blur_sigma(a.shape[0], a.shape[1]) if blur_sigma is None else float(blur_sigma)
        return gaussian_blur(a, sigma)
    raise ValueError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")


def pixel_ranks(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each input pixel's place in the order of the map, 0 for the most salient: ``(H, W)`` int.

    The map is upsampled (bilinear, as it is drawn) to ``height × width`` first; equal values
    keep reading order (a stable sort), non-finite values come last.
    """
    s = np.asarray(saliency, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"A saliency map is 2-D (h, w), not of shape {s.shape}.")
    if s.shape != (height, width):
        s = upsample(s, height, width)
    flat = np.nan_to_num(s.reshape(-1).astype(np.float64), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    order = np.argsort(-flat, kind="stable")
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(height, width)


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """How many pixels are changed after each of ``steps`` equal steps: ``(steps + 1,)``, 0..n."""
    if steps < 1:
        raise ValueError("A curve needs at least one step.")
    return np.round(np.linspace(0, n_pixels, steps + 1)).astype(np.int64)


def step_batches(
    x: np.ndarray, baseline: np.ndarray, ranks: np.ndarray, counts: np.ndarray, mode: str,
    batch: int = DEFAULT_BATCH,
) -> Iterator[np.ndarray]:
    """The step inputs, ``batch`` at a time: ``(b, H, W[, C])`` float32 arrays, in step order.

    Step ``k`` of a deletion is ``x`` with its ``counts[k]`` first pixels (by ``ranks``) taken
    from ``baseline``; of an insertion, ``baseline`` with those pixels taken from ``x``. Only
    one batch is held at a time, so memory stays bounded for any number of steps.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown curve {mode!r}; choose one of {', '.join(MODES)}.")
    a = np.asarray(x, dtype=np.float32)
    b = np.asarray(baseline, dtype=np.float32)
    first, second = (b, a) if mode == "deletion" else (a, b)  # chosen pixels come from `first`
    for start in range(0, len(counts), max(1, int(batch))):
        c = counts[start : start + batch]
        chosen = ranks[None, :, :] < c[:, None, None]  # (b, H, W)
        if a.ndim == 3:
            chosen = chosen[..., None]
        yield np.where(chosen, first[None], second[None]).astype(np.float32, copy=False)


def area_under_curve(fractions: np.ndarray, scores: np.ndarray) -> float:
    """The trapezoid rule over the fractions (0..1)."""
    f = np.asarray(fractions, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2.0))


def curve(
    score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, saliency: np.ndarray, mode: str,
    baseline: str | None = None, steps: int = DEFAULT_STEPS, batch: int = DEFAULT_BATCH,
    blur_sigma: float | None = None, progress: Callable[[int, int], None] | None = None,
) -> Curve:
    """The deletion or insertion curve of a map over one input.

    Parameters
    ----------
    score : callable
        ``score(batch) -> (b,)``: the class score of each step input (a batch of inputs shaped
        like ``x`` with a leading axis).
    x : ndarray
        The input the map explains, ``(H, W)`` or ``(H, W, C)``, in the model's units.
    saliency : ndarray
        The map, ``(h, w)``; upsampled to ``H × W`` to order the pixels.
    mode : str
        ``"deletion"`` or ``"insertion"``.
    baseline : str, optional
        One of :data:`BASELINES`; :data:`DEFAULT_BASELINES` by default.
    steps, batch : int
        Equal steps over all pixels; step inputs scored per call.
    progress : callable, optional
        ``progress(done, total)`` after each batch (it may raise to stop).
    """
    baseline = baseline or DEFAULT_BASELINES[mode]
    a = np.asarray(x, dtype=np.float32)
    h, w = a.shape[0], a.shape[1]
    ranks = pixel_ranks(saliency, h, w)
    counts = step_counts(h * w, steps)
    base = baseline_input(a, baseline, blur_sigma)
    scores: list[np.ndarray] = []
    for inputs in step_batches(a, base, ranks, counts, mode, batch):
        got = np.asarray(score(inputs), dtype=np.float64).reshape(-1)
        if got.shape[0] != inputs.shape[0]:
            raise ValueError(f"The score function gave {got.shape[0]} scores for {inputs.shape[0]} inputs.")
        scores.append(got)
        if progress is not None:
            progress(sum(len(s) for s in scores), len(counts))
    values = np.concatenate(scores)
    fractions = counts / float(h * w)
    return Curve(mode, fractions, values, area_under_curve(fractions, values), baseline)


def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """The Sobel gradient magnitude of an image (channels summed): a map that depends only on
    the input, never on a model, which a sanity check must therefore fail."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(axis=2)
    p = np.pad(a, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy).astype(np.float32)
