"""Loading and saving images: PNG, JPEG, BMP, TIFF (8/16-bit, float), NPY.

Every failure becomes an :class:`ImageLoadError` whose message says what was wrong; sizes are
checked from the header before any pixel buffer is allocated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import ImageLoadError
from maskviewer.core.image import ImageData, full_scale
from maskviewer.io.atomic import atomic_write
from maskviewer.io.npy import read_npy_header
from maskviewer.io.png_bands import read_png_banded

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")
#: Larger images are refused before decoding (decompression bombs, absurd headers).
MAX_PIXELS = 200_000_000
MAX_SIDE = 65_535
#: Most values (pixels × channels) an array may hold: absurd channel counts are refused too.
MAX_VALUES = 4 * MAX_PIXELS


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _sniff(path: Path) -> str:
    """The decoder a file's first bytes call for: ``"npy"``, ``"tiff"`` or ``"pillow"``.

    The contents decide, not the name (a PNG saved as ``.tif`` still opens); a file whose
    start matches nothing known goes by its suffix, so the error names the expected format.
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "tiff"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8", b"RIFF")):
        return "pillow"
    suffix = path.suffix.lower()
    return "npy" if suffix == ".npy" else "tiff" if suffix in (".tif", ".tiff") else "pillow"


def _check_values(shape: tuple, path: Path) -> None:
    count = 1
    for d in shape:
        count *= int(d)
    if count > MAX_VALUES:
        raise ImageLoadError(
            f"{path.name}: an array of shape {tuple(int(d) for d in shape)} holds more values "
            f"than this viewer opens (at most {MAX_VALUES // 1_000_000} million). Crop it or "
            "keep fewer channels first."
        )


def _check_size(width: int, height: int, path: Path) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{path.name}: the image has no pixels ({width}×{height}).")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageLoadError(
            f"{path.name}: {width}×{height} pixels is larger than this viewer opens "
            f"(at most {MAX_PIXELS // 1_000_000} megapixels, {MAX_SIDE} per side). "
            "Crop or downscale it first."
        )


