"""Loading and saving masks: PNG (binary or grey levels) and NPY (float).

A mask is ``(H, W)`` float32 in 0..1. Every failure is a :class:`MaskLoadError` whose message
says what was wrong; a mask of another size than the image is a :class:`MaskSizeError`
carrying the mask, so the caller can *offer* a nearest-neighbour resize (never a silent
stretch).

PNG files are saved 8-bit (0/255) for binary masks and 16-bit grey for soft ones (steps of
1/65535); NPY keeps float32 values exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import resize_nearest
from maskviewer.core.mask_values import as_float_mask, to_compact
from maskviewer.io.atomic import atomic_write
from maskviewer.io.npy import read_npy_header

MASK_SUFFIXES = (".png", ".npy", ".tif", ".tiff", ".bmp")
MASK_FILTER = "Masks (*.png *.npy *.tif *.tiff *.bmp);;All files (*)"
MAX_PIXELS = 200_000_000


class MaskLoadError(MaskviewerError):
    """A mask file could not be read as a mask."""


class MaskSizeError(MaskLoadError):
    """The mask's size differs from the image's.

    Attributes
    ----------
    mask : ndarray
        The mask as read (float32 in 0..1), to be resized if the user agrees.
    expected : tuple of int
        ``(height, width)`` of the image.
    """

    def __init__(self, message: str, mask: np.ndarray, expected: tuple[int, int]) -> None:
        super().__init__(message)
        self.mask = mask
        self.expected = expected


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize (values stay the ones in the file: binary stays binary), as
    float32 in 0..1 (a compact mask is converted)."""
    return np.ascontiguousarray(resize_nearest(as_float_mask(mask), height, width))


def load_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, compact: bool = False) -> np.ndarray:
    """Read a mask file.

    Parameters
    ----------
    path : str or PathLike
        PNG/TIFF/BMP (grey levels scaled to 0..1; an 8-bit file holding only 0 and 1 is read as
        0 and 1) or NPY (``(H, W)``, ``(H, W, 1)`` or ``(1, H, W, 1)``; bool, integer or float
        values in 0..1).
    shape : tuple of int, optional
        ``(height, width)`` the mask must have.
    compact : bool
        Keep the file's own precision (see :mod:`maskviewer.core.mask_values`): uint8
        (``v / 255``) for 8-bit, 1-bit and 0/1 files, uint16 for 16-bit ones, float32 for float
        ones; :func:`~maskviewer.core.mask_values.as_float_mask` gives the 0..1 values.

    Returns
    -------
    ndarray
        ``(H, W)`` float32 in 0..1 (compact: the dtypes above).

    Raises
    ------
    MaskSizeError
        The size differs from ``shape`` (the mask is attached).
    MaskLoadError
        Missing file, not an image, more than one channel of data, values outside 0..1.
    """
    path = Path(path)
    if not path.exists():
        raise MaskLoadError(f"{path}: no such file.")
    if path.is_dir():
        raise MaskLoadError(f"{path}: is a folder, not a mask file.")
    try:
        if path.suffix.lower() == ".npy":
            mask = _load_npy(path)
        else:
            if path.suffix.lower() in (".tif", ".tiff"):
                _refuse_complex_tiff(path)
            mask = _load_picture(path)
    except MaskLoadError:
        raise
    except MemoryError:
        raise MaskLoadError(f"{path.name}: not enough memory to read this mask.") from None
    except Exception as exc:  # any decoder failure: not an image we can read
        raise MaskLoadError(
            f"{path.name}: could not be read as a mask image ({type(exc).__name__}: {exc}). "
            "Use a PNG with grey levels or a .npy array of values in 0..1."
        ) from exc
    if not compact:
        mask = as_float_mask(mask)
    if shape is not None and mask.shape != tuple(shape):
        h, w = shape
        raise MaskSizeError(
            f"{path.name} is {mask.shape[1]}×{mask.shape[0]} pixels but the image is {w}×{h}.",
            mask,
            (int(h), int(w)),
        )
    return mask


def _squeeze(arr: np.ndarray, path: Path) -> np.ndarray:
    shape = arr.shape
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise MaskLoadError(
            f"{path.name}: an array of shape {shape} is not a mask (expected (H, W), (H, W, 1) "
            "or (1, H, W, 1))."
        )
    return arr


