"""Patch extraction with ``tf.image.extract_patches`` semantics, and what is done with patches.

Geometry (per axis, ``k`` the patch size, ``s`` the stride, ``r`` the rate, ``n`` the image size):

- a patch samples every ``r``-th pixel, so it spans ``e = (k - 1) * r + 1`` pixels;
- ``VALID`` keeps the patches fully inside: ``ceil((n - e + 1) / s)`` of them, the first at 0;
- ``SAME`` gives ``ceil(n / s)`` patches over an image zero-padded by
  ``max((out - 1) * s + e - n, 0)`` pixels in total, the smaller half before (top/left);
- patch ``i`` starts at ``i * s - pad_before``.

On top of the geometry: extraction (``(N, kh, kw, C)``, equal to ``tf.image.extract_patches``
reshaped), the batched preprocessing that turns patches into model inputs exactly as
:func:`maskviewer.core.mapping.prepare_input` would one at a time, presets, the combination of
per-patch probabilities, maps of a per-patch value over the image, and occlusion (each patch
greyed out in turn).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData, convert_channels
from maskviewer.core.mapping import InputMapping, _scale, prepare_input, spatial_shape
from maskviewer.core.predictions import looks_like_probabilities

PADDINGS = ("VALID", "SAME")
COMBINE_METHODS = ("mean", "max", "vote", "geometric")
COMBINE_LABELS = {
    "mean": "Mean of probabilities",
    "max": "Maximum probability",
    "vote": "Majority vote",
    "geometric": "Geometric mean",
}


class PatchSettingsError(MaskviewerError):
    """Patch settings that cannot be applied to this image (the message says what to change)."""


Pair = tuple[int, int]

#: bytes of float work per chunk when preparing many patches (fits a CPU's L2/L3 cache)
PREPARE_CHUNK_BYTES = 512 << 10


@dataclass(frozen=True)
class PatchSpec:
    """How patches are cut, as the arguments of ``tf.image.extract_patches``.

    Attributes
    ----------
    size : (int, int)
        Patch height and width in sampled pixels.
    stride : (int, int)
        Step between patch origins (rows, columns).
    rate : (int, int)
        Dilation: a patch samples every ``rate``-th pixel.
    padding : str
        ``"VALID"`` or ``"SAME"``.
    """

    size: Pair = (18, 18)
    stride: Pair = (10, 10)
    rate: Pair = (1, 1)
    padding: str = "VALID"

    @property
    def span(self) -> Pair:
        """Pixels a patch covers in the image, per axis: ``(k - 1) * rate + 1``."""
        return (
            (self.size[0] - 1) * self.rate[0] + 1,
            (self.size[1] - 1) * self.rate[1] + 1,
        )

    def describe(self) -> str:
        text = f"{self.size[0]}×{self.size[1]}, stride {_pair_text(self.stride)}"
        if self.rate != (1, 1):
            text += f", rate {_pair_text(self.rate)}"
        return f"{text}, {self.padding}"


def _pair_text(p: Pair) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}, {p[1]}"


@dataclass(frozen=True)
class PatchGrid:
    """The patches of one spec on an image of a given size.

    Patch ``n`` is at grid position ``(n // cols, n % cols)`` (row-major, as TF orders them).
    """

    spec: PatchSpec
    height: int
    width: int
    rows: int
    cols: int
    pad_top: int
    pad_left: int

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def origin(self, index: int) -> Pair:
        """``(y, x)`` of patch ``index``'s first sampled pixel (negative in the SAME padding)."""
        if not 0 <= index < self.count:
            raise IndexError(f"patch {index} of {self.count}")
        r, c = divmod(index, self.cols)
        return r * self.spec.stride[0] - self.pad_top, c * self.spec.stride[1] - self.pad_left

    def rects(self) -> np.ndarray:
        """``(N, 4)`` rectangles ``x, y, width, height`` in image pixel coordinates.

        A rectangle covers every pixel from the patch's first to its last sampled pixel (with
        dilation it includes the skipped ones); in SAME padding it may reach outside the image.
        """
        ys = np.arange(self.rows) * self.spec.stride[0] - self.pad_top
        xs = np.arange(self.cols) * self.spec.stride[1] - self.pad_left
        eh, ew = self.spec.span
        out = np.empty((self.count, 4), dtype=np.int64)
        out[:, 0] = np.tile(xs, self.rows)
        out[:, 1] = np.repeat(ys, self.cols)
        out[:, 2] = ew
        out[:, 3] = eh
        return out

    def position(self, index: int) -> Pair:
        """``(row, col)`` of patch ``index`` in the grid."""
        return divmod(index, self.cols)

    def describe(self) -> str:
        n = self.count
        return f"{n} patch{'es' if n != 1 else ''} ({self.rows} × {self.cols})"


# ---------------------------------------------------------------------------------------------
# Geometry and validation


def parse_pair(text: str, what: str) -> Pair:
    """Read ``"18"`` or ``"18, 20"`` / ``"18x20"`` as ``(rows, cols)``.

    Raises
    ------
    PatchSettingsError
        For anything else (the message shows what is expected).
    """
    parts = [p for p in re.split(r"[\s,x×*]+", str(text).strip()) if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise PatchSettingsError(
            f"{what}: {text!r} is not one or two whole numbers; write for example 18 or 18, 20 "
            "(height, width)."
        )
    return (values[0], values[-1])


def validate(spec: PatchSpec, height: int, width: int) -> None:
    """Check ``spec`` against an image of ``height`` × ``width``.

    Raises
    ------
    PatchSettingsError
        Zero or negative size, stride or rate; an unknown padding; a patch whose span is larger
        than the image.
    """
    for name, pair in (("patch size", spec.size), ("stride", spec.stride), ("rate", spec.rate)):
        if len(pair) != 2 or any(int(v) != v for v in pair):
            raise PatchSettingsError(f"The {name} must be two whole numbers, got {pair!r}.")
        if min(pair) < 1:
            raise PatchSettingsError(
                f"The {name} must be at least 1 pixel in each direction, got "
                f"{_pair_text(pair)}; enter a positive number."
            )
    if spec.padding not in PADDINGS:
        raise PatchSettingsError(f"Padding must be VALID or SAME, not {spec.padding!r}.")
    eh, ew = spec.span
    if eh > height or ew > width:
        spans = "" if spec.rate == (1, 1) else f" (it spans {eh}×{ew} pixels with rate {_pair_text(spec.rate)})"
        raise PatchSettingsError(
            f"The patch {spec.size[0]}×{spec.size[1]}{spans} is larger than the image "
            f"({height}×{width}, height × width): make the patch smaller"
            + (" or lower the rate." if spec.rate != (1, 1) else ".")
        )


def make_grid(spec: PatchSpec, height: int, width: int) -> PatchGrid:
    """The patch grid of ``spec`` on an image of ``height`` × ``width`` (validated first)."""
    validate(spec, height, width)
    counts, pads = [], []
    for n, e, s in zip((height, width), spec.span, spec.stride, strict=True):
        if spec.padding == "VALID":
            out = math.ceil((n - e + 1) / s)
            pad = 0
        else:
            out = math.ceil(n / s)
            pad = max((out - 1) * s + e - n, 0) // 2
        counts.append(out)
        pads.append(pad)
    return PatchGrid(spec, int(height), int(width), counts[0], counts[1], pads[0], pads[1])


def _sample_indices(grid: PatchGrid, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column pixel indices ``(N, kh)`` and ``(N, kw)`` sampled by the patches."""
    spec = grid.spec
    r, c = np.divmod(np.asarray(indices, dtype=np.int64), grid.cols)
    ys = (r * spec.stride[0] - grid.pad_top)[:, None] + np.arange(spec.size[0]) * spec.rate[0]
    xs = (c * spec.stride[1] - grid.pad_left)[:, None] + np.arange(spec.size[1]) * spec.rate[1]
    return ys, xs


def extract_patches(
    image: np.ndarray, grid: PatchGrid, indices: np.ndarray | list[int] | None = None
) -> np.ndarray:
    """Cut patches out of ``image`` like ``tf.image.extract_patches``.

    Parameters
    ----------
    image : ndarray
        ``(H, W, C)`` (or ``(H, W)``) matching ``grid``'s size, any dtype.
    grid : PatchGrid
        From :func:`make_grid`.
    indices : array-like of int, optional
        Which patches (default all, in TF's row-major order).

    Returns
    -------
    ndarray
        ``(N, kh, kw, C)`` in ``image``'s dtype; SAME padding is zeros. Equals
        ``tf.image.extract_patches(image[None], [1,kh,kw,1], [1,sh,sw,1], [1,rh,rw,1],
        padding).numpy().reshape(-1, kh, kw, C)``.
    """
    arr = image[:, :, None] if image.ndim == 2 else image
    if arr.shape[:2] != (grid.height, grid.width):
        raise PatchSettingsError(
            f"The image is {arr.shape[0]}×{arr.shape[1]} but the patch grid was made for "
            f"{grid.height}×{grid.width}."
        )
    idx = np.arange(grid.count) if indices is None else np.asarray(indices, dtype=np.int64)
    ys, xs = _sample_indices(grid, idx)
    if grid.pad_top or grid.pad_left or grid.spec.padding == "SAME":
        # pad once so every sampled index is valid; padded pixels are zeros as in TF
        py0 = max(0, -int(ys.min(initial=0)))
        px0 = max(0, -int(xs.min(initial=0)))
        py1 = max(0, int(ys.max(initial=0)) - grid.height + 1)
        px1 = max(0, int(xs.max(initial=0)) - grid.width + 1)
        if py0 or px0 or py1 or px1:
            arr = np.pad(arr, ((py0, py1), (px0, px1), (0, 0)))
            ys, xs = ys + py0, xs + px0
    return arr[ys[:, :, None], xs[:, None, :]]


def patch_bounds_in_image(grid: PatchGrid, index: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of patch ``index``'s rectangle clipped to the image (x1, y1 excluded)."""
    x, y, w, h = (int(v) for v in grid.rects()[index])
    return max(x, 0), max(y, 0), min(x + w, grid.width), min(y + h, grid.height)


# ---------------------------------------------------------------------------------------------
# Presets


def preset_corners(height: int, width: int, size: int | Pair = 18) -> PatchSpec:
    """The four corner patches of ``size`` (one if the patch fills an axis).

    On a 28-pixel image with size 18 this is the classic recipe: stride 10, VALID, 2 × 2 patches.
    """
    kh, kw = (size, size) if isinstance(size, int) else size
    if kh > height or kw > width or kh < 1 or kw < 1:
        raise PatchSettingsError(
            f"Corner patches of {kh}×{kw} do not fit a {height}×{width} image; choose a size "
            f"between 1 and {min(height, width)}."
        )
    return PatchSpec((kh, kw), (max(height - kh, 1), max(width - kw, 1)), (1, 1), "VALID")


def preset_grid(height: int, width: int, rows: int, cols: int) -> PatchSpec:
    """An ``rows`` × ``cols`` grid of non-overlapping patches (the remainder pixels left out)."""
    if rows < 1 or cols < 1:
        raise PatchSettingsError(f"A grid needs at least 1 × 1 patches, got {rows} × {cols}.")
    if rows > height or cols > width:
        raise PatchSettingsError(
            f"A {rows} × {cols} grid does not fit a {height}×{width} image (a patch needs at "
            "least one pixel)."
        )
    kh, kw = height // rows, width // cols
    return PatchSpec((kh, kw), (kh, kw), (1, 1), "VALID")


def preset_sliding(size: int | Pair, stride: int | Pair) -> PatchSpec:
    """A sliding window: ``size`` patches every ``stride`` pixels, fully inside the image."""
    kh, kw = (size, size) if isinstance(size, int) else size
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    return PatchSpec((kh, kw), (sh, sw), (1, 1), "VALID")


# ---------------------------------------------------------------------------------------------
# Patches as model inputs


def prepare_patches(
    patches: np.ndarray, value_max: float, mapping: InputMapping, input_shape: tuple
) -> np.ndarray:
    """Turn patches into a batch of model inputs, each exactly as :func:`prepare_input` would.

    ``result[i]`` equals ``prepare_input(ImageData(patches[i], value_max=value_max), mapping,
    input_shape)[0]``; the work is done for the whole batch at once (the resize runs on the
    patches stacked along the channel axis).

    Parameters
    ----------
    patches : ndarray
        ``(N, kh, kw, C)`` as from :func:`extract_patches`.
    value_max : float
        The image's full-scale value (see :class:`ImageData`).
    mapping : InputMapping
        The input's resize, scaling and channel recipe.
    input_shape : tuple
        The model input's shape, with or without the batch axis.

    Raises
    ------
    InputMappingError
        When a patch cannot become this input (the message says what to change).
    """
    n, kh, kw, c = patches.shape
    th, tw, tc = spatial_shape(input_shape)
    no_channel_axis = tc is None
    tc = 1 if tc is None else tc
    th = kh if th is None else th
    tw = kw if tw is None else tw
    shape = (th, tw) + (() if no_channel_axis else (tc,))
    # work in chunks of about PREPARE_CHUNK_BYTES: the temporaries then stay in the CPU cache
    # (4x faster than one pass over a large batch)
    per_patch = 4 * max(th * tw, kh * kw) * max(tc, c)
    chunk = max(1, PREPARE_CHUNK_BYTES // per_patch)
    if n > chunk:
        out = np.empty((n,) + shape, dtype=np.float32)
        for start in range(0, n, chunk):
            out[start : start + chunk] = _prepare_chunk(
                patches[start : start + chunk], value_max, mapping, (th, tw, tc), no_channel_axis
            )
        return out
    if n == 0:
        return np.zeros((0,) + shape, dtype=np.float32)
    return _prepare_chunk(patches, value_max, mapping, (th, tw, tc), no_channel_axis)


def _prepare_chunk(
    patches: np.ndarray,
    value_max: float,
    mapping: InputMapping,
    target: tuple[int, int, int],
    no_channel_axis: bool,
) -> np.ndarray:
    n, kh, kw, c = patches.shape
    th, tw, tc = target
    if mapping.scale == "raw":
        x = patches.astype(np.float32)
    else:
        x = patches.astype(np.float32) / np.float32(value_max)
    # channel conversion is per pixel: do it on all patches seen as one tall image
    x = convert_channels(x.reshape(n * kh, kw, c), tc).reshape(n, kh, kw, tc)
    # resize all patches at once: stack them along the channel axis, scale afterwards
    stacked = np.ascontiguousarray(x.transpose(1, 2, 0, 3)).reshape(kh, kw, n * tc)
    unscaled = InputMapping(resize=mapping.resize, scale="0..1")
    y, _frame = prepare_input(
        ImageData(stacked, value_max=1.0), unscaled, (None, th, tw, n * tc)
    )
    y = y.reshape(th, tw, n, tc).transpose(2, 0, 1, 3)
    if mapping.scale != "raw":  # raw values go in as stored
        y = _scale(y, mapping).astype(np.float32, copy=False)
    if no_channel_axis:
        y = y[..., 0]
    return np.ascontiguousarray(y)


def patch_input(
    patch: np.ndarray, value_max: float, mapping: InputMapping, input_shape: tuple
) -> np.ndarray:
    """One patch ``(kh, kw, C)`` as the model sees it, through :func:`prepare_input` itself."""
    x, _frame = prepare_input(ImageData(patch, value_max=value_max), mapping, input_shape)
    return x


# ---------------------------------------------------------------------------------------------
# Combining per-patch predictions


def as_probabilities(scores: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-patch class probabilities ``(N, K)`` from a model's per-patch outputs.

    Softmax outputs are kept; raw scores (logits) get a softmax per patch; a single sigmoid
    value ``p`` becomes the two classes ``(1 - p, p)``.

    Returns
    -------
    probs : ndarray, float64
    note : str
        How the outputs were read (shown to the user).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    if s.shape[1] == 1:
        if s.size and np.all((s >= 0) & (s <= 1)):
            return np.concatenate([1 - s, s], axis=1), "one sigmoid output: classes (1 − p, p)"
        e = 1 / (1 + np.exp(-s))
        return np.concatenate([1 - e, e], axis=1), "one raw score: sigmoid applied"
    if s.size == 0 or all(looks_like_probabilities(row) for row in s):
        return s, "probabilities"
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), "raw scores: softmax applied per patch"


@dataclass
class Combined:
    """The combination of per-patch probabilities.

    Attributes
    ----------
    method : str
        One of :data:`COMBINE_METHODS`.
    scores : ndarray
        ``(K,)`` per-class score of the combination.
    label : int
        The final class (argmax of ``scores``; ties go to the lower index).
    probability : float
        ``scores[label]``.
    """

    method: str
    scores: np.ndarray
    label: int
    probability: float


def combine(probs: np.ndarray, method: str = "mean") -> Combined:
    """Combine per-patch probabilities ``(N, K)`` into one prediction.

    - ``mean``: the mean probability per class (the usual recipe), then argmax;
    - ``max``: the largest probability any patch gives each class;
    - ``vote``: the fraction of patches whose argmax is each class;
    - ``geometric``: ``exp(mean(log p))`` per class, renormalised to sum to 1 (``p`` clipped at
      1e-12 so a single zero does not wipe a class out entirely).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise PatchSettingsError("There are no patch predictions to combine; run the patches first.")
    if method == "mean":
        scores = p.mean(axis=0)
    elif method == "max":
        scores = p.max(axis=0)
    elif method == "vote":
        scores = np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / p.shape[0]
    elif method == "geometric":
        g = np.exp(np.log(np.clip(p, 1e-12, None)).mean(axis=0))
        scores = g / g.sum()
    else:
        raise PatchSettingsError(f"Unknown combination {method!r}; use one of {', '.join(COMBINE_METHODS)}.")
    label = int(np.argmax(scores))
    return Combined(method, scores, label, float(scores[label]))


# ---------------------------------------------------------------------------------------------
# Maps over the image


def _coverage(starts: np.ndarray, span: int, n: int, samples: np.ndarray) -> np.ndarray:
    """``(len(starts), len(samples))``: 1 where a sample coordinate lies in a patch's span."""
    s = starts[:, None]
    return ((samples[None, :] >= s) & (samples[None, :] < s + span)).astype(np.float64)


def coverage_map(
    grid: PatchGrid, values: np.ndarray, max_side: int | None = None
) -> np.ndarray:
    """A per-patch value spread over the image: each pixel gets the mean over the patches covering it.

    Pixels no patch covers are NaN. The grid is regular, so coverage is separable and the map
    is ``(Ry' V Rx) / (Ry' 1 Rx)`` with row/column indicator matrices.

    Parameters
    ----------
    grid : PatchGrid
    values : ndarray
        ``(N,)`` one value per patch.
    max_side : int, optional
        Evaluate at most this many samples along the longer side (at pixel-block centres), for
        display of large images; the default is every pixel.

    Returns
    -------
    ndarray, float64
        ``(H, W)``, or smaller when ``max_side`` applies (covering the same image area).
    """
    v = np.asarray(values, dtype=np.float64).reshape(grid.rows, grid.cols)
    h, w = grid.height, grid.width
    step = 1.0
    if max_side is not None and max(h, w) > max_side:
        step = max(h, w) / max_side
    oh, ow = max(1, round(h / step)), max(1, round(w / step))
    ys = np.floor((np.arange(oh) + 0.5) * (h / oh))
    xs = np.floor((np.arange(ow) + 0.5) * (w / ow))
    ry = _coverage(np.arange(grid.rows) * grid.spec.stride[0] - grid.pad_top, grid.spec.span[0], h, ys)
    rx = _coverage(np.arange(grid.cols) * grid.spec.stride[1] - grid.pad_left, grid.spec.span[1], w, xs)
    finite = np.isfinite(v)
    total = ry.T @ np.where(finite, v, 0.0) @ rx
    count = ry.T @ finite.astype(np.float64) @ rx
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[count == 0] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# Occlusion


def grey_value(image: ImageData) -> float:
    """Mid-grey in the image's units (half its full-scale value)."""
    half = image.value_max / 2.0
    return float(round(half)) if np.issubdtype(image.array.dtype, np.integer) else float(half)


def occlude(image: np.ndarray, grid: PatchGrid, index: int, fill: float) -> np.ndarray:
    """A copy of ``image`` with patch ``index``'s rectangle (clipped to the image) set to ``fill``."""
    out = np.array(image, copy=True)
    x0, y0, x1, y1 = patch_bounds_in_image(grid, index)
    out[y0:y1, x0:x1] = np.asarray(fill).astype(out.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# The per-patch table


def patch_table(
    grid: PatchGrid,
    probs: np.ndarray,
    labels: list[str] | None = None,
    occlusion_drop: np.ndarray | None = None,
) -> tuple[list[str], list[list]]:
    """The per-patch table: geometry, top class and every class's probability.

    Parameters
    ----------
    grid : PatchGrid
    probs : ndarray
        ``(N, K)`` per-patch probabilities.
    labels : list of str, optional
        Class names (used in the column names and the top-class column).
    occlusion_drop : ndarray, optional
        ``(N, K)`` drop of each class's score when the patch is greyed out.

    Returns
    -------
    header : list of str
    rows : list of list
    """
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]

    def name(i: int) -> str:
        return labels[i] if labels is not None and i < len(labels) else str(i)

    header = ["patch", "row", "col", "x", "y", "width", "height", "top_class", "top_label", "top_p"]
    header += [f"p_{name(i)}" for i in range(k)]
    if occlusion_drop is not None:
        header += [f"occlusion_drop_{name(i)}" for i in range(k)]
    rows = []
    rects = grid.rects()
    for n in range(grid.count):
        r, c = grid.position(n)
        top = int(np.argmax(p[n]))
        row: list = [n, r, c, *(int(v) for v in rects[n]), top, name(top), float(p[n, top])]
        row += [float(v) for v in p[n]]
        if occlusion_drop is not None:
            row += [float(v) for v in occlusion_drop[n]]
        rows.append(row)
    return header, rows
