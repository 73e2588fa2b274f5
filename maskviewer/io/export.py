"""Writing what the viewer shows: heatmaps, overlays, raw maps, legends, grids, masks, patch
maps, binary outputs, and the manifest that lists them.

One :class:`ExportItem` describes one thing shown (a layer's map, a CAM, a mask...); an
:class:`ArtifactWriter` turns it into files in an output folder:

- ``STEM.png``: the map colour-mapped *at image resolution* (the map is stretched onto the
  model input's frame on the image, as the window draws it; pixels outside the frame are
  transparent);
- ``STEM_overlay.png``: that heatmap blended over the image;
- ``STEM.npy``: the raw map at its own resolution (float32; binary outputs as bool);
- ``STEM_legend.png``: a colour bar with the value range (optional);
- ``STEM_grid.png``: a channel grid as one montage (grid reductions).

With ``npy_layout="stacked"`` (the command line's default) the raw maps are instead rows of one
``.npy`` per map (:class:`maskviewer.io.npy.NpyStack`); :func:`load_npy` reads an entry's values
either way. :meth:`ArtifactWriter.write_batch` colours a batch's same-sized maps in a few array
operations.

Every file is written atomically (:func:`maskviewer.io.atomic.write_atomic`: a killed process
never leaves a half-written file). :class:`Manifest` spools one JSON line per artifact to a
side file, so a run over 100k images keeps bounded memory, and writes ``manifest.json``
(tool version, model file and SHA-256, settings, artifacts) at the end.

numpy and Pillow only: the command line and the window share this module.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import functools
import io
import json
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.heatmap import (
    COLORMAPS,
    NORMALISATIONS,
    channel_grid,
    colorize,
    colormap_lut,
    composite,
    normalize,
    to_indices,
)
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import Frame
from maskviewer.io.atomic import atomic_write, write_atomic
from maskviewer.io.npy import NpyStack

#: what an artifact shows (the manifest's ``kind``)
KINDS = ("activation", "cam", "attention", "prediction", "patch", "binary", "mask")
#: artifact kinds drawn through a colour map (the others have their own look)
HEAT_KINDS = ("activation", "cam", "attention", "prediction", "patch")
#: the manifest's key for the thing an artifact belongs to, per kind
NAME_KEYS = {
    "activation": "layer",
    "cam": "layer",
    "attention": "layer",
    "prediction": "output",
    "patch": "output",
    "binary": "output",
    "mask": "mask",
}
MANIFEST_NAME = "manifest.json"
#: where raw values go: one ``.npy`` per item, or rows of one ``.npy`` per map (see ArtifactWriter)
NPY_LAYOUTS = ("files", "stacked")
MANIFEST_VERSION = 1
#: mask overlays are tinted with this colour
MASK_TINT = (255, 60, 60)


class ExportError(MaskviewerError):
    """Something could not be exported; the message says what and what to do."""


@dataclass
class ExportStyle:
    """How maps look in the PNG files.

    Attributes
    ----------
    colormap : str
        One of :data:`maskviewer.core.heatmap.COLORMAPS`.
    normalisation : str
        ``"per_map"``, ``"percentile"`` or ``"shared"`` (see :func:`~maskviewer.core.heatmap.normalize`).
    alpha : float
        Opacity of the heatmap in the overlay (0..1).
    formats : tuple of str
        ``"png"`` (colour-mapped map, overlay, montage) and/or ``"npy"`` (raw values).
    overlay : bool
        Write ``STEM_overlay.png`` (needs the image).
    legend : bool
        Write ``STEM_legend.png``.
    """

    colormap: str = "viridis"
    normalisation: str = "per_map"
    alpha: float = 0.5
    formats: tuple[str, ...] = ("png", "npy")
    overlay: bool = True
    legend: bool = False

    def __post_init__(self) -> None:
        if self.colormap not in COLORMAPS:
            raise ExportError(
                f"Unknown colour map {self.colormap!r}; choose one of {', '.join(COLORMAPS)}."
            )
        if self.normalisation not in NORMALISATIONS:
            raise ExportError(
                f"Unknown normalisation {self.normalisation!r}; choose one of "
                f"{', '.join(NORMALISATIONS)}."
            )
        bad = [f for f in self.formats if f not in ("png", "npy")]
        if bad or not self.formats:
            raise ExportError(
                f"Unknown format {', '.join(bad) or '(none)'}: use png, npy or png,npy."
            )
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ExportError(f"The overlay opacity must be in 0..1, not {self.alpha}.")

    def to_dict(self) -> dict:
        return {
            "colormap": self.colormap,
            "normalisation": self.normalisation,
            "alpha": float(self.alpha),
            "formats": list(self.formats),
            "overlay": self.overlay,
            "legend": self.legend,
        }


@dataclass
class ExportItem:
    """One thing the viewer shows, ready to be written.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    name : str
        The layer path, output name or mask name.
    values : ndarray
        The raw map, written as NPY: ``(h, w)`` over ``frame`` (float; bool for binary
        outputs), ``(N, h, w)`` for channel grids, ``(K,)`` for class scores.
    frame : Frame or None
        Where the map lies on the image (the model input's frame); None when the values are
        not a map (class scores).
    method : str
        The reduction (mean, max, topk, channel, grid, attention) or method (gradcam,
        gradcam++, threshold method, combination...).
    class_index : int or None
        The class a CAM explains or a patch map shows.
    image : str or None
        The image file the item belongs to.
    vrange : (float, float) or None
        Fixed value range for the colours (a CAM's 0..1, a layer's shared range).
    tiles : ndarray or None
        ``(N, h, w)`` channel maps drawn as one montage (``STEM_grid.png``).
    info : dict
        More manifest fields (channels, scores, threshold, patch grid...).
    caption : str
        Under the colour bar in the legend.
    """

    kind: str
    name: str
    values: np.ndarray
    frame: Frame | None = None
    method: str = ""
    class_index: int | None = None
    image: str | None = None
    vrange: tuple[float, float] | None = None
    tiles: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    caption: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown artifact kind {self.kind!r}; one of {', '.join(KINDS)}")

    @property
    def is_map(self) -> bool:
        return self.frame is not None and np.ndim(self.values) in (2, 3)

    def stem(self) -> str:
        """The file name stem: kind, name, method and class, made safe for file systems."""
        parts = [self.kind, safe_name(self.name)]
        if self.method:
            parts.append(safe_name(self.method))
        if self.class_index is not None:
            parts.append(f"class{int(self.class_index)}")
        return "_".join(p for p in parts if p)


def safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, ``-``, ``+``, ``.`` and ``_`` replaced by ``_``."""
    return _safe_name(str(text))


@functools.lru_cache(maxsize=4096)  # a folder export asks for the same few names per image
def _safe_name(text: str) -> str:
    out = _UNSAFE.sub("_", text).strip("._")
    return out[:120] or "item"


_UNSAFE = re.compile(r"[^A-Za-z0-9+._-]+")


# ---------------------------------------------------------------------------------------------
# Pictures


def image_rgb(image: ImageData) -> np.ndarray:
    """The image as ``(H, W, 3)`` uint8, as the window shows it.

    uint8 stays; other dtypes are scaled by their full-scale value (floats outside 0..full
    scale by their own range); grey becomes RGB, alpha is dropped.
    """
    a = image.array
    if a.dtype == np.uint8:
        out = a
    else:
        lo, hi = 0.0, float(image.value_max)
        if a.dtype.kind == "f":
            amin, amax = float(a.min()), float(a.max())
            if amin < 0.0 or amax > hi:
                lo, hi = amin, max(amax, amin + 1e-12)
        scaled = np.clip((a.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
        out = (scaled * 255.0 + 0.5).astype(np.uint8)
    c = out.shape[2]
    if c in (1, 2):
        return np.repeat(out[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(out[:, :, :3])


def _axis_samples(start: float, length: float, cells: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (in map pixels, pixel j spanning [j, j+1)) of ``n`` image pixel centres."""
    centres = np.arange(n, dtype=np.float64) + 0.5
    u = (centres - start) / max(length, 1e-12) * cells
    inside = (u >= 0.0) & (u < cells)
    return u, inside


@functools.lru_cache(maxsize=64)
def _sampler(frame: Frame, mh: int, mw: int, height: int, width: int, order: str) -> tuple:
    """Where each image pixel samples a ``(mh, mw)`` map over ``frame`` (cached: a folder's
    images usually share their size and frame)."""
    uy, in_y = _axis_samples(frame.y, frame.height, mh, height)
    ux, in_x = _axis_samples(frame.x, frame.width, mw, width)
    outside = ~(in_y[:, None] & in_x[None, :])
    if order == "nearest":
        yi = np.clip(np.floor(uy), 0, mh - 1).astype(np.intp)
        xi = np.clip(np.floor(ux), 0, mw - 1).astype(np.intp)
        return yi, xi, outside

    def axis(u: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = u - 0.5
        floor = np.floor(pos)
        lo = np.clip(floor, 0, m - 1).astype(np.intp)
        hi = np.clip(np.ceil(pos), 0, m - 1).astype(np.intp)
        return lo, hi, (pos - floor).astype(np.float32)

    return (*axis(uy, mh), *axis(ux, mw), outside)


def map_on_image(
    values: np.ndarray, frame: Frame, height: int, width: int, order: str = "linear"
) -> np.ndarray:
    """A map computed over ``frame`` sampled at every pixel of a ``height`` x ``width`` image.

    The map is stretched onto ``frame`` exactly as the window draws it: with the frame equal to
    the image this is ``tf.image.resize`` (half-pixel centres) for ``order="linear"``. Pixels
    outside the frame (the padding of "fit", the cut of "crop") are NaN.

    Parameters
    ----------
    values : ndarray
        ``(h, w)`` map, or a stack ``(n, h, w)`` of maps over the same frame.
    frame : Frame
        Where the map lies in image pixel coordinates.
    order : str
        ``"linear"`` (bilinear) or ``"nearest"``.

    Returns
    -------
    ndarray, float32, ``(height, width)`` (``(n, height, width)`` for a stack)
    """
    v = np.asarray(values, dtype=np.float32)
    mh, mw = v.shape[-2:]
    sample = _sampler(frame, int(mh), int(mw), int(height), int(width), order)
    if order == "nearest":
        yi, xi, outside = sample
        out = v[..., yi, :][..., xi].astype(np.float32)
    else:
        y0, y1, fy, x0, x1, fx, outside = sample
        rows = v[..., y0, :] + (v[..., y1, :] - v[..., y0, :]) * fy[:, None]
        out = rows[..., x0] + (rows[..., x1] - rows[..., x0]) * fx
    out = out.astype(np.float32, copy=False)
    out[..., outside] = np.nan
    return out


def heatmaps_rgba(
    stack: np.ndarray,
    frame: Frame,
    height: int,
    width: int,
    style: ExportStyle,
    vranges: list[tuple[float, float] | None],
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Maps ``(n, h, w)`` over the same frame colour-mapped at image resolution:
    ``(n, height, width, 4)`` uint8 RGBA, and each map's ``(lo, hi)`` the colours span.

    Each map is normalised at its own resolution first (as the window does), then stretched
    onto the frame; transparent outside it. A folder export colours a batch's maps of a layer
    in these few array operations.
    """
    mode = style.normalisation
    stack = np.asarray(stack, dtype=np.float32)
    own = mode == "per_map" or (mode == "shared" and all(v is None for v in vranges))
    if own and stack.size and np.isfinite(stack).all():
        # each map by its own min..max: :func:`normalize`'s arithmetic, for the whole stack
        axes = tuple(range(1, stack.ndim))
        lo, hi = stack.min(axis=axes), stack.max(axis=axes)
        span = hi.astype(np.float64) - lo.astype(np.float64)
        ok = np.isfinite(span) & (span > 0)
        shape = (-1,) + (1,) * len(axes)
        units = (stack - lo.reshape(shape)) / np.where(ok, span, 1.0).astype(np.float32).reshape(shape)
        units = np.clip(np.nan_to_num(units, nan=0.0), 0.0, 1.0)
        units[~ok] = 0.0
        ranges = [(float(a), float(b)) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
        return _colour_on_image(units, frame, height, width, style), ranges
    units = np.empty(stack.shape, dtype=np.float32)
    ranges = []
    for i, vrange in enumerate(vranges):
        m = mode
        if m == "shared" and vrange is None:  # nothing to share with: its own range
            m = "per_map"
        # as the window: the shared range (a layer's, a CAM's 0..1) only in "shared" mode
        units[i], lohi = normalize(stack[i], m, vrange=vrange if m == "shared" else None)
        ranges.append(lohi)
    return _colour_on_image(units, frame, height, width, style), ranges


def _colour_on_image(units: np.ndarray, frame: Frame, height: int, width: int, style: ExportStyle) -> np.ndarray:
    on_image = map_on_image(units, frame, height, width)
    lut = colormap_lut(style.colormap)
    rgba = np.empty((*on_image.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lut[to_indices(np.nan_to_num(on_image, nan=0.0))]
    rgba[..., 3] = np.where(np.isnan(on_image), 0, 255)
    return rgba


def legend_rgba(
    colormap: str, lo: float, hi: float, caption: str = "", width: int = 320, height: int = 64
) -> np.ndarray:
    """A colour bar ``(height, width, 4)`` uint8: the gradient with ``lo`` and ``hi`` under it."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    ramp = colormap_lut(colormap)[np.linspace(0, 255, width - 16).round().astype(np.intp)]
    bar = np.repeat(ramp[None, :, :], 20, axis=0)
    img.paste(Image.fromarray(np.ascontiguousarray(bar), "RGB"), (8, 6))
    draw = ImageDraw.Draw(img)
    draw.rectangle((7, 5, width - 8, 26), outline=(0, 0, 0, 255))
    lo_text, hi_text = f"{lo:.4g}", f"{hi:.4g}"
    draw.text((8, 32), lo_text, fill=(0, 0, 0, 255))
    hi_w = draw.textlength(hi_text)
    draw.text((width - 8 - hi_w, 32), hi_text, fill=(0, 0, 0, 255))
    if caption:
        cap = caption if draw.textlength(caption) <= width - 16 else caption[:48] + "…"
        cw = draw.textlength(cap)
        draw.text(((width - cw) / 2, 46), cap, fill=(60, 60, 60, 255))
    return np.asarray(img)


def montage_rgba(
    tiles: np.ndarray, style: ExportStyle, vrange: tuple[float, float] | None = None, min_tile: int = 48
) -> np.ndarray:
    """Channel maps ``(N, h, w)`` as one colour montage (uint8 RGBA, transparent between tiles).

    Small tiles are enlarged by an integer factor (nearest) to at least ``min_tile`` pixels.
    """
    mode = style.normalisation
    grid, layout = channel_grid(tiles, mode, vrange=vrange if mode == "shared" else None)
    rgba = colorize(np.nan_to_num(grid), style.colormap)
    rgba[np.isnan(grid), 3] = 0
    scale = max(1, -(-min_tile // max(layout.tile_h, layout.tile_w, 1)))
    if scale > 1:
        rgba = np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(rgba)


def mask_png_array(mask: np.ndarray) -> np.ndarray:
    """A mask as a grey PNG array: 8-bit 0/255 when binary, 16-bit otherwise (as save_mask)."""
    m = np.asarray(mask, dtype=np.float32)
    if np.all((m == 0) | (m == 1)):
        return (m * 255).astype(np.uint8)
    return np.round(np.clip(m, 0.0, 1.0) * 65535.0).astype(np.uint16)


def tint_overlay(image: np.ndarray, weight: np.ndarray, colour: tuple[int, int, int], opacity: float) -> np.ndarray:
    """Blend ``colour`` over an RGB image where ``weight`` (0..1, NaN = none) is set."""
    w = np.nan_to_num(np.asarray(weight, dtype=np.float32), nan=0.0)[:, :, None]
    a = np.clip(w * float(opacity), 0.0, 1.0)
    out = image.astype(np.float32) * (1.0 - a) + np.asarray(colour, np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Files


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and make sure files can be written in it.

    Raises
    ------
    ExportError
        The folder cannot be created or written (the message names it and says what to do).
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise ExportError(f"{folder} is a file, not a folder: choose a folder for the export.")
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".maskviewer-write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except ExportError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(
            f"Cannot write to the output folder {folder}: {reason}. Choose a folder you can "
            "write to."
        ) from exc
    return folder


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``(H, W)``, ``(H, W, 1..4)`` uint8 or uint16 array (no row filter).

    Written directly (a few times faster than Pillow for the small pictures of layer maps,
    where Pillow's per-call overhead dominates). Pictures under 16 KiB of pixel data are
    stored without compression (zlib's set-up costs more than the few hundred bytes it would
    save); larger ones are deflated at level 1.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    channels = 1 if a.ndim == 2 else a.shape[2]
    if a.ndim not in (2, 3) or channels not in (1, 2, 3, 4) or a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write an array of shape {a.shape} and dtype {a.dtype} as PNG")
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 8 if a.dtype == np.uint8 else 16
    h, w = a.shape[:2]
    rows = np.ascontiguousarray(a.astype(">u2") if depth == 16 else a).reshape(h, -1).view(np.uint8)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "none" on every row
    raw[:, 1:] = rows

    level = 0 if raw.nbytes < PNG_STORE_BELOW else 1
    data = zlib.compress(raw.data, level)
    return b"".join((
        _png_head(w, h, depth, colour),
        struct.pack(">I", len(data)),
        b"IDAT",
        data,
        struct.pack(">I", zlib.crc32(data, _IDAT_CRC) & 0xFFFFFFFF),
        _PNG_END,
    ))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=64)
def _png_head(w: int, h: int, depth: int, colour: int) -> bytes:
    """The PNG signature and header chunk for a picture of this size and kind."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))


_IDAT_CRC = zlib.crc32(b"IDAT")
_PNG_END = _png_chunk(b"IEND", b"")


#: pictures with less pixel data than this are stored in the PNG uncompressed
PNG_STORE_BELOW = 16384


def save_png(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write a uint8/uint16 array as PNG, atomically."""
    write_atomic(path, encode_png(array), fsync=durable)


@functools.lru_cache(maxsize=256)
def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The bytes :func:`numpy.save` writes before the data of a C-ordered array."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def save_npy(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write an array as ``.npy`` (what :func:`numpy.save` writes), atomically."""
    a = np.asarray(array)
    if not a.flags.c_contiguous:
        a = a.copy()
    if a.dtype.hasobject:
        raise ValueError("object arrays are not written")
    write_atomic(path, _npy_header(a.shape, a.dtype.str), a.reshape(-1).view(np.uint8), fsync=durable)


def _record(rel: str, array: np.ndarray) -> dict:
    return {"path": rel, "shape": [int(d) for d in array.shape], "dtype": _dtype_name(array.dtype)}


@functools.lru_cache(maxsize=32)
def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays as JSON values; non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _json_line(entry: dict) -> str:
    """``entry`` as one JSON line; numpy values converted, non-finite floats as null."""
    try:  # most entries hold plain values: let json do them, and convert only when it must
        return json.dumps(entry, allow_nan=False, default=_json_default)
    except ValueError:
        return json.dumps(_jsonable(entry), allow_nan=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic | Path):
        return _jsonable(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: a job for :meth:`ArtifactWriter.write_batch`: the item, its image, the file stem
Job = tuple["ExportItem", "ImageData | None", "str | None"]


class ArtifactWriter:
    """Writes :class:`ExportItem` s into a folder and describes each as a manifest entry.

    Parameters
    ----------
    out_dir : path
        The export folder (must exist and be writable: see :func:`check_writable`).
    style : ExportStyle
    overwrite : bool
        Replace files that exist; otherwise an existing file is an :class:`ExportError`.
    durable : bool
        fsync every file (slow for thousands of small files; the files are renamed into place
        atomically either way, so an interrupted run leaves no partial file).
    npy_layout : str
        ``"files"``: one ``.npy`` per item beside its pictures. ``"stacked"``: the raw values of
        all items with the same stem and shape are rows of one ``.npy`` in ``stack_dir``
        (``arrays/activation_conv1_mean.npy``, ``(rows, h, w)``); the manifest gives each
        item's ``row``. Call :meth:`close` when done (it writes the stacks' headers).
    stack_dir : str
        Folder (relative) of the stacked arrays.
    """

    def __init__(
        self, out_dir: str | os.PathLike, style: ExportStyle | None = None, *, overwrite: bool = False,
        durable: bool = True, npy_layout: str = "files", stack_dir: str = "arrays",
    ) -> None:
        if npy_layout not in NPY_LAYOUTS:
            raise ExportError(f"Unknown NPY layout {npy_layout!r}; use {' or '.join(NPY_LAYOUTS)}.")
        self.npy_layout = npy_layout
        self.stack_dir = stack_dir.strip("/")
        self._stacks: dict[tuple, tuple[str, NpyStack]] = {}  # (stem, shape, dtype) -> (rel, stack)
        self._stack_names: set[str] = set()
        self.out_dir = Path(out_dir)
        self._root = os.path.join(os.fspath(self.out_dir), "")
        self.style = style or ExportStyle()
        self.overwrite = overwrite
        self.durable = durable
        # recently used folders: None for one that existed, else the names written in it (a
        # folder this writer created holds nothing else, so its files need no look on disk)
        self._dirs: collections.OrderedDict[str, set[str] | None] = collections.OrderedDict()

    def planned_paths(self, item: ExportItem, stem: str, with_image: bool = True) -> list[Path]:
        """The files :meth:`write` would create for ``item`` (to ask before overwriting)."""
        base = self.out_dir / stem
        fmts = self.style.formats
        out: list[Path] = []
        if "png" in fmts:
            if item.tiles is not None:
                out.append(base.with_name(base.name + "_grid.png"))
            if item.is_map:
                out.append(base.with_name(base.name + ".png"))
                if self.style.overlay and with_image:
                    out.append(base.with_name(base.name + "_overlay.png"))
                if self.style.legend and item.kind in HEAT_KINDS:
                    out.append(base.with_name(base.name + "_legend.png"))
        if "npy" in fmts or not item.is_map:
            out.append(base.with_name(base.name + ".npy"))
        return out

    def _target(self, rel: str) -> str:
        """The absolute path of ``rel``, its folder made; an existing file is refused unless
        overwriting."""
        path = self._root + (rel if os.sep == "/" else rel.replace("/", os.sep))
        parent, _, name = path.rpartition(os.sep)
        dirs = self._dirs
        if parent in dirs:
            dirs.move_to_end(parent)
            written = dirs[parent]
        else:
            if os.path.isdir(parent):
                written = None
            else:
                os.makedirs(parent, exist_ok=True)
                written = set()
            dirs[parent] = written
            if len(dirs) > 1024:
                dirs.popitem(last=False)  # forgotten: its files are looked for on disk again
        if not self.overwrite:
            if written is None:
                taken = os.path.lexists(path)
            else:
                taken = name in written
                written.add(name)
            if taken:
                raise ExportError(
                    f"{path} exists already; it was not overwritten. Choose another folder or "
                    "allow overwriting."
                )
        return path

    def _save_png(self, rel: str, picture: np.ndarray) -> dict:
        save_png(self._target(rel), picture, self.durable)
        return _record(rel, picture)

    def write(self, item: ExportItem, image: ImageData | None, stem: str | None = None) -> dict:
        """Write ``item``'s files (``stem`` relative to the folder) and return its manifest entry.

        Parameters
        ----------
        item : ExportItem
        image : ImageData or None
            The image the item belongs to: sets the PNG resolution and is under the overlay.
            Without it, maps are written at the frame's size and no overlay is made.
        stem : str, optional
            Relative path without suffix; default ``item.stem()``.
        """
        result = self.write_batch([(item, image, stem)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def write_batch(self, jobs: list[Job]) -> list[dict | Exception]:
        """Write many items; the manifest entry of each, or what went wrong writing it.

        The same files as :meth:`write` item by item, but the heatmaps of items that share a
        map size, frame and image size (a batch's maps of one layer) are coloured, stretched
        and blended in one go. An :class:`ExportError` or ``OSError`` is returned in the
        item's place (the others are still written); other exceptions propagate.
        """
        jobs = [(item, image, stem or item.stem()) for item, image, stem in jobs]
        pictures: dict[int, Any] = {}
        if "png" in self.style.formats:
            groups: dict[tuple, list[int]] = {}
            for i, (item, image, _stem) in enumerate(jobs):
                if item.kind in HEAT_KINDS and item.is_map and np.ndim(item.values) == 2:
                    groups.setdefault((np.shape(item.values), *self._canvas(item, image)), []).append(i)
            for (_shape, frame, h, w), idx in groups.items():
                self._heat_pictures([jobs[i] for i in idx], idx, frame, h, w, pictures)
        out: list[dict | Exception] = []
        for i, (item, image, stem) in enumerate(jobs):
            try:
                out.append(self._write_one(item, image, stem, pictures.get(i)))
            except (MaskviewerError, OSError) as exc:
                out.append(exc)
        for _rel, stack in self._stacks.values():
            stack.flush()  # a batch's rows in one write per array
        return out

    @staticmethod
    def _canvas(item: ExportItem, image: ImageData | None) -> tuple[Frame, int, int]:
        """The frame and the picture size ``(h, w)`` an item's map is drawn at."""
        frame = item.frame
        assert frame is not None
        if image is not None:
            return frame, image.height, image.width
        h, w = max(1, round(frame.height)), max(1, round(frame.width))
        return Frame(0.0, 0.0, float(w), float(h)), h, w

    def _heat_pictures(
        self, jobs: list[Job], idx: list[int], frame: Frame, h: int, w: int, out: dict[int, Any]
    ) -> None:
        """Heatmaps (and overlays) of same-sized maps over the same frame into ``out``."""
        stack = np.stack([np.asarray(item.values, dtype=np.float32) for item, _, _ in jobs])
        rgba, ranges = heatmaps_rgba(stack, frame, h, w, self.style, [item.vrange for item, _, _ in jobs])
        overs: list[np.ndarray | None] = [None] * len(jobs)
        if self.style.overlay:
            backgrounds: dict[int, np.ndarray] = {}
            with_image = [k for k, (_, image, _) in enumerate(jobs) if image is not None]
            for k in with_image:
                image = jobs[k][1]
                if id(image) not in backgrounds:
                    backgrounds[id(image)] = image_rgb(image)
            if with_image:
                under = np.stack([backgrounds[id(jobs[k][1])] for k in with_image])
                blended = composite(under, rgba[with_image], self.style.alpha)
                for n, k in enumerate(with_image):
                    overs[k] = blended[n]
        for k, i in enumerate(idx):
            out[i] = (rgba[k], overs[k], ranges[k])

    def _write_one(self, item: ExportItem, image: ImageData | None, stem: str, picture: Any) -> dict:
        fmts = self.style.formats
        entry: dict[str, Any] = {
            "image": item.image,
            "kind": item.kind,
            NAME_KEYS[item.kind]: item.name,
            "method": item.method or None,
            "class": None if item.class_index is None else int(item.class_index),
        }
        files: dict[str, dict] = {}
        values = np.asarray(item.values)
        if "npy" in fmts or not item.is_map:
            raw = values if values.dtype == np.bool_ else values.astype(np.float32, copy=False)
            if self.npy_layout == "stacked":
                rel, stack = self._stack(item, raw)
                files["npy"] = {**_record(rel, raw), "row": stack.append(raw)}
                entry["npy_row"] = files["npy"]["row"]
            else:
                rel = stem + ".npy"
                save_npy(self._target(rel), raw, self.durable)
                files["npy"] = _record(rel, raw)
        if "png" in fmts:
            if item.tiles is not None:
                files["grid"] = self._save_png(stem + "_grid.png", montage_rgba(item.tiles, self.style, item.vrange))
            if item.is_map:
                files.update(self._write_pictures(item, values, image, stem, picture))
        colours = files.pop("colour_range", None)
        if colours is not None:
            entry["colour_range"] = [float(colours["lo"]), float(colours["hi"])]
        entry["files"] = files
        # the PNG and NPY at the top, as the manifest promises: paths, shapes and dtypes
        for role in ("png", "npy"):
            entry[role] = files.get(role, {}).get("path")
        main = files.get("npy") or files.get("png")
        entry["shape"] = main["shape"] if main else list(values.shape)
        entry["dtype"] = main["dtype"] if main else str(values.dtype)
        entry.update(item.info)
        return entry

    def _stack(self, item: ExportItem, raw: np.ndarray) -> tuple[str, NpyStack]:
        """The stacked array ``item``'s values go into (made on first use)."""
        name = item.stem()
        key = (name, raw.shape, raw.dtype.str)
        found = self._stacks.get(key)
        if found is None:
            if name in self._stack_names:  # the same map at another size: its own stack
                name = f"{name}_{'x'.join(str(d) for d in raw.shape) or 'scalar'}"
            self._stack_names.add(name)
            rel = f"{self.stack_dir}/{name}.npy" if self.stack_dir else f"{name}.npy"
            found = (rel, NpyStack(self._target(rel), raw.shape, raw.dtype))
            self._stacks[key] = found
        return found

    def close(self) -> list[str]:
        """Finish the stacked arrays (headers written, files renamed into place); their paths."""
        done = []
        stacks, self._stacks = self._stacks, {}
        try:
            while stacks:
                _key, (rel, stack) = stacks.popitem()
                stack.close(fsync=self.durable)
                done.append(rel)
        finally:
            for _rel, stack in stacks.values():
                stack.abandon()
        return done

    def abandon(self) -> None:
        """Drop unfinished stacked arrays (an export that failed or was cancelled)."""
        stacks, self._stacks = self._stacks, {}
        for _rel, stack in stacks.values():
            stack.abandon()

    def _write_pictures(
        self, item: ExportItem, values: np.ndarray, image: ImageData | None, stem: str, made: Any
    ) -> dict[str, dict]:
        files: dict[str, dict] = {}
        if values.ndim == 3:  # a grid's map stack: the picture is the montage
            return files
        frame, h, w = self._canvas(item, image)
        if item.kind in HEAT_KINDS:
            if made is None:  # not coloured with its batch
                jobs: list[Job] = [(item, image, stem)]
                done: dict[int, Any] = {}
                self._heat_pictures(jobs, [0], frame, h, w, done)
                made = done[0]
            picture, over, (lo, hi) = made
            files["colour_range"] = {"lo": lo, "hi": hi}
            if self.style.legend:
                legend = legend_rgba(self.style.colormap, lo, hi, item.caption or item.method)
                files["legend"] = self._save_png(stem + "_legend.png", legend)
        else:
            background = image_rgb(image) if image is not None and self.style.overlay else None
            weight = map_on_image(values.astype(np.float32), frame, h, w, order="nearest")
            over = tint_overlay(background, weight, MASK_TINT, self.style.alpha) if background is not None else None
            if item.kind == "binary":
                # the exact mask at the map's own resolution; the overlay shows it on the image
                picture = values.astype(np.uint8) * 255
            else:  # mask: image pixels
                picture = mask_png_array(values)
        files["png"] = self._save_png(stem + ".png", picture)
        if over is not None:
            files["overlay"] = self._save_png(stem + "_overlay.png", over)
        return files


# ---------------------------------------------------------------------------------------------
# The manifest


def tool_version() -> str:
    from maskviewer import __version__

    return __version__


class Manifest:
    """Collects manifest entries on disk (one JSON line each) and writes ``manifest.json``.

    Entries are spooled to a hidden file in the output folder as they come, so memory stays
    bounded however many artifacts a run writes; :meth:`finish` streams them into the final
    file (atomically) and removes the spool.

    Parameters
    ----------
    out_dir : path
    name : str
        The manifest's file name (``manifest.json``; shards use their own).
    """

    def __init__(self, out_dir: str | os.PathLike, name: str = MANIFEST_NAME) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / name
        fd, spool = tempfile.mkstemp(prefix=f".{name}.", suffix=".jsonl", dir=self.out_dir)
        self._spool_path = Path(spool)
        self._spool = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0
        self.failures: list[dict] = []

    def add(self, entry: dict) -> None:
        self._spool.write(_json_line(entry) + "\n")
        self.count += 1

    def add_failure(self, image: str, message: str) -> None:
        """An image that could not be exported (kept in memory: failures are few)."""
        self.failures.append({"image": image, "error": message})

    def finish(self, header: dict) -> Path:
        """Write ``manifest.json``: ``header`` fields, then ``failures`` and ``artifacts``."""
        self._spool.close()
        head = dict(_jsonable(header))
        head.setdefault("tool", "maskviewer")
        head.setdefault("version", tool_version())
        head.setdefault("manifest_version", MANIFEST_VERSION)
        head.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        head["artifact_count"] = self.count
        head["failures"] = _jsonable(self.failures)
        try:
            with atomic_write(self.path, "w") as out:
                text = json.dumps(head, indent=2, allow_nan=False)
                out.write(text[:-2] + ',\n  "artifacts": [')  # reopen the object for the list
                with open(self._spool_path, encoding="utf-8") as spool:
                    for i, line in enumerate(spool):
                        out.write(("\n    " if i == 0 else ",\n    ") + line.rstrip("\n"))
                out.write("\n  ]\n}\n")
        finally:
            with contextlib.suppress(OSError):
                self._spool_path.unlink()
        return self.path

    def abandon(self) -> None:
        """Drop the spool without writing a manifest."""
        with contextlib.suppress(OSError):
            self._spool.close()
        with contextlib.suppress(OSError):
            self._spool_path.unlink()


def read_manifest(path: str | os.PathLike) -> dict:
    """Load a ``manifest.json`` (a folder: its ``manifest.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_files(entry: dict) -> Iterable[tuple[str, dict]]:
    """``(role, record)`` for every file of a manifest entry (records with a ``path``)."""
    for role, rec in entry.get("files", {}).items():
        if isinstance(rec, dict) and "path" in rec:
            yield role, rec


def load_npy(out_dir: str | os.PathLike, entry: dict, mmap: bool = False) -> np.ndarray:
    """The raw values a manifest entry (or its ``files["npy"]`` record) points to.

    A stacked array's row for stacked layouts, the whole file otherwise. ``mmap`` maps the file
    instead of reading it (a stacked array of a big folder).
    """
    record = entry["files"]["npy"] if "files" in entry else entry
    data = np.load(Path(out_dir) / record["path"], mmap_mode="r" if mmap else None, allow_pickle=False)
    row = record.get("row")
    return data if row is None else data[row]


def export_items(
    out_dir: str | os.PathLike,
    items: list[ExportItem],
    images: dict[str | None, ImageData | None],
    *,
    style: ExportStyle | None = None,
    settings: dict | None = None,
    model_path: str | None = None,
    model_sha256: str | None = None,
    overwrite: bool = False,
    prefix: str = "",
) -> Path:
    """Write ``items`` into ``out_dir`` with a manifest (what the window's export does).

    Parameters
    ----------
    images : dict
        Image path -> the image (under the overlays, sets the PNG size).
    prefix : str
        Sub-folder (relative) for the files, e.g. the image's name.

    Returns
    -------
    Path
        The manifest.

    Raises
    ------
    ExportError
        The folder is not writable or a file exists and ``overwrite`` is off.
    """
    out = check_writable(out_dir)
    style = style or ExportStyle()
    writer = ArtifactWriter(out, style, overwrite=overwrite)
    if not overwrite:
        taken = [str(p) for p in planned(writer, items, images, prefix) if p.exists()]
        if (out / MANIFEST_NAME).exists():
            taken.append(str(out / MANIFEST_NAME))
        if taken:
            raise ExportError(
                f"{len(taken)} file(s) exist already, e.g. {taken[0]}; nothing was overwritten."
            )
    manifest = Manifest(out)
    try:
        jobs = [(item, images.get(item.image), f"{prefix}/{item.stem()}" if prefix else item.stem()) for item in items]
        for result in writer.write_batch(jobs):
            if isinstance(result, BaseException):
                raise result
            manifest.add(result)
    except BaseException:
        manifest.abandon()
        raise
    model = None
    if model_path:
        if model_sha256 is None:
            from maskviewer.inference.loading import file_sha256

            model_sha256 = file_sha256(model_path)
        model = {"path": str(model_path), "sha256": model_sha256}
    return manifest.finish(
        {"source": "window", "model": model, "settings": {**(settings or {}), "style": style.to_dict()}}
    )


def planned(
    writer: ArtifactWriter, items: list[ExportItem], images: dict, prefix: str = ""
) -> list[Path]:
    """Every file an export of ``items`` would write."""
    out = []
    for item in items:
        stem = f"{prefix}/{item.stem()}" if prefix else item.stem()
        out.extend(writer.planned_paths(item, stem, images.get(item.image) is not None))
    return out
