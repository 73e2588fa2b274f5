"""Patch extraction with ``tf.image.extract_patches`` semantics, and what is done with patches.

The geometry (specs, grids, validation, extraction and presets) lives in
:mod:`maskviewer.core.patch_grid` and is re-exported here, so every patch name imports from
this module. On top of it: the batched preprocessing that turns patches into model inputs
exactly as :func:`maskviewer.core.mapping.prepare_input` would one at a time, the combination
of per-patch probabilities, maps of a per-patch value over the image, occlusion (each patch
greyed out in turn) and the per-patch table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskviewer.core.image import ImageData, convert_channels
from maskviewer.core.mapping import InputMapping, _scale, float_units, prepare_input, spatial_shape
from maskviewer.core.patch_grid import (
    PADDINGS,
    Pair,
    PatchGrid,
    PatchSettingsError,
    PatchSpec,
    extract_patches,
    make_grid,
    parse_pair,
    patch_bounds_in_image,
    preset_corners,
    preset_grid,
    preset_sliding,
    validate,
)
from maskviewer.core.predictions import looks_like_probabilities

__all__ = [
    "COMBINE_BY_KIND",
    "COMBINE_LABELS",
    "COMBINE_METHODS",
    "COMBINE_TEXT",
    "PADDINGS",
    "PREPARE_CHUNK_BYTES",
    "Combined",
    "Pair",
    "PatchGrid",
    "PatchSettingsError",
    "PatchSpec",
    "as_probabilities",
    "as_values",
    "combine",
    "combine_values",
    "coverage_map",
    "extract_patches",
    "grey_value",
    "kind_family",
    "make_grid",
    "occlude",
    "parse_pair",
    "patch_bounds_in_image",
    "patch_input",
    "patch_table",
    "prepare_patches",
    "preset_corners",
    "preset_grid",
    "preset_sliding",
    "validate",
]

COMBINE_METHODS = ("mean", "max", "vote", "geometric")
COMBINE_LABELS = {
    "mean": "Mean of probabilities",
    "max": "Maximum probability",
    "vote": "Majority vote",
    "geometric": "Geometric mean",
}
#: the combinations offered per output kind family (see :func:`kind_family`)
COMBINE_BY_KIND = {
    "classes": COMBINE_METHODS,
    "labels": ("mean", "max", "vote", "geometric"),
    "values": ("mean", "median", "max", "min", "sum"),
}
#: how each combination is named, per kind family
COMBINE_TEXT = {
    "classes": COMBINE_LABELS,
    "labels": {"mean": "Mean probability per label", "max": "Maximum per label",
               "vote": "Vote per label (share of patches above 0.5)", "geometric": "Geometric mean per label"},
    "values": {"mean": "Mean of the patches' values", "median": "Median", "max": "Maximum",
               "min": "Minimum", "sum": "Sum over the patches"},
}

#: bytes of float work per chunk when preparing many patches (fits a CPU's L2/L3 cache)
PREPARE_CHUNK_BYTES = 512 << 10


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
    x, full = float_units(patches, value_max, mapping.scale)
    # channel conversion is per pixel: do it on all patches seen as one tall image
    x = convert_channels(x.reshape(n * kh, kw, c), tc, alpha_value=full).reshape(n, kh, kw, tc)
    if (kh, kw) == (th, tw):  # every resize mode leaves a patch of the input's size as it is
        y = x
    else:  # resize all patches at once: stack them along the channel axis, scale afterwards
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


def kind_family(kind: str) -> str:
    """``"classes"``, ``"labels"`` or ``"values"`` for an output kind (:mod:`~maskviewer.core.output_kinds`)."""
    from maskviewer.core.output_kinds import CLASS_KINDS, LABEL_KINDS

    return "classes" if kind in CLASS_KINDS else "labels" if kind in LABEL_KINDS else "values"


def as_values(scores: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """Per-patch numbers ``(N, K)`` for an output read as ``kind``, and how they were read.

    Class scores become probabilities (a softmax per patch for logits), labels their
    probabilities (a sigmoid for logits); regression values stay as they are.
    """
    from maskviewer.core import output_kinds as ok

    s = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    notes = {
        ok.SOFTMAX: "probabilities", ok.LOGITS: "logits: softmax applied per patch",
        ok.MULTILABEL: "independent probabilities per label",
        ok.MULTILABEL_LOGITS: "label logits: sigmoid applied per patch",
        ok.REGRESSION: "values, as the model gives them",
    }
    if kind not in notes:
        raise PatchSettingsError("An image-shaped output cannot be combined over patches; pick a vector output.")
    return ok.shown_values(kind, s), notes[kind]


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
    #: ``"classes"``, ``"labels"`` or ``"values"`` (then ``scores`` are values, not probabilities)
    family: str = "classes"


def combine_values(values: np.ndarray, method: str, family: str) -> Combined:
    """Combine per-patch numbers ``(N, K)`` by a method of the kind ``family``.

    Classes: :func:`combine`. Labels, each on its own: ``mean``, ``max``, ``vote`` (the share
    of patches whose probability is above 0.5), ``geometric`` (``exp(mean(log p))``, not
    renormalised). Values: ``mean``, ``median``, ``max``, ``min``, ``sum`` per value.
    ``label`` is the most likely label (labels) or 0 (values).
    """
    if family == "classes":
        return combine(values, method)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise PatchSettingsError("There are no patch predictions to combine; run the patches first.")
    allowed = COMBINE_BY_KIND[family]
    if method not in allowed:
        raise PatchSettingsError(f"Unknown combination {method!r}; use one of {', '.join(allowed)}.")
    if method == "vote":
        scores = (v > 0.5).mean(axis=0)
    elif method == "geometric":
        scores = np.exp(np.log(np.clip(v, 1e-12, None)).mean(axis=0))
    else:
        scores = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min, "sum": np.sum}[method](v, axis=0)
    label = int(np.argmax(scores)) if family == "labels" else 0
    return Combined(method, scores, label, float(scores[label]), family)


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
    family: str = "classes",
) -> tuple[list[str], list[list]]:
    """The per-patch table: geometry, top class and every class's probability.

    ``family`` ``"labels"``: the top label and every label's probability; ``"values"``: every
    value, named by ``labels`` (e.g. ``["count"]``), no top column.

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

    header = ["patch", "row", "col", "x", "y", "width", "height"]
    top_columns = {"classes": ["top_class", "top_label", "top_p"], "labels": ["top_index", "top_label", "top_p"]}
    header += top_columns.get(family, [])
    prefix = "" if family == "values" else "p_"
    header += [f"{prefix}{name(i)}" for i in range(k)]
    if occlusion_drop is not None:
        header += [f"occlusion_drop_{name(i)}" for i in range(k)]
    rows = []
    rects = grid.rects()
    for n in range(grid.count):
        r, c = grid.position(n)
        top = int(np.argmax(p[n]))
        row: list = [n, r, c, *(int(v) for v in rects[n])]
        if family != "values":
            row += [top, name(top), float(p[n, top])]
        row += [float(v) for v in p[n]]
        if occlusion_drop is not None:
            row += [float(v) for v in occlusion_drop[n]]
        rows.append(row)
    return header, rows
