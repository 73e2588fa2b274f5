"""The pictures an export writes, as arrays: heatmaps stretched onto the image, overlays,
colour-bar legends, channel montages, mask pictures and tinted mask overlays.

numpy only (Pillow draws the legend's text); nothing here writes a file.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from maskviewer.core.heatmap import (
    channel_grid,
    colorize,
    colormap_lut,
    composite,
    normalize,
    to_indices,
)
from maskviewer.core.image import ImageData, display_range, display_uint8
from maskviewer.core.mapping import Frame
from maskviewer.io.export.items import (
    AUTO_SCALE_SIDE,
    MASK_TINT,
    MAX_SCALE,
    ExportItem,
    ExportStyle,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: a coloured map with its overlay (None without an image) and the value range its colours span
HeatPicture = tuple[np.ndarray, "np.ndarray | None", "tuple[float, float]"]
#: pictures of more pixels than this are made (and encoded) band by band, never whole: the
#: memory of an export follows the model's maps, not the image's pixel count
BAND_ABOVE = 1 << 22
#: about this many pixels per band
BAND_PIXELS = 1 << 20


def is_large(height: int, width: int) -> bool:
    """Whether a picture of this size is made band by band (see :data:`BAND_ABOVE`)."""
    return height * width > BAND_ABOVE


def band_rows(height: int, width: int) -> Iterator[tuple[int, int]]:
    """``(r0, r1)`` row ranges of about :data:`BAND_PIXELS` pixels covering ``height`` rows."""
    step = max(1, BAND_PIXELS // max(1, width))
    for r0 in range(0, height, step):
        yield r0, min(height, r0 + step)


def picture_scale(scale: int | str, height: int, width: int) -> int:
    """The whole factor a ``height`` x ``width`` picture is enlarged by (see ``ExportStyle.scale``):
    ``scale`` itself, or for ``"auto"`` the least one that makes the short side at least
    :data:`AUTO_SCALE_SIDE` pixels (1 for pictures that are that large already)."""
    if scale != "auto":
        return int(scale)
    short = max(1, min(int(height), int(width)))
    return int(min(MAX_SCALE, max(1, -(-AUTO_SCALE_SIDE // short))))


def enlarge(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` (rows, columns, ...) with every pixel a ``factor`` x ``factor`` block (nearest
    neighbour: no value is made up, a small map stays readable)."""
    if factor <= 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def image_rgb(
    image: ImageData, rows: tuple[int, int] | None = None, span: tuple[float, float] | None = None
) -> np.ndarray:
    """The image as ``(H, W, 3)`` uint8, as the window shows it (only ``rows`` = ``(r0, r1)``
    of it if given).

    uint8 stays; other dtypes are scaled by their full-scale value (floats outside 0..full
    scale by their own range; ``span`` gives that range, for bands of one image); grey becomes
    RGB, alpha is dropped.
    """
    a = image.array
    if a.dtype == np.uint8:
        out = a if rows is None else a[rows[0] : rows[1]]
    else:
        lo, hi = span if span is not None else _rgb_range(image)
        if rows is not None:
            a = a[rows[0] : rows[1]]
        out = display_uint8(a, lo, hi)  # a constant image: flat grey, never NaN
    c = out.shape[2]
    if c in (1, 2):
        return np.repeat(out[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(out[:, :, :3])


def _rgb_range(image: ImageData) -> tuple[float, float]:
    """The values :func:`image_rgb` maps to 0 and 255 (the whole image's, for every band)."""
    return display_range(image.array, image.value_max)


def _axis_samples(start: float, length: float, cells: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (in map pixels, pixel j spanning [j, j+1)) of ``n`` image pixel centres."""
    centres = np.arange(n, dtype=np.float64) + 0.5
    u = (centres - start) / max(length, 1e-12) * cells
    inside = (u >= 0.0) & (u < cells)
    return u, inside


@functools.lru_cache(maxsize=64)
def _sampler(frame: Frame, mh: int, mw: int, height: int, width: int, order: str) -> tuple:
    """Where each image row and column samples a ``(mh, mw)`` map over ``frame``, and which
    lie inside it (per axis: memory follows height + width; cached, a folder's images usually
    share their size and frame)."""
    uy, in_y = _axis_samples(frame.y, frame.height, mh, height)
    ux, in_x = _axis_samples(frame.x, frame.width, mw, width)
    if order == "nearest":
        yi = np.clip(np.floor(uy), 0, mh - 1).astype(np.intp)
        xi = np.clip(np.floor(ux), 0, mw - 1).astype(np.intp)
        return yi, xi, in_y, in_x

    def axis(u: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = u - 0.5
        floor = np.floor(pos)
        lo = np.clip(floor, 0, m - 1).astype(np.intp)
        hi = np.clip(np.ceil(pos), 0, m - 1).astype(np.intp)
        return lo, hi, (pos - floor).astype(np.float32)

    return (*axis(uy, mh), *axis(ux, mw), in_y, in_x)


def map_on_image(
    values: np.ndarray, frame: Frame, height: int, width: int, order: str = "linear",
    rows: tuple[int, int] | None = None,
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
    rows : (int, int), optional
        Only image rows ``r0:r1`` (a band of a large picture; the same values as those rows
        of the whole).

    Returns
    -------
    ndarray, float32, ``(height, width)`` (``(n, height, width)`` for a stack; ``r1 - r0``
    rows with ``rows``)
    """
    v = np.asarray(values, dtype=np.float32)
    mh, mw = v.shape[-2:]
    sample = _sampler(frame, int(mh), int(mw), int(height), int(width), order)
    band = slice(None) if rows is None else slice(rows[0], rows[1])
    if order == "nearest":
        yi, xi, in_y, in_x = sample
        out = v[..., yi[band], :][..., xi].astype(np.float32)
    else:
        y0, y1, fy, x0, x1, fx, in_y, in_x = sample
        y0, y1, fy = y0[band], y1[band], fy[band]
        mixed = v[..., y0, :] + (v[..., y1, :] - v[..., y0, :]) * fy[:, None]
        out = mixed[..., x0] + (mixed[..., x1] - mixed[..., x0]) * fx
    out = out.astype(np.float32, copy=False)
    out[..., ~(in_y[band, None] & in_x[None, :])] = np.nan
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
    units, ranges = heat_units(stack, style, vranges)
    return _colour_on_image(units, frame, height, width, style), ranges


def heat_units(
    stack: np.ndarray, style: ExportStyle, vranges: Sequence[tuple[float, float] | None]
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Maps ``(n, h, w)`` normalised to 0..1 at their own resolution (as the window does),
    and each map's ``(lo, hi)``."""
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
        return units, ranges
    units = np.empty(stack.shape, dtype=np.float32)
    ranges = []
    for i, vrange in enumerate(vranges):
        m = mode
        if m == "shared" and vrange is None:  # nothing to share with: its own range
            m = "per_map"
        # as the window: the shared range (a layer's, a CAM's 0..1) only in "shared" mode
        units[i], lohi = normalize(stack[i], m, vrange=vrange if m == "shared" else None)
        ranges.append(lohi)
    return units, ranges


def _colour_on_image(
    units: np.ndarray, frame: Frame, height: int, width: int, style: ExportStyle,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    on_image = map_on_image(units, frame, height, width, rows=rows)
    # one 4-byte gather per pixel (opaque colours), then the outside made transparent: a few
    # times faster than gathering three bytes and writing alpha apart
    packed = np.ascontiguousarray(_rgba_lut(style.colormap)[to_indices(np.nan_to_num(on_image, nan=0.0))])
    rgba = packed.view(np.uint8).reshape(*on_image.shape, 4)
    rgba[..., 3][np.isnan(on_image)] = 0
    return rgba


@functools.lru_cache(maxsize=16)
def _rgba_lut(colormap: str) -> np.ndarray:
    """The colour map as 256 opaque RGBA pixels packed in uint32 (the bytes in memory order)."""
    lut = np.concatenate([colormap_lut(colormap), np.full((256, 1), 255, np.uint8)], axis=1)
    packed = np.ascontiguousarray(lut).view(np.uint32).reshape(256)
    packed.flags.writeable = False
    return packed


def _blend(image: np.ndarray, rgba: np.ndarray, opacity: float) -> np.ndarray:
    """:func:`~maskviewer.core.heatmap.composite` of a heatmap whose alpha is 0 or 255 (every
    export heatmap): the same numbers, with the blend weight a scalar instead of an array."""
    a = np.float32(float(np.clip(opacity, 0.0, 1.0)))  # composite's 255 / 255.0 * opacity
    out = image.astype(np.float32) * (np.float32(1.0) - a) + rgba[..., :3].astype(np.float32) * a
    blended = np.clip(out + np.float32(0.5), 0, 255).astype(np.uint8)
    clear = rgba[..., 3] == 0
    blended[clear] = image[clear]  # composite gives the image itself where the map is transparent
    return blended


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



def canvas(item: ExportItem, image: ImageData | None) -> tuple[Frame, int, int]:
    """The frame and the picture size ``(h, w)`` an item's map is drawn at: the image's size,
    or without an image the frame's own size (the map then fills the picture)."""
    frame = item.frame
    assert frame is not None
    if image is not None:
        return frame, image.height, image.width
    h, w = max(1, round(frame.height)), max(1, round(frame.width))
    return Frame(0.0, 0.0, float(w), float(h)), h, w


def heat_pictures(
    items: Sequence[ExportItem], images: Sequence[ImageData | None], frame: Frame, h: int, w: int,
    style: ExportStyle,
) -> list[HeatPicture]:
    """Heatmaps (and overlays) of same-sized maps over the same frame, in a few array operations.

    Returns, per item, its RGBA heatmap, its overlay over its image (None without an image or
    with overlays off) and the value range its colours span.
    """
    stack = np.stack([np.asarray(item.values, dtype=np.float32) for item in items])
    rgba, ranges = heatmaps_rgba(stack, frame, h, w, style, [item.vrange for item in items])
    overs: list[np.ndarray | None] = [None] * len(items)
    if style.overlay:
        with_image = [k for k, image in enumerate(images) if image is not None]
        backgrounds: dict[int, np.ndarray] = {}  # one RGB copy per image, however many maps
        for k in with_image:
            image = images[k]
            if id(image) not in backgrounds:
                backgrounds[id(image)] = image_rgb(image)
        if with_image:
            under = np.stack([backgrounds[id(images[k])] for k in with_image])
            blended = composite(under, rgba[with_image], style.alpha)
            for n, k in enumerate(with_image):
                overs[k] = blended[n]
    return [(rgba[k], overs[k], ranges[k]) for k in range(len(items))]


def heat_bands(
    item: ExportItem, image: ImageData | None, frame: Frame, h: int, w: int, style: ExportStyle
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray | None]], tuple[float, float]]:
    """A heatmap and its overlay as :func:`heat_pictures` makes them, band of rows by band.

    Returns an iterator of ``(rgba rows, overlay rows or None)`` (the same pixels as the whole
    pictures, in order) and the value range the colours span. Memory follows one band.
    """
    units, ranges = heat_units(np.asarray(item.values, dtype=np.float32)[None], style, [item.vrange])
    span = _rgb_range(image) if image is not None and style.overlay else None

    def bands() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for rows in band_rows(h, w):
            rgba = _colour_on_image(units, frame, h, w, style, rows)[0]
            over = None
            if image is not None and span is not None:
                over = _blend(image_rgb(image, rows, span), rgba, style.alpha)
            yield rgba, over

    return bands(), ranges[0]


def tint_bands(
    values: np.ndarray, image: ImageData, frame: Frame, h: int, w: int, alpha: float
) -> Iterator[np.ndarray]:
    """A mask's tinted overlay on ``image`` (as :func:`tint_overlay`), band of rows by band."""
    span = _rgb_range(image)
    weights = np.asarray(values, dtype=np.float32)
    for rows in band_rows(h, w):
        weight = map_on_image(weights, frame, h, w, order="nearest", rows=rows)
        yield tint_overlay(image_rgb(image, rows, span), weight, MASK_TINT, alpha)
