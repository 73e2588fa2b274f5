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
``.npy`` per map (:class:`NpyStack`); :func:`load_npy` reads an entry's values either way.
:meth:`ArtifactWriter.write_batch` colours a batch's same-sized maps in a few array operations.
Every file is written atomically; :class:`Manifest` spools one JSON line per artifact, so a run
over 100k images keeps bounded memory, and writes ``manifest.json`` at the end.

The modules, by job: :mod:`~maskviewer.io.export.items` (what is exported and how it looks),
:mod:`~maskviewer.io.export.naming` (every file name and path),
:mod:`~maskviewer.io.export.pictures` (the pixels), :mod:`~maskviewer.io.export.encoding`
(PNG and NPY bytes), :mod:`~maskviewer.io.export.writing` (every file written),
:mod:`~maskviewer.io.export.manifest` (the manifest, and reading an export back) and
:mod:`~maskviewer.io.export.patches` (the patch tool's files).

numpy and Pillow only: the command line and the window share this package.
"""

from maskviewer.io.export.encoding import PNG_STORE_BELOW, encode_png, encode_png_pillow
from maskviewer.io.export.items import (
    HEAT_KINDS,
    KINDS,
    MASK_TINT,
    NAME_KEYS,
    NPY_LAYOUTS,
    ExportError,
    ExportItem,
    ExportStyle,
)
from maskviewer.io.export.manifest import (
    MANIFEST_VERSION,
    Manifest,
    export_items,
    iter_files,
    load_npy,
    read_manifest,
    tool_version,
)
from maskviewer.io.export.naming import MANIFEST_NAME, image_prefix, planned, safe_name
from maskviewer.io.export.pictures import (
    heatmaps_rgba,
    image_rgb,
    legend_rgba,
    map_on_image,
    mask_png_array,
    montage_rgba,
    tint_overlay,
)
from maskviewer.io.export.writing import (
    ArtifactWriter,
    Job,
    NpyStack,
    check_writable,
    save_npy,
    save_png,
)

__all__ = [
    "HEAT_KINDS", "KINDS", "MANIFEST_NAME", "MANIFEST_VERSION", "MASK_TINT", "NAME_KEYS", "NPY_LAYOUTS",
    "PNG_STORE_BELOW", "ArtifactWriter", "ExportError", "ExportItem", "ExportStyle", "Job", "Manifest",
    "NpyStack", "check_writable", "encode_png", "encode_png_pillow", "export_items", "heatmaps_rgba",
    "image_prefix", "image_rgb", "iter_files", "legend_rgba", "load_npy", "map_on_image",
    "mask_png_array", "montage_rgba", "planned", "read_manifest", "safe_name", "save_npy", "save_png",
    "tint_overlay", "tool_version",
]