def load_image(path: str | os.PathLike) -> ImageData:
    """Read an image file into an :class:`ImageData`.

    Raises
    ------
    ImageLoadError
        For a missing, unreadable, corrupt, truncated, too large or unsupported file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file.")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image file.")
    try:
        kind = _sniff(path)
        if kind == "npy":
            return _load_npy(path)
        if kind == "tiff":
            return _load_tiff(path)
        return _load_pillow(path)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(f"{path.name}: not enough memory to open this image.") from None
    except Exception as exc:  # every decoder error becomes a clear message
        raise ImageLoadError(
            f"{path.name}: could not be read as an image ({type(exc).__name__}: {exc}). "
            "The file may be corrupt, truncated, or not an image."
        ) from exc


def _finish(array: np.ndarray, path: Path, raw: np.ndarray | None = None) -> ImageData:
    _refuse_complex(array.dtype, path)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype not in (np.uint8, np.uint16, np.float32):
        if np.issubdtype(array.dtype, np.integer) and array.min(initial=0) >= 0 and array.max(
            initial=0
        ) <= 65535:
            array = array.astype(np.uint16)
        else:
            array = array.astype(np.float32)
    if array.dtype == np.float32 and not np.all(np.isfinite(array)):
        raise ImageLoadError(f"{path.name}: contains NaN or infinite values.")
    return ImageData(np.ascontiguousarray(array), str(path), full_scale(array), raw)


def _refuse_complex(dtype: np.dtype, path: Path) -> None:
    """Complex values have no pixel meaning: refused, never silently cut to their real part."""
    if dtype.kind == "c":
        raise ImageLoadError(
            f"{path.name}: holds complex numbers ({dtype}); an image needs real values. Save "
            "the magnitude (np.abs) or the real part explicitly."
        )


def _load_npy(path: Path) -> ImageData:
    try:  # the header first: shape and dtype are checked before anything is allocated
        shape, dtype = read_npy_header(path)
    except Exception as exc:
        raise ImageLoadError(f"{path.name}: not a valid .npy file ({exc}).") from exc
    if dtype.hasobject:
        raise ImageLoadError(f"{path.name}: holds Python objects; only numeric arrays are read.")
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ImageLoadError(f"{path.name}: dtype {dtype} is not numeric.")
    _refuse_complex(dtype, path)
    display_shape = tuple(d for d in shape)
    while len(display_shape) > 3 and display_shape[0] == 1:
        display_shape = display_shape[1:]
    if len(display_shape) not in (2, 3):
        raise ImageLoadError(
            f"{path.name}: an array of shape {tuple(shape)} is not an image "
            "(expected (H, W), (H, W, C) or (1, H, W, C))."
        )
    if 0 in display_shape:
        raise ImageLoadError(f"{path.name}: an array of shape {tuple(shape)} holds no pixels.")
    _check_size(int(display_shape[1]), int(display_shape[0]), path)
    _check_values(shape, path)
    raw = np.load(path, allow_pickle=False)
    arr = raw.reshape(display_shape)
    if arr.ndim == 3 and arr.shape[2] > 4:
        # many channels: show their mean; the raw array still feeds the model as stored
        arr = arr.astype(np.float32).mean(axis=2)
    return _finish(arr, path, raw=raw)


def _load_tiff(path: Path) -> ImageData:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise ImageLoadError(f"{path.name}: the TIFF file has no images.")
        page = tif.pages[0]
        axes, shape = page.axes, page.shape
        if "Y" not in axes or "X" not in axes:
            raise ImageLoadError(f"{path.name}: the TIFF page (axes {axes}) is not an image.")
        _check_size(int(shape[axes.index("X")]), int(shape[axes.index("Y")]), path)
        _check_values(shape, path)
        photometric = getattr(page.photometric, "name", str(page.photometric))
        if photometric in ("PALETTE", "SEPARATED", "YCBCR", "CIELAB") or page.bitspersample == 1:
            return _load_pillow(path)  # Pillow converts these modes to RGB / grey
        try:
            arr = page.asarray()
        except ValueError as exc:
            if "imagecodecs" not in str(exc):
                raise
            codec = exc
        else:
            codec = None
    if codec is not None:
        # LZW, JPEG... need the optional imagecodecs package; Pillow's libtiff reads most
        try:
            return _load_pillow(path)
        except Exception as exc:
            raise ImageLoadError(
                f"{path.name}: {codec}. Install it (pip install imagecodecs) to open this TIFF."
            ) from exc
    if axes == "SYX":  # planar RGB
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 2 and not (arr.ndim == 3 and axes.endswith("S") or axes == "SYX"):
        raise ImageLoadError(f"{path.name}: a TIFF with axes {axes} is not a 2-D image.")
    if arr.ndim == 3 and arr.shape[2] > 4:
        arr = arr[:, :, :4]
    return _finish(arr, path)


def _load_pillow(path: Path) -> ImageData:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # we check sizes ourselves, before decoding
    with Image.open(path) as im:
        _check_size(im.width, im.height, path)
        mode = im.mode
        if im.format == "PNG" and mode in ("L", "RGB", "RGBA") and _large(im):
            # Pillow's whole decode would hold 4 bytes a pixel beside the array: bands instead
            arr = read_png_banded(path, mode)
            if arr is not None:
                return _finish(arr, path)
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode == "LA" or mode == "PA":
            im = im.convert("RGBA")
        elif mode == "RGBX":
            im = im.convert("RGB")
        im.load()
        arr = _pillow_array(im)
    if mode in ("I", "I;16", "I;16B", "I;16L") and arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
        if arr.min() >= 0 and arr.max() <= 65535:
            arr = arr.astype(np.uint16)
    return _finish(arr, path)


#: Pillow images with more pixels than this are copied out band by band
BAND_COPY_ABOVE = 1 << 22


def _large(im: Any) -> bool:
    return im.width * im.height > BAND_COPY_ABOVE


def _pillow_array(im: Any) -> np.ndarray:
    """A loaded Pillow image as an array, without the whole-image intermediate copies
    ``np.asarray`` makes (a bytes object, joined from pieces): for a large image the peak is
    Pillow's own buffer plus the array, not three times the image."""
    if not _large(im):
        return np.asarray(im)
    first = np.asarray(im.crop((0, 0, im.width, 1)))
    out = np.empty((im.height, *first.shape[1:]), dtype=first.dtype)
    step = max(1, (1 << 20) // im.width)
    for r0 in range(0, im.height, step):
        r1 = min(im.height, r0 + step)
        out[r0:r1] = np.asarray(im.crop((0, r0, im.width, r1)))
    return out


def save_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2-D or 3-D uint8/uint16 array as PNG/TIFF/BMP/JPEG, or any array as NPY, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_write(path) as fh:
        if suffix == ".npy":
            np.save(fh, array, allow_pickle=False)
            return
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(fh, array)
            return
        from PIL import Image

        arr = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(suffix)
        if fmt is None:
            raise ValueError(f"Cannot write images as {suffix!r}.")
        Image.fromarray(arr).save(fh, format=fmt)
