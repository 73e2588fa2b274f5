"""Mask files for the masks tool, without Qt: loading into a mask, saving, and the names
suggested for them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from maskviewer.core.mask_values import as_float_mask
from maskviewer.core.masks import Mask, MaskSet
from maskviewer.io.masks import MaskSizeError, load_mask, resize_mask_nearest, save_mask


def mask_file_name(ms: MaskSet, mask: Mask) -> str:
    """The file name suggested for ``mask``: PNG for a binary mask, NPY for a soft one."""
    stem = Path(ms.image_path).stem if ms.image_path else "image"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in mask.name)
    suffix = ".png" if mask.is_binary() else ".npy"
    return f"{stem}_{safe}{suffix}"


def load_into_active(ms: MaskSet, path: str | Path, confirm_resize: Callable[[str], bool]) -> bool:
    """Load a mask file into ``ms``'s active mask (one undoable edit).

    A file of another size is resized with nearest neighbour if ``confirm_resize(question)``
    says yes; False when it says no. Raises :class:`~maskviewer.io.masks.MaskLoadError`
    (the mask is left as it was).
    """
    assert ms.active is not None
    path = Path(path)
    try:
        data = load_mask(path, ms.shape, compact=True)  # a quarter of float32 while reading
    except MaskSizeError as exc:
        h, w = exc.expected
        question = (
            f"{exc}\n\nResize it to {w}×{h} with nearest neighbour (values are kept, edges "
            "become blocky)?"
        )
        if not confirm_resize(question):
            return False
        data = resize_mask_nearest(exc.mask, h, w)
    ms.replace(as_float_mask(data), label=f"Load {path.name}")
    ms.mark_saved(ms.active.name, str(path))
    return True


def save_one(ms: MaskSet, path: str | Path, name: str | None = None) -> Mask | None:
    """Save the mask ``name`` (the active one by default); None if there is no such mask.
    Raises OSError or MaskviewerError when it cannot be written."""
    mask = ms.get(name) if name else ms.active
    if mask is None:
        return None
    save_mask(path, mask.data)
    ms.mark_saved(mask.name, str(path))
    return mask


def save_unsaved(sets: Iterable[MaskSet], folder: str | Path) -> None:
    """Save every unsaved mask of ``sets`` into ``folder`` under its suggested name (raises
    OSError or MaskviewerError on the first failure)."""
    for ms in sets:
        for mask in ms.masks:
            if mask.dirty:
                path = Path(folder) / mask_file_name(ms, mask)
                save_mask(path, mask.data)
                ms.mark_saved(mask.name, str(path))
