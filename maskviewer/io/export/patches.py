"""Writing patches and the per-patch table: PNG per patch, one NPY batch, CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from maskviewer.core.patches import PatchGrid
from maskviewer.io.export import naming
from maskviewer.io.export.writing import save_bytes, save_npy, save_png


def _displayable(patch: np.ndarray, value_max: float) -> np.ndarray:
    """uint8/uint16 stay as they are; anything else is scaled to uint8 by the full-scale value."""
    if patch.dtype in (np.uint8, np.uint16):
        out = patch
    else:
        scaled = np.clip(patch.astype(np.float32) / np.float32(value_max), 0.0, 1.0)
        out = (scaled * 255.0 + 0.5).astype(np.uint8)
    if out.ndim == 3 and out.shape[2] == 2:  # grey + alpha: PNG writer wants L, RGB or RGBA
        out = out[:, :, :1]
    return out


def export_patch_pngs(
    folder: str | os.PathLike, patches: np.ndarray, grid: PatchGrid, value_max: float = 255.0
) -> list[Path]:
    """Write each patch ``(kh, kw, C)`` as ``patch_NNNN_rR_cC.png`` in ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, patch in enumerate(patches):
        r, c = grid.position(n)
        path = folder / naming.patch_png_name(n, len(patches), r, c)
        save_png(path, _displayable(patch, value_max))
        paths.append(path)
    return paths


def export_npy(path: str | os.PathLike, batch: np.ndarray) -> None:
    """Write one array (a batch of patches or of model inputs) as ``.npy``, atomically."""
    save_npy(path, np.asarray(batch))


def export_table_csv(path: str | os.PathLike, header: list[str], rows: list[list]) -> None:
    """Write the per-patch table as CSV (UTF-8, floats with full precision), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    save_bytes(path, text.getvalue().encode("utf-8"))
