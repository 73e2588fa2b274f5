"""Patch geometry with ``tf.image.extract_patches`` semantics: specs, grids, extraction, presets.

Geometry (per axis, ``k`` the patch size, ``s`` the stride, ``r`` the rate, ``n`` the image size):

- a patch samples every ``r``-th pixel, so it spans ``e = (k - 1) * r + 1`` pixels;
- ``VALID`` keeps the patches fully inside: ``ceil((n - e + 1) / s)`` of them, the first at 0;
- ``SAME`` gives ``ceil(n / s)`` patches over an image zero-padded by
  ``max((out - 1) * s + e - n, 0)`` pixels in total, the smaller half before (top/left);
- patch ``i`` starts at ``i * s - pad_before``.

Import these names from :mod:`maskviewer.core.patches`, which re-exports them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from maskviewer.core.errors import MaskviewerError

PADDINGS = ("VALID", "SAME")

#: the most patches one grid may hold: every patch is a model input, a row of scores and a
#: rectangle, so a small patch on a huge image (millions of them) is refused with a message
#: that says how many and which stride would fit
MAX_PATCHES = 100_000


class PatchSettingsError(MaskviewerError):
    """Patch settings that cannot be applied to this image (the message says what to change)."""


Pair = tuple[int, int]


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


def _axis(n: int, e: int, s: int, padding: str) -> tuple[int, int]:
    """Patches along one axis and the padding before the first (see the module's geometry)."""
    if padding == "VALID":
        return math.ceil((n - e + 1) / s), 0
    out = math.ceil(n / s)
    return out, max((out - 1) * s + e - n, 0) // 2


def patch_count(spec: PatchSpec, height: int, width: int) -> int:
    """How many patches ``spec`` cuts from an image of ``height`` × ``width`` (spec valid)."""
    rows = _axis(height, spec.span[0], spec.stride[0], spec.padding)[0]
    return rows * _axis(width, spec.span[1], spec.stride[1], spec.padding)[0]


def check_count(spec: PatchSpec, height: int, width: int, limit: int | None = None) -> None:
    """Refuse a grid of more than ``limit`` patches (default :data:`MAX_PATCHES`, read at call time).

    Raises
    ------
    PatchSettingsError
        With the count and the smallest stride (both axes scaled alike) that fits the limit.
    """
    limit = MAX_PATCHES if limit is None else limit
    count = patch_count(spec, height, width)
    if count <= limit:
        return
    def fits(stride: Pair) -> bool:
        return patch_count(PatchSpec(spec.size, stride, spec.rate, spec.padding), height, width) <= limit

    grow = math.sqrt(count / limit)
    while True:  # scaled up past the limit, then back down to the smallest that fits
        stride = (math.ceil(spec.stride[0] * grow), math.ceil(spec.stride[1] * grow))
        if fits(stride):
            break
        grow *= 1.05
    while min(stride) > 1 and fits((stride[0] - 1, stride[1] - 1)):
        stride = (stride[0] - 1, stride[1] - 1)
    raise PatchSettingsError(
        f"{spec.describe()} cuts {count:,} patches from this {height}×{width} image; at most "
        f"{limit:,} are run. Use a stride of {_pair_text(stride)} or more (or larger patches, or "
        "a grid preset)."
    )


def make_grid(spec: PatchSpec, height: int, width: int) -> PatchGrid:
    """The patch grid of ``spec`` on an image of ``height`` × ``width`` (validated first, the
    patch count bounded by :func:`check_count`)."""
    validate(spec, height, width)
    check_count(spec, height, width)
    (rows, pad_top), (cols, pad_left) = (
        _axis(n, e, s, spec.padding) for n, e, s in zip((height, width), spec.span, spec.stride, strict=True)
    )
    return PatchGrid(spec, int(height), int(width), rows, cols, pad_top, pad_left)


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
