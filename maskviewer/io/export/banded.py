"""Large export pictures, made and encoded band of rows by band.

A map drawn on a 14,000² image is 784 MB of RGBA and its overlay 588 MB of RGB; as whole
arrays (with their float intermediates) one such item took gigabytes. Here each band of rows is
upsampled, coloured and blended (:mod:`~maskviewer.io.export.pictures`) and handed to a
streaming PNG encoder (:class:`~maskviewer.io.export.encoding.PngStream`) writing into the
file's atomic temporary: memory follows one band, and the files are the same pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from maskviewer.core.image import ImageData
from maskviewer.io.atomic import atomic_write
from maskviewer.io.export import naming
from maskviewer.io.export.encoding import PngStream
from maskviewer.io.export.items import ExportItem
from maskviewer.io.export.pictures import (
    enlarge,
    heat_bands,
    legend_rgba,
    mask_png_array,
    picture_scale,
    tint_bands,
)

if TYPE_CHECKING:
    from maskviewer.io.export.writing import ArtifactWriter


def write_banded(
    writer: ArtifactWriter, item: ExportItem, values: np.ndarray, image: ImageData | None, stem: str,
    frame: Any, size: tuple[int, int],
) -> dict[str, dict]:
    """The files :meth:`ArtifactWriter._write_pictures` makes, for a picture of ``size``
    ``(h, w)`` too large to hold whole; their records (and the colours' value range)."""
    h, w = size
    files: dict[str, dict] = {}
    style = writer.style
    with_over = image is not None and style.overlay
    f = picture_scale(style.scale, h, w)  # heatmaps and overlays enlarged as a whole picture is
    if item.is_heat:
        bands, (lo, hi) = heat_bands(item, image, frame, h, w, style)
        files["colour_range"] = {"lo": lo, "hi": hi}
        if style.legend:
            legend = legend_rgba(style.colormap, lo, hi, item.caption or item.method)
            files["legend"] = writer._save_png(stem, "legend", legend)
        roles = {"png": (h * f, w * f, 4)}
        if with_over:
            roles["overlay"] = (h * f, w * f, 3)
        scaled = (tuple(None if p is None else enlarge(p, f) for p in parts) for parts in bands)
        files.update(stream_pngs(writer, stem, roles, scaled))
        return files
    if item.kind == "binary":  # the exact mask at the map's own resolution
        files["png"] = writer._save_png(stem, "png", values.astype(np.uint8) * 255)
    else:
        files["png"] = writer._save_png(stem, "png", mask_png_array(values))
    if with_over:
        assert image is not None
        tints = ((enlarge(band, f),) for band in tint_bands(values, image, frame, h, w, style.alpha))
        files.update(stream_pngs(writer, stem, {"overlay": (h * f, w * f, 3)}, tints))
    return files


def stream_pngs(
    writer: ArtifactWriter, stem: str, roles: dict[str, tuple[int, ...]], bands: Iterator[tuple]
) -> dict[str, dict]:
    """Write one uint8 PNG per role (of the whole picture's shape) from bands of rows: each band
    gives one part per role, in order. Every file is renamed into place only when complete."""
    rels = {role: naming.file_name(stem, role) for role in roles}
    with contextlib.ExitStack() as files:
        streams = [
            PngStream(files.enter_context(atomic_write(writer._target(rels[role]), fsync=writer.durable)), shape)
            for role, shape in roles.items()
        ]
        for parts in bands:
            for stream, part in zip(streams, parts, strict=False):
                stream.write(part)
        for stream in streams:
            stream.close()
    return {role: {"path": rels[role], "shape": list(shape), "dtype": "uint8"} for role, shape in roles.items()}
