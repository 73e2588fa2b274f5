"""Images as arrays: the container, value ranges, channel conversion and resizing.

Resizing follows ``tf.image.resize`` (half-pixel centres, no antialiasing) so that what the
app feeds a model equals what a Keras ``Resizing`` layer or a notebook would compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.errors import InputMappingError

# ITU-R 601-2 luma, as Pillow's "L" conversion
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class ImageData:
    """An image as loaded, before any model-specific preprocessing.

    Attributes
    ----------
    array : ndarray
        ``(H, W, C)`` in the file's own dtype (uint8, uint16 or float32).
    path : str or None
        Where it came from.
    value_max : float
        Full-scale value: 255 for uint8, 65535 for uint16, 1.0 for floats in [0, 1]
        (otherwise the data maximum). ``array / value_max`` is in [0, 1].
    raw : ndarray or None
        For ``.npy`` files, the array exactly as stored; fed to a model unchanged when its
        shape equals the model input.
    """

    array: np.ndarray
    path: str | None = None
    value_max: float = 255.0
    raw: np.ndarray | None = field(default=None, repr=False)

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def channels(self) -> int:
        return int(self.array.shape[2])

    def as_unit_float(self) -> np.ndarray:
        """The image as float32 in [0, 1] (floats outside that range are kept as they are)."""
        return self.array.astype(np.float32) / np.float32(self.value_max)

    def describe(self) -> str:
        kinds = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
        kind = kinds.get(self.channels, f"{self.channels} channels")
        return f"{self.width}×{self.height} {kind} {self.array.dtype}"


def full_scale(array: np.ndarray) -> float:
    """The value that maps to 1.0 for an array of this dtype and content."""
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return 255.0 if array.dtype == np.uint8 else 1.0
    if array.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(array.dtype, np.integer):
        return float(max(int(array.max(initial=0)), 1))
    finite = array[np.isfinite(array)]
    hi = float(finite.max()) if finite.size else 1.0
    return 1.0 if hi <= 1.0 else (255.0 if hi <= 255.0 else hi)


def display_range(array: np.ndarray, value_max: float) -> tuple[float, float]:
    """The values shown as black and white: ``0..value_max``, or a float array's own range
    when its values fall outside that (normalised model inputs, negative data).

    A constant array outside ``0..value_max`` gives ``lo == hi``: :func:`display_uint8` shows
    it as flat grey.
    """
    lo, hi = 0.0, float(value_max)
    if array.dtype.kind == "f" and array.size:
        amin, amax = float(np.min(array)), float(np.max(array))
        if amin < 0.0 or amax > hi:
            lo, hi = amin, amax
    return lo, hi


def display_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``array`` mapped from ``lo..hi`` to 0..255 (uint8, clipped); never NaN.

    A range too narrow to divide by in float32 (a constant image) shows as flat mid grey
    (128): every pixel has the same value, and black would read as "no data".
    """
    span = float(hi) - float(lo)
    if not (np.isfinite(span) and np.float32(hi) > np.float32(lo)):
        return np.full(array.shape, 128, dtype=np.uint8)
    # a span past float32's range (values near ±3.4e38) is worked in halves
    k = 1.0 if span <= float(np.finfo(np.float32).max) else 0.5
    with np.errstate(over="ignore", invalid="ignore"):  # any overflow left saturates below
        x = array.astype(np.float32)
        if k != 1.0:
            x *= np.float32(k)
        x -= np.float32(lo * k)
        x /= np.float32(span * k)
    np.nan_to_num(x, copy=False, nan=0.5, posinf=1.0, neginf=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    return (x * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def convert_channels(array: np.ndarray, channels: int, alpha_value: float = 1.0) -> np.ndarray:
    """Convert an ``(H, W, C)`` float array to ``channels`` channels (grey <-> RGB <-> RGBA).

    Raises
    ------
    InputMappingError
        When there is no sensible conversion (e.g. 3 channels to 2).
    """
    c = array.shape[2]
    if c == channels:
        return array
    if c in (2, 4):  # drop alpha before converting colour
        array = array[:, :, : c - 1]
        c -= 1
        if c == channels:
            return array
    if c == 3 and channels == 1:
        return (array @ _LUMA)[:, :, None].astype(array.dtype, copy=False)
    if c == 1 and channels == 3:
        return np.repeat(array, 3, axis=2)
    if channels == 4 and c in (1, 3):
        rgb = np.repeat(array, 3, axis=2) if c == 1 else array
        alpha = np.full(rgb.shape[:2] + (1,), alpha_value, dtype=rgb.dtype)
        return np.concatenate([rgb, alpha], axis=2)
    if channels == 2 and c == 1:
        alpha = np.full(array.shape[:2] + (1,), alpha_value, dtype=array.dtype)
        return np.concatenate([array, alpha], axis=2)
    raise InputMappingError(
        f"The model expects {channels} channel(s) but the image has {c}; there is no "
        "grey/RGB conversion between them. Load an image with a matching channel count "
        "or an .npy array of the model's input shape."
    )


def _bilinear_axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # float32 throughout, as TF's ResizeBilinear kernel computes source positions (half-pixel
    # centres): float64 positions differ by up to ~1e-5, which a CAM can amplify.
    scale = np.float32(in_size) / np.float32(out_size)
    pos = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(pos)
    lower = np.clip(floor, 0, in_size - 1).astype(np.intp)
    upper = np.clip(np.ceil(pos), 0, in_size - 1).astype(np.intp)
    frac = pos - floor
    return lower, upper, frac


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(H, W, C)`` like ``tf.image.resize(..., 'bilinear', antialias=False)``.

    Same arithmetic as TF's kernel, so the results agree bit for bit: float32 positions, and
    the interpolation along x first (top and bottom rows), then along y.
    """
    array = np.asarray(array, dtype=np.float32)
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array.copy()
    y0, y1, fy = _bilinear_axis(h, height)
    x0, x1, fx = _bilinear_axis(w, width)
    return bilinear_blend(array[y0], array[y1], x0, x1, fx, fy)


def bilinear_blend(
    top_rows: np.ndarray, bottom_rows: np.ndarray, x0: np.ndarray, x1: np.ndarray,
    fx: np.ndarray, fy: np.ndarray,
) -> np.ndarray:
    """TF's bilinear arithmetic on the gathered upper and lower rows: along x, then along y.

    One place for it, so every resize that must equal ``tf.image.resize`` bit for bit (the
    whole image, or only the rows and columns a large image's resize reads) computes alike.
    """
    fxx = fx[None, :, None]
    top = top_rows[:, x0] + (top_rows[:, x1] - top_rows[:, x0]) * fxx
    bottom = bottom_rows[:, x0] + (bottom_rows[:, x1] - bottom_rows[:, x0]) * fxx
    return top + (bottom - top) * fy[:, None, None]


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(H, W, ...)`` like ``tf.image.resize(..., 'nearest')`` (half-pixel centres)."""
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array.copy()
    ys = np.minimum(np.floor((np.arange(height) + 0.5) * (h / height)).astype(np.intp), h - 1)
    xs = np.minimum(np.floor((np.arange(width) + 0.5) * (w / width)).astype(np.intp), w - 1)
    return array[ys][:, xs]
