"""Thresholding a float map: a cached histogram, automatic methods, binarisation, fast preview.

A model output (a sigmoid mask, a reconstruction, an activation) is a float map; the user
picks a threshold and sees the 0/1 result. Everything that does not depend on the threshold is
computed once in :class:`ThresholdCache` (sorted finite values, the histogram scikit-image would
compute, per-pixel display codes); a threshold change then costs microseconds to a few
milliseconds, whatever the map's size.

Conventions
-----------
- Foreground is ``x > t`` (scikit-image's ``image > threshold``); inverted polarity is the
  complement for ordered values, ``x <= t``.
- NaN is background in both polarities (it compares false). ``+inf`` is foreground for any finite
  threshold, ``-inf`` only in inverted polarity. Non-finite values are counted and reported
  separately and never enter the histogram or the automatic methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Automatic methods, in the order the UI lists them (all from :mod:`skimage.filters`).
METHODS = ("otsu", "li", "yen", "triangle", "mean", "isodata")
METHOD_LABELS = {
    "otsu": "Otsu",
    "li": "Li",
    "yen": "Yen",
    "triangle": "Triangle",
    "mean": "Mean",
    "isodata": "Isodata",
}
#: Methods computed from the cached histogram (scikit-image's ``hist=`` argument); the others
#: need the values themselves.
HISTOGRAM_METHODS = ("otsu", "yen", "isodata")
NBINS = 256  # scikit-image's default, so cached and from-scratch results agree

# Display codes: bins 0..DISPLAY_BINS-1 quantise the finite range; the rest are reserved.
DISPLAY_BINS = 251
FINE_LEVELS = 65536  # first quantisation level count, before balancing into display bins
CODE_NAN = 251
CODE_POSINF = 252
CODE_NEGINF = 253
CODE_PATCH = 254  # pixel of the bin holding the threshold whose value is > t
CODE_HIDDEN = 255  # not part of this layer (see ThresholdCache.add_layer)


def binarise(values: np.ndarray, threshold: float, invert: bool = False) -> np.ndarray:
    """The exact binary mask of ``values`` at ``threshold``.

    Parameters
    ----------
    values : ndarray
        A float map of any shape.
    threshold : float
        Pixels above it are foreground.
    invert : bool
        Inverted polarity: pixels at or below the threshold are foreground.

    Returns
    -------
    ndarray of bool
        ``values > threshold`` (or ``values <= threshold``); NaN is False in both.
    """
    v = np.asarray(values)
    if v.dtype.kind == "f":
        threshold = floor_threshold(threshold, v.dtype)[()]
    else:
        threshold = np.float64(threshold)
    return np.less_equal(v, threshold) if invert else np.greater(v, threshold)


def as_float_map(values: np.ndarray) -> np.ndarray:
    """``values`` as a float array (float32 unless already float64): what the methods see."""
    v = np.asarray(values)
    if v.dtype == np.float64 or v.dtype == np.float32:
        return v
    return v.astype(np.float32)


@dataclass(frozen=True)
class NonFinite:
    """How many NaN, +inf and -inf values a map holds."""

    nan: int = 0
    posinf: int = 0
    neginf: int = 0

    @property
    def total(self) -> int:
        return self.nan + self.posinf + self.neginf

    def describe(self) -> str:
        """A short sentence for the UI, or ``""`` when every value is finite."""
        if self.total == 0:
            return ""
        parts = [
            f"{n:,} {name}"
            for n, name in ((self.nan, "NaN"), (self.posinf, "+inf"), (self.neginf, "−inf"))
            if n
        ]
        return (
            f"{', '.join(parts)} value(s), left out of the histogram and the automatic "
            "thresholds (NaN counts as background, +inf as foreground)."
        )


def floor_threshold(threshold, dtype) -> np.ndarray:
    """The largest value of ``dtype`` at or below ``threshold`` (elementwise).

    For values ``x`` of that dtype, ``x > t`` is exactly ``x > floor_threshold(t)``: comparing
    in the map's own dtype (fast, no float64 copy of the map) without rounding the threshold up
    past a pixel.
    """
    t = np.asarray(threshold, dtype=np.float64)
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return t
    with np.errstate(over="ignore"):
        d = t.astype(dtype)
    return np.where(d.astype(np.float64) > t, np.nextafter(d, dtype.type(-np.inf)), d)


def _balanced_codes(fine_hist: np.ndarray) -> np.ndarray:
    """A monotone map of fine levels onto display bins of similar pixel counts (uint8)."""
    start = np.cumsum(fine_hist) - fine_hist
    total = max(int(fine_hist.sum()), 1)
    for parts in (200, 160, 120, 80, 40, 10, 1):
        target = total / parts
        window = np.floor(start / target)
        crowded = fine_hist > target
        new = np.zeros(fine_hist.size, dtype=bool)
        new[1:] = (window[1:] != window[:-1]) | crowded[1:] | crowded[:-1]
        codes = np.cumsum(new)
        if codes[-1] < DISPLAY_BINS:
            return codes.astype(np.uint8)
    raise AssertionError("unreachable: one part always fits")


class SortedValues:
    """The finite values of a map, sorted, plus its non-finite counts.

    Counting the pixels above any threshold is then a binary search: exact, and O(log n).
    """

    def __init__(self, values: np.ndarray) -> None:
        v = np.asarray(values).ravel()
        finite = np.isfinite(v)
        if finite.all():
            self.nonfinite = NonFinite()
            self.sorted = np.sort(v)
        else:
            nan = int(np.count_nonzero(np.isnan(v)))
            posinf = int(np.count_nonzero(v == np.inf))
            self.nonfinite = NonFinite(nan, posinf, int(v.size - finite.sum()) - nan - posinf)
            self.sorted = np.sort(v[finite])
        self.size = int(v.size)

    @property
    def n_finite(self) -> int:
        return int(self.sorted.size)

    def count_positive(self, thresholds, invert: bool = False) -> np.ndarray:
        """How many pixels :func:`binarise` makes foreground at each threshold (int64 array)."""
        t = np.asarray(thresholds, dtype=np.float64)
        at_or_below = np.searchsorted(
            self.sorted, floor_threshold(t, self.sorted.dtype), side="right"
        ).astype(np.int64)
        nf = self.nonfinite
        if invert:
            return at_or_below + np.where(t >= np.inf, nf.posinf, 0) + nf.neginf
        return (self.n_finite - at_or_below) + np.where(t < np.inf, nf.posinf, 0)


def histogram_edges(lo, hi, dtype, nbins: int = NBINS) -> np.ndarray:
    """Bin edges exactly as ``numpy.histogram(values, nbins)`` (and scikit-image) make them."""
    lo, hi = dtype.type(lo), dtype.type(hi)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, nbins + 1, endpoint=True, dtype=np.result_type(lo, hi))


class ThresholdCache:
    """Everything about a float map that does not depend on the threshold.

    Parameters
    ----------
    values : ndarray
        A 2-D float map (other dtypes are converted with :func:`as_float_map`).
    nbins : int
        Histogram bins for the display and the histogram-based methods.
    display : bool
        Also build the per-pixel display codes for the live preview (:meth:`set_threshold`).
    check : callable, optional
        Called between the expensive steps; raise from it to abandon the build.

    Attributes
    ----------
    values : ndarray
        The float map.
    counts : SortedValues
        Sorted finite values and non-finite counts.
    lo, hi : float
        Range of the finite values (0, 1 when there are none).
    hist, edges, centers : ndarray
        The histogram of the finite values, equal to
        ``skimage.exposure.histogram(finite, nbins)`` (counts, and centres from ``edges``).
    codes : ndarray of uint8 or None
        Per-pixel display code: the display bin (``0 .. DISPLAY_BINS-1``) of a finite value,
        or one of the reserved ``CODE_*`` values. Shown through a 256-entry lookup table.
    """

    def __init__(
        self,
        values: np.ndarray,
        nbins: int = NBINS,
        display: bool = True,
        check: Callable[[], None] | None = None,
    ) -> None:
        check = check or (lambda: None)
        self.values = np.ascontiguousarray(as_float_map(values))
        if self.values.ndim != 2:
            raise ValueError(f"expected a 2-D map, got shape {self.values.shape}")
        self.nbins = int(nbins)
        self.counts = SortedValues(self.values)
        check()
        s = self.counts.sorted
        dtype = self.values.dtype
        if s.size:
            self.lo, self.hi = float(s[0]), float(s[-1])
        else:
            self.lo, self.hi = 0.0, 1.0
        self.edges = histogram_edges(self.lo, self.hi, dtype, self.nbins)
        self.centers = (self.edges[:-1] + self.edges[1:]) / 2.0
        # numpy.histogram's bins: [e_j, e_j+1), the last one closed; from the sorted values
        below = np.searchsorted(s, self.edges[:-1], side="left")
        self.hist = np.diff(np.append(below, s.size)).astype(np.int64)
        self.codes: np.ndarray | None = None
        self._layers: list[np.ndarray] = []
        self._patch: tuple[int, np.ndarray] | None = None  # (bin, flat pixel indices)
        self.mixed_bin: int | None = None
        if display:
            self._build_display(check)

    # -- automatic thresholds -------------------------------------------------------------------

    @property
    def constant(self) -> bool:
        """True when all finite values are equal (or there are none)."""
        return self.counts.n_finite == 0 or self.lo == self.hi

    def finite_values(self) -> np.ndarray:
        """The finite values in the map's order (the map itself when all are finite)."""
        if self.counts.nonfinite.total == 0:
            return self.values
        return self.values[np.isfinite(self.values)]

    def threshold(self, method: str, check: Callable[[], None] | None = None) -> float:
        """The threshold of an automatic method, as :mod:`skimage.filters` computes it.

        Otsu, Yen and Isodata use the cached histogram (microseconds); Li, Triangle and Mean
        need the finite values. ``check`` is called between Li's iterations (to cancel). For
        a constant map every method returns the constant (everything becomes background).

        Raises
        ------
        ValueError
            For an unknown method, or a map without finite values.
        """
        from skimage import filters

        if method not in METHODS:
            raise ValueError(f"Unknown threshold method {method!r}; choose one of {', '.join(METHODS)}.")
        if self.counts.n_finite == 0:
            raise ValueError("The map has no finite values: there is nothing to threshold.")
        if self.constant:
            # scikit-image returns the value (Otsu, Li, Triangle), a value below it (Yen), its
            # float mean, or fails (Isodata); the one sensible answer is the value itself
            return self.lo
        hist = (self.hist, self.centers)
        values = self.finite_values()
        with np.errstate(divide="ignore", invalid="ignore"):  # skimage's log(0) on sparse bins
            if method == "otsu":
                return float(filters.threshold_otsu(hist=hist))
            if method == "yen":
                return float(filters.threshold_yen(hist=hist))
            if method == "isodata":
                return float(filters.threshold_isodata(hist=hist))
            if method == "li":
                cb = (lambda _t: check()) if check is not None else None
                return float(filters.threshold_li(values, iter_callback=cb))
            if method == "triangle":
                return float(filters.threshold_triangle(values, nbins=self.nbins))
            return float(filters.threshold_mean(values))

    # -- live preview ---------------------------------------------------------------------------

    def _build_display(self, check: Callable[[], None]) -> None:
        # Two-level quantisation: 65536 even levels over the finite range, then a monotone map
        # of those onto at most DISPLAY_BINS display bins holding similar pixel counts, with
        # every crowded level (a saturated 0.0 or 1.0, say) in a bin of its own. The bin that
        # straddles a threshold, the only one patched per slider move, then stays small.
        v = self.values
        span = self.hi - self.lo
        scale = FINE_LEVELS / span if span > 0 else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            if np.isfinite(scale) and np.isfinite(np.float32(span)):
                q = (v.astype(np.float32, copy=False) - np.float32(self.lo)) * np.float32(scale)
            else:  # a range too wide for float32 arithmetic
                q = (v.astype(np.float64) - self.lo) * scale
            np.minimum(q, FINE_LEVELS - 1, out=q)
            np.maximum(q, 0, out=q)
            fine = q.astype(np.uint16)
        del q
        finite = None if self.counts.nonfinite.total == 0 else np.isfinite(v)
        fine_hist = np.bincount(
            (fine if finite is None else fine[finite]).ravel(), minlength=FINE_LEVELS
        )
        check()
        codes = _balanced_codes(fine_hist)[fine]
        del fine
        if finite is not None:
            codes[np.isnan(v)] = CODE_NAN
            codes[v == np.inf] = CODE_POSINF
            codes[v == -np.inf] = CODE_NEGINF
        check()
        # the codes are a monotone function of the value, so each bin's pixels form a
        # contiguous run of sorted values: the bins' value ranges come from the sorted array
        flat = codes.ravel()
        self._order = np.argsort(flat, kind="stable").astype(np.int32 if flat.size < 2**31 else np.int64)
        check()
        self._offsets = np.zeros(257, dtype=np.int64)
        np.cumsum(np.bincount(flat, minlength=256), out=self._offsets[1:])
        n = np.diff(self._offsets[: DISPLAY_BINS + 1])
        starts = self._offsets[:DISPLAY_BINS]
        filled = n > 0
        s = self.counts.sorted
        self._bin_count = n
        self._bin_min = np.full(DISPLAY_BINS, np.inf)
        self._bin_max = np.full(DISPLAY_BINS, -np.inf)
        self._bin_min[filled] = s[starts[filled]]
        self._bin_max[filled] = s[starts[filled] + n[filled] - 1]
        self.codes = codes

    def add_layer(self, mask: np.ndarray) -> np.ndarray:
        """A copy of :attr:`codes` hidden (``CODE_HIDDEN``) outside ``mask``, kept in step.

        Used to colour the pixels inside and outside a reference differently (TP/FP/FN).
        """
        if self.codes is None:
            raise ValueError("built without display codes")
        layer = np.where(mask, self.codes, np.uint8(CODE_HIDDEN)).astype(np.uint8)
        self._layers.append(layer)
        return layer

    def clear_layers(self) -> None:
        self._layers = []

    def set_threshold(self, threshold: float) -> np.ndarray:
        """Move the live preview to ``threshold``; returns ``above`` (bool per display bin).

        ``above[j]`` says that every pixel of display bin ``j`` is above the threshold. The
        one bin that straddles it (:attr:`mixed_bin`, if any) is split exactly: its pixels
        above the threshold get ``CODE_PATCH`` in :attr:`codes` and every layer. Cost: the
        size of that bin, not of the map.
        """
        if self.codes is None:
            raise ValueError("built without display codes")
        t = float(threshold)
        above = self._bin_min > t
        mixed = np.flatnonzero((self._bin_count > 0) & (self._bin_min <= t) & (self._bin_max > t))
        k = int(mixed[0]) if mixed.size else None
        codes = self.codes.ravel()
        layers = [layer.ravel() for layer in self._layers]
        if self._patch is not None:
            old_k, old_idx = self._patch
            codes[old_idx] = old_k
            for a in layers:
                a[old_idx] = np.where(a[old_idx] == CODE_HIDDEN, CODE_HIDDEN, old_k)
            self._patch = None
        if k is not None:
            idx = self._order[self._offsets[k] : self._offsets[k + 1]]
            idx = idx[self.values.ravel()[idx] > floor_threshold(t, self.values.dtype)[()]]
            codes[idx] = CODE_PATCH
            for a in layers:
                a[idx] = np.where(a[idx] == CODE_HIDDEN, CODE_HIDDEN, CODE_PATCH)
            self._patch = (k, idx)
        self.mixed_bin = k
        return above

    def binary_lut(
        self,
        threshold: float,
        invert: bool,
        on: tuple[int, ...],
        off: tuple[int, ...],
        nan: tuple[int, ...] | None = None,
        above: np.ndarray | None = None,
    ) -> np.ndarray:
        """A ``(256, 4)`` uint8 lookup table showing :attr:`codes` as the binary mask.

        Call after :meth:`set_threshold` (pass its result as ``above`` to save a step). The
        table reproduces :func:`binarise` exactly, pixel for pixel.
        """
        if above is None:
            above = self._bin_min > float(threshold)
        on_c, off_c = np.asarray(on, np.uint8), np.asarray(off, np.uint8)
        fg = np.zeros(256, dtype=bool)
        fg[:DISPLAY_BINS] = above
        fg[CODE_PATCH] = True
        fg[CODE_POSINF] = float(threshold) < np.inf
        if invert:
            fg[:DISPLAY_BINS] = ~fg[:DISPLAY_BINS]
            fg[CODE_PATCH] = False
            fg[CODE_POSINF] = not fg[CODE_POSINF]
            fg[CODE_NEGINF] = True
        lut = np.where(fg[:, None], on_c, off_c).astype(np.uint8)
        if nan is not None:
            lut[CODE_NAN] = nan
        lut[CODE_HIDDEN] = 0
        return lut

    def continuous_lut(self, colours: np.ndarray, alpha: int = 255) -> np.ndarray:
        """A ``(256, 4)`` lookup table showing :attr:`codes` as the continuous map.

        ``colours`` is an ``(n, 3)`` or ``(n, 4)`` colour map spread over the finite range.
        """
        colours = np.asarray(colours, dtype=np.uint8)
        n = colours.shape[0]
        # each display bin takes the colour of the middle of its values (bins are not evenly
        # spaced in value, so this keeps the colour scale linear)
        filled = self._bin_count > 0
        mid = np.full(DISPLAY_BINS, self.lo)
        mid[filled] = (self._bin_min[filled] + self._bin_max[filled]) / 2
        span = self.hi - self.lo
        frac = (mid - self.lo) / span if span > 0 else np.zeros(DISPLAY_BINS)
        pos = np.clip(np.round(frac * (n - 1)), 0, n - 1).astype(int)
        lut = np.zeros((256, 4), dtype=np.uint8)
        lut[:DISPLAY_BINS, : colours.shape[1]] = colours[pos]
        if colours.shape[1] == 3:
            lut[:DISPLAY_BINS, 3] = alpha
        if self.mixed_bin is not None:
            lut[CODE_PATCH] = lut[self.mixed_bin]
        lut[CODE_POSINF] = lut[DISPLAY_BINS - 1]
        lut[CODE_NEGINF] = lut[0]
        lut[CODE_NAN] = (255, 0, 255, alpha)  # NaN stands out
        lut[CODE_HIDDEN] = 0
        return lut

