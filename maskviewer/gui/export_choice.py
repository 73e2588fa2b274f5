"""What the export dialog decides, without Qt: which items are offered and chosen, in which
formats and scale, into which folder; their names and preview pictures; the default folder.

:class:`~maskviewer.gui.export_dialog.ExportDialog` shows this; the export tool asks the
dialog for an :class:`ExportChoice` and writes only what it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskviewer.io.export import ExportItem

#: format choice -> the ExportStyle formats, in the order the dialog lists them
FORMATS = {"both": ("png", "npy"), "png": ("png",), "npy": ("npy",)}
FORMAT_LABELS = {
    "both": "PNG pictures and NPY values",
    "png": "PNG pictures only",
    "npy": "NPY values only (raw numbers)",
}
#: the picture scales offered ("auto": small maps enlarged until readable)
SCALES: tuple[int | str, ...] = ("auto", 1, 2, 4, 8)
#: an item's kind as the dialog names it
KIND_LABELS = {
    "activation": "Layer map",
    "attention": "Attention map",
    "cam": "Class activation map",
    "prediction": "Model output",
    "patch": "Patch map",
    "binary": "Binary output",
    "mask": "Mask",
}
#: the sub-folder of the user's pictures (or documents, or home) folder exports go to by default
DEFAULT_SUBFOLDER = "maskviewer"


@dataclass
class ExportChoice:
    """The dialog's answer.

    Attributes
    ----------
    folder : str
        Where the files go.
    chosen : list of int
        Indices into the offered items.
    formats : str
        A key of :data:`FORMATS`.
    scale : int or "auto"
        The picture scale (``ExportStyle.scale``).
    legend, overlay : bool
        Colour-bar legends; heatmaps blended over the image.
    """

    folder: str
    chosen: list[int] = field(default_factory=list)
    formats: str = "both"
    scale: int | str = "auto"
    legend: bool = False
    overlay: bool = True

    @property
    def format_tuple(self) -> tuple[str, ...]:
        return FORMATS.get(self.formats, FORMATS["both"])


def was_made(item: ExportItem) -> bool:
    """Whether ``item`` shows something that was made: not a mask nobody painted (all zero),
    not a map without a single finite value."""
    values = np.asarray(item.values)
    if values.size == 0:
        return False
    if item.kind == "mask":
        return bool(np.any(values))
    if values.dtype.kind == "f":
        return bool(np.isfinite(values).any())
    return True


def offered(items: list[ExportItem]) -> list[ExportItem]:
    """The items the dialog lists: those that were made (see :func:`was_made`)."""
    return [item for item in items if was_made(item)]


def item_title(item: ExportItem) -> str:
    """One line naming an item: what it is, of what, how (``Layer map · conv2 · mean``)."""
    parts = [KIND_LABELS.get(item.kind, item.kind), item.name]
    if item.method and item.method.casefold() not in (item.kind, item.name.casefold(), "none"):
        parts.append(item.method)
    if item.class_index is not None:
        parts.append(f"class {item.class_index}")
    return " · ".join(parts)


def item_detail(item: ExportItem) -> str:
    """The item's size and file stem (what the files will be called)."""
    values = np.asarray(item.values)
    if not item.is_map:  # a few numbers: show them
        flat = values.reshape(-1).astype(np.float64)
        if flat.size <= 3:
            what = f"{flat.size} value{'s' if flat.size != 1 else ''}: " + ", ".join(f"{v:.4g}" for v in flat)
        else:
            top = int(np.nanargmax(flat)) if np.isfinite(flat).any() else 0
            what = f"{flat.size} values, largest {flat[top]:.4g} (#{top})"
    else:
        shape = "×".join(str(d) for d in values.shape)
        what = f"{shape} {'channel maps' if values.ndim == 3 else 'map'}"
    return f"{what} → {item.stem()}.*"


def thumbnail_rgba(item: ExportItem, colormap: str = "viridis") -> np.ndarray | None:
    """A small picture of ``item``: ``(h, w, 4)`` uint8 at the map's own resolution (the
    dialog scales it), or None for values that are not a map (class scores)."""
    from maskviewer.core.heatmap import colorize, normalize

    values = np.asarray(item.values)
    if values.ndim == 3 and item.is_heat:
        from maskviewer.io.export import ExportStyle, montage_rgba

        return montage_rgba(values.astype(np.float32), ExportStyle(colormap), min_tile=1)
    if values.ndim != 2:
        return None
    if not item.is_heat:  # masks and binary outputs: white on black
        grey = (np.clip(values.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    v = values.astype(np.float32)
    units, _ = normalize(np.nan_to_num(v, nan=float(np.nanmin(v)) if np.isfinite(v).any() else 0.0), "per_map")
    rgba = colorize(units, colormap)
    rgba[~np.isfinite(v), 3] = 0
    return rgba


def is_inside(path: str | Path, roots: list[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies under one (links resolved)."""
    try:
        p = Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            r = root.resolve()
        except (OSError, RuntimeError):
            continue
        if p == r or r in p.parents:
            return True
    return False


def package_roots() -> list[Path]:
    """The folders of the installed package and its bundled resources (never written into)."""
    import maskviewer
    from maskviewer.demo import resources_dir

    return [Path(maskviewer.__file__).resolve().parent, resources_dir()]


def default_folder(remembered: str | None, locations: list[str]) -> str:
    """The folder the dialog starts in: the one remembered from the last export, unless it is
    gone or inside the package; else :data:`DEFAULT_SUBFOLDER` in the first of ``locations``
    (the user's pictures, documents, home folders) that exists outside the package."""
    roots = package_roots()
    if remembered and Path(remembered).is_dir() and not is_inside(remembered, roots):
        return str(remembered)
    for loc in locations:
        if loc and Path(loc).is_dir() and not is_inside(loc, roots):
            return str(Path(loc) / DEFAULT_SUBFOLDER)
    return str(Path.home() / DEFAULT_SUBFOLDER)