def _check_range(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise MaskLoadError(f"{path.name}: contains NaN or infinite values; a mask needs 0..1.")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise MaskLoadError(
            f"{path.name}: values range from {lo:g} to {hi:g}; a mask needs values in 0..1. "
            "Divide by the maximum (or threshold it) before saving."
        )
    return np.ascontiguousarray(arr)


def _load_npy(path: Path) -> np.ndarray:
    try:  # the header first: shape and dtype are checked before anything is allocated
        shape, dtype = read_npy_header(path)
    except Exception as exc:
        raise MaskLoadError(f"{path.name}: not a valid .npy file ({exc}).") from exc
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise MaskLoadError(f"{path.name}: dtype {dtype} is not numeric; a mask needs numbers.")
    if dtype.kind == "c":  # the imaginary part would be dropped without a word
        raise MaskLoadError(f"{path.name}: holds complex numbers ({dtype}); a mask needs real values in 0..1.")
    if int(np.prod(shape)) > MAX_PIXELS:
        raise MaskLoadError(f"{path.name}: an array of shape {shape} is too large for a mask.")
    arr = _squeeze(np.load(path, allow_pickle=False), path)
    if (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)) and arr.size and 0 <= arr.min() and arr.max() <= 1:
        return to_compact(arr)  # 0/1 labels
    return _check_range(arr, path)


def _refuse_complex_tiff(path: Path) -> None:
    """A complex TIFF is named as such (Pillow would only say it cannot identify the file)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            dtype = tif.pages[0].dtype if tif.pages else None
    except Exception:  # not a TIFF tifffile reads: Pillow reports what is wrong
        return
    if dtype is not None and np.dtype(dtype).kind == "c":
        raise MaskLoadError(f"{path.name}: holds complex numbers ({dtype}); a mask needs real values in 0..1.")


def _load_picture(path: Path) -> np.ndarray:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # checked below, before decoding
    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise MaskLoadError(f"{path.name}: {im.width}×{im.height} is too large for a mask.")
        mode = im.mode
        if mode == "1":
            return to_compact(np.asarray(im, dtype=bool))
        if mode == "P":
            idx = np.asarray(im)
            if idx.max(initial=0) <= 1:  # a two-entry palette: label 0 / label 1
                return to_compact(idx)
            im = im.convert("L")
            mode = "L"
        if mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
            arr = np.asarray(im.convert("RGBA"))
            rgb, alpha = arr[:, :, :3], arr[:, :, 3]
            if not (rgb == rgb[:, :, :1]).all():
                raise MaskLoadError(
                    f"{path.name}: a colour image is not a mask. Save the mask as a grey-level "
                    "PNG (black = 0, white = 1) or as .npy."
                )
            if (rgb == 0).all() and alpha.min() < 255:
                return np.ascontiguousarray(alpha)  # painted in the alpha only
            arr = rgb[:, :, 0]
        else:
            arr = np.asarray(im)
    if arr.ndim != 2:
        raise MaskLoadError(f"{path.name}: an image of shape {arr.shape} is not a mask.")
    if arr.dtype.kind == "c":
        raise MaskLoadError(f"{path.name}: holds complex numbers ({arr.dtype}); a mask needs real values in 0..1.")
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return to_compact(arr)  # 0/1 labels become 0/255
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise MaskLoadError(f"{path.name}: integer values outside 0..65535 are not a mask.")
        if hi <= 1:
            return to_compact(arr)
        return np.ascontiguousarray(arr, dtype=np.uint16)
    return _check_range(arr, path)  # float TIFF


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a mask atomically: ``.npy`` exact float32, ``.png`` grey levels.

    Binary masks are written 8-bit (0 and 255), soft masks 16-bit.

    Raises
    ------
    MaskviewerError
        For an unsupported suffix (nothing is written).
    """
    path = Path(path)
    mask = np.asarray(mask, dtype=np.float32)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise MaskviewerError(f"{path.name}: save masks as .png or .npy.")
    binary = bool(np.all((mask == 0) | (mask == 1)))
    if suffix == ".npy":
        with atomic_write(path) as fh:
            np.save(fh, mask, allow_pickle=False)
        return
    if binary:
        arr = (mask * 255).astype(np.uint8)
    else:
        arr = np.round(np.clip(mask, 0.0, 1.0) * 65535.0).astype(np.uint16)
    from PIL import Image

    with atomic_write(path) as fh:
        Image.fromarray(arr).save(fh, format="PNG")
