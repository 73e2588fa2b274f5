"""The one place export file names and paths are made.

Every artifact file is ``STEM`` plus a suffix per role (:data:`SUFFIXES`); a stem is the item's
kind, name, method and class (:func:`item_stem`), under a sub-folder per image
(:func:`image_prefix`, :func:`prefixed`). Stacked raw values go to one ``.npy`` per stem in
the stack folder (:func:`stack_path`), patches to ``patch_NNNN_rR_cC.png``
(:func:`patch_png_name`). :func:`planned_paths` lists what an export of an item will write,
so the window can ask before overwriting. No other module of the export builds a name.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maskviewer.io.export.items import ExportItem, ExportStyle
    from maskviewer.io.export.writing import ArtifactWriter

MANIFEST_NAME = "manifest.json"
#: the file suffix of each role a manifest entry's ``files`` lists
SUFFIXES = {
    "png": ".png",
    "overlay": "_overlay.png",
    "legend": "_legend.png",
    "grid": "_grid.png",
    "npy": ".npy",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9+._-]+")


def safe_name(text: str) -> str:
    """``text`` with anything but letters, digits, ``-``, ``+``, ``.`` and ``_`` replaced by ``_``."""
    return _safe_name(str(text))


@functools.lru_cache(maxsize=4096)  # a folder export asks for the same few names per image
def _safe_name(text: str) -> str:
    out = _UNSAFE.sub("_", text).strip("._")
    return out[:120] or "item"


def item_stem(kind: str, name: str, method: str = "", class_index: int | None = None) -> str:
    """The file name stem of an item: kind, name, method and class, made safe for file systems."""
    parts = [kind, safe_name(name)]
    if method:
        parts.append(safe_name(method))
    if class_index is not None:
        parts.append(f"class{int(class_index)}")
    return "_".join(p for p in parts if p)


def image_prefix(image_path: str | None) -> str:
    """The sub-folder of an image's files: its file stem, made safe (``"image"`` without a path)."""
    return safe_name(Path(image_path).stem) if image_path else "image"


def prefixed(prefix: str, stem: str) -> str:
    """``stem`` inside the relative folder ``prefix`` (none when empty)."""
    return f"{prefix}/{stem}" if prefix else stem


def file_name(stem: str, role: str) -> str:
    """The relative path of the ``role`` file (see :data:`SUFFIXES`) of ``stem``."""
    return stem + SUFFIXES[role]


def stack_name(stem: str, shape: tuple[int, ...], taken: set[str]) -> str:
    """The name of a stacked array of ``stem``'s values: the stem, or, when a stack of that stem
    exists at another size, the stem with the row shape (``stem_4x3``)."""
    if stem not in taken:
        return stem
    return f"{stem}_{'x'.join(str(d) for d in shape) or 'scalar'}"


def stack_path(stack_dir: str, name: str) -> str:
    """The relative path of the stacked array ``name`` in ``stack_dir`` (may be empty)."""
    return file_name(f"{stack_dir}/{name}" if stack_dir else name, "npy")


def patch_png_name(n: int, count: int, row: int, col: int) -> str:
    """``patch_NNNN_rR_cC.png``: the patch number zero-padded to the width of the largest."""
    width = max(4, len(str(count - 1)))
    return f"patch_{n:0{width}d}_r{row}_c{col}.png"


def spool_affixes(manifest_name: str) -> tuple[str, str]:
    """The suffix and prefix of the hidden file a manifest's entries are spooled to."""
    return ".jsonl", f".{manifest_name}."


def native_path(root: str, rel: str) -> str:
    """``rel`` (``/``-separated) under ``root`` (a folder path ending in the separator)."""
    return root + (rel if os.sep == "/" else rel.replace("/", os.sep))


def planned_roles(item: ExportItem, style: ExportStyle, with_image: bool = True) -> list[str]:
    """The roles of the files an export of ``item`` in ``style`` may write."""
    fmts = style.formats
    out: list[str] = []
    if "png" in fmts:
        if item.tiles is not None:
            out.append("grid")
        if item.is_map:
            out.append("png")
            if style.overlay and with_image:
                out.append("overlay")
            if style.legend and item.is_heat:
                out.append("legend")
    if "npy" in fmts or not item.is_map:
        out.append("npy")
    return out


def planned_paths(
    out_dir: str | os.PathLike, item: ExportItem, stem: str, style: ExportStyle, with_image: bool = True
) -> list[Path]:
    """The files an export of ``item`` as ``stem`` (relative to ``out_dir``) would create."""
    base = Path(out_dir) / stem
    return [base.with_name(file_name(base.name, role)) for role in planned_roles(item, style, with_image)]


def planned(writer: ArtifactWriter, items: Iterable[ExportItem], images: dict, prefix: str = "") -> list[Path]:
    """Every file an export of ``items`` by ``writer`` would write (``images``: path -> image)."""
    out = []
    for item in items:
        stem = prefixed(prefix, item.stem())
        out.extend(writer.planned_paths(item, stem, images.get(item.image) is not None))
    return out


def existing(writer: ArtifactWriter, items: Iterable[ExportItem], images: dict, prefix: str = "") -> list[Path]:
    """The files of an export of ``items`` (and its manifest) that exist already."""
    taken = [p for p in planned(writer, items, images, prefix) if p.exists()]
    manifest = Path(writer.out_dir) / MANIFEST_NAME
    if manifest.exists():
        taken.append(manifest)
    return taken
