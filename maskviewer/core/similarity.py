"""How alike two saliency maps are: Spearman rank correlation and SSIM (numpy; SSIM by
scikit-image, imported when asked for).

The sanity check (Adebayo et al. 2018) compares the map of the trained model with the maps
of more and more randomised copies of it with both measures.
"""

from __future__ import annotations

import numpy as np


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties given their average rank (as ``scipy.stats.rankdata``)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    # the start of each run of equal values, and each value's run
    starts = np.concatenate([[True], sorted_v[1:] != sorted_v[:-1]])
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    ends = np.concatenate([first[1:], [v.size]])
    average = (first + ends + 1) / 2.0  # mean of ranks first+1 .. ends
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = average[run]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape (ties by average rank).

    NaN when either map is constant (its ranks have no spread), as ``scipy.stats.spearmanr``.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"The maps differ in size: {np.shape(a)} and {np.shape(b)}.")
    rx, ry = rank_average(x), rank_average(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt(np.dot(rx, rx) * np.dot(ry, ry))
    if denom == 0 or not np.isfinite(denom):
        return float("nan")
    return float(np.clip(np.dot(rx, ry) / denom, -1.0, 1.0))


def _unit(a: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(a, dtype=np.float64))
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two 2-D maps, each first scaled to 0..1 by its own range.

    scikit-image's ``structural_similarity`` with ``data_range=1`` and a window of 7 pixels
    (smaller, odd, for maps under 7 pixels a side); NaN for maps under 3 pixels a side.
    """
    from skimage.metrics import structural_similarity

    x, y = _unit(a), _unit(b)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"SSIM compares two 2-D maps of one size, not {np.shape(a)} and {np.shape(b)}.")
    side = min(x.shape)
    if side < 3:
        return float("nan")
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(x, y, data_range=1.0, win_size=win))
