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
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maskviewer.io.export.items import ExportItem, ExportStyle
    from maskviewer.io.export.writing import ArtifactWriter

MANIFEST_NAME = "manifest.json"
#: the folder of the stacked arrays (shards use a sub-folder of it)
STACK_DIR = "arrays"
#: the hidden files of a running command-line export: its lock and its journal (see
#: :func:`lock_name`, :func:`journal_name`); an image folder can never be hidden
#: (:func:`safe_name` strips leading dots)
RUN_FILE_PREFIX = ".maskviewer-export"
#: every temporary file of an export is ``.NAME.~TOKEN.tmp`` (a random TOKEN; :func:`temp_name`)
TEMP_PATTERN = re.compile(r"^\..+\.~[A-Za-z0-9_-]{6,64}\.tmp$")
_MANIFEST_LIKE = re.compile(r"^manifest(\.shard-\d+-of-\d+)?\.json$")
#: the file suffix of each role a manifest entry's ``files`` lists
SUFFIXES = {
    "png": ".png",
    "overlay": "_overlay.png",
    "legend": "_legend.png",
    "grid": "_grid.png",
    "plot": "_plot.png",
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
    """The file name stem of an item: kind, name, method and class, made safe for file systems.

    A part that repeats one already in the stem is left out (compared without case), and so is
    the method ``none`` (a mask fed to nothing): layer ``attention`` shown by the method
    ``attention`` is ``attention``, not ``attention_attention_attention``; a mask called
    ``mask`` is ``mask``. The manifest keeps kind, name and method apart, so nothing is lost.
    """
    parts = [kind]
    for part in (safe_name(name), safe_name(method) if method and method != "none" else ""):
        if part and part.casefold() not in {p.casefold() for p in parts}:
            parts.append(part)
    if class_index is not None:
        parts.append(f"class{int(class_index)}")
    return "_".join(parts)


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


def stack_name_of(rel: str, stack_dir: str) -> str:
    """The name :func:`stack_name` gave the stacked array at ``rel`` (see :func:`stack_path`)."""
    name = rel[len(stack_dir) + 1:] if stack_dir and rel.startswith(stack_dir + "/") else rel
    return name[: -len(SUFFIXES["npy"])] if name.endswith(SUFFIXES["npy"]) else name


def patch_png_name(n: int, count: int, row: int, col: int) -> str:
    """``patch_NNNN_rR_cC.png``: the patch number zero-padded to the width of the largest."""
    width = max(4, len(str(count - 1)))
    return f"patch_{n:0{width}d}_r{row}_c{col}.png"


def spool_affixes(manifest_name: str) -> tuple[str, str]:
    """The suffix and prefix of the hidden file a manifest's entries are spooled to (a
    :func:`temp_name` with mkstemp's random part)."""
    return ".tmp", f".{manifest_name}.~"


def stack_base(stem: str) -> str:
    """The stem a stacked array is named after: ``stem`` without its image folder."""
    return stem.rpartition("/")[2]


def temp_name(name: str, token: str | None = None) -> str:
    """The hidden temporary file a file ``name`` is built in before it is renamed into place.

    ``token`` (default: 16 random hex digits) makes the name unpredictable; every caller
    creates the file with ``O_EXCL | O_NOFOLLOW``, so a link planted there is refused, never
    followed. Names of this form (and only those) are removed as leftovers of a killed run
    (:data:`TEMP_PATTERN`).
    """
    return f".{name}.~{token or secrets.token_hex(8)}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of the export's temporary files (see :func:`temp_name`)."""
    return TEMP_PATTERN.match(name) is not None


def run_file_name(kind: str, manifest_name: str = MANIFEST_NAME) -> str:
    """The hidden ``lock`` or ``journal`` file of the export whose manifest is ``manifest_name``
    (a shard has its own: ``.maskviewer-export.shard-1-of-3.journal``)."""
    middle = manifest_name[len("manifest"):-len(".json")] if _MANIFEST_LIKE.match(manifest_name) else ""
    return f"{RUN_FILE_PREFIX}{middle}.{kind}"


def reserved_reason(folder: str, stack_dir: str = STACK_DIR) -> str | None:
    """Why an image's folder (or a top-level artifact) named ``folder`` would collide with
    what the export itself keeps in the output folder, or None when it is free.

    Compared without case: on macOS and Windows ``Arrays`` and ``arrays`` are one folder.
    """
    top = folder.split("/", 1)[0].casefold()
    if _MANIFEST_LIKE.match(top):
        return "where the export keeps its manifest"
    if top == stack_dir.strip("/").split("/", 1)[0].casefold():
        return "where the export keeps its stacked arrays"
    if top.startswith(RUN_FILE_PREFIX) or is_temp_name(top):
        return "where the export keeps its lock, journal and temporary files"
    return None


def name_tokens(names: Iterable[str]) -> dict[str, str]:
    """A file-name token per name, unique among ``names`` by construction.

    A name's token is :func:`safe_name` of it, unless another of ``names`` has the same one
    (``inner/conv`` and ``inner_conv``; ``Conv`` and ``conv``, one file on macOS and Windows):
    then each of those gets ``-`` and the first 8 hex digits of its SHA-256 appended (stable:
    the same name always gets the same token, whatever else is exported).

    Raises
    ------
    ExportError
        Two names would still share a file (only names crafted to collide with a hashed token).
    """
    from maskviewer.io.export.items import ExportError

    names = list(dict.fromkeys(str(n) for n in names))
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(safe_name(name).casefold(), []).append(name)
    tokens = {}
    for name in names:
        token = safe_name(name)
        if len(groups[token.casefold()]) > 1:
            token = f"{token[:111]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        tokens[name] = token
    seen: dict[str, str] = {}
    for name, token in tokens.items():
        other = seen.setdefault(token.casefold(), name)
        if other != name:
            raise ExportError(
                f"{other!r} and {name!r} would be written to the same files ({token}); rename one "
                "of them or export them separately."
            )
    return tokens


def unique_stem(item: ExportItem, tokens: dict[str, str]) -> str:
    """``item``'s file stem with its name replaced by its token (see :func:`name_tokens`)."""
    return item_stem(item.kind, tokens.get(item.name, item.name), item.method, item.class_index)


def colliding_jobs(stems: list[str], roles: list[list[str]]) -> dict[int, int]:
    """Jobs that would write a file another job writes (compared without case): job -> the
    earlier job it collides with. ``stems`` and ``roles``: each job's stem and file roles."""
    owner: dict[str, int] = {}
    clash: dict[int, int] = {}
    for i, (stem, job_roles) in enumerate(zip(stems, roles, strict=True)):
        for role in job_roles:
            first = owner.setdefault(file_name(stem, role).casefold(), i)
            if first != i:
                clash.setdefault(i, first)
    return clash


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
        if item.plot is not None:
            out.append("plot")
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
    items = list(items)
    tokens = name_tokens(item.name for item in items)
    for item in items:
        stem = prefixed(prefix, unique_stem(item, tokens))
        out.extend(writer.planned_paths(item, stem, images.get(item.image) is not None))
    return out


def existing(writer: ArtifactWriter, items: Iterable[ExportItem], images: dict, prefix: str = "") -> list[Path]:
    """The files of an export of ``items`` (and its manifest) that exist already."""
    taken = [p for p in planned(writer, items, images, prefix) if p.exists()]
    manifest = Path(writer.out_dir) / MANIFEST_NAME
    if manifest.exists():
        taken.append(manifest)
    return taken
