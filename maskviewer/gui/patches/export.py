"""What the Patches tool writes: the patches (PNG files, one NPY batch, model inputs), the table.

The writers take the :class:`~maskviewer.gui.patches.model.PatchModel` and raise on what
cannot be written; the ``*_dialog`` functions ask ``window.dialogs`` where to write and show
errors in the window.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.patches import PatchSettingsError, extract_patches
from maskviewer.gui.patches.model import PatchModel


def all_patches(model: PatchModel) -> np.ndarray:
    """Every patch as cut: ``(N, kh, kw, C)`` in the image's dtype."""
    if model.grid is None or model.state.image is None:
        raise PatchSettingsError("There are no patches: open an image and choose valid settings.")
    return extract_patches(model.state.image.array, model.grid)


def export_pngs(model: PatchModel, folder: str | Path) -> list[Path]:
    """Write every patch as a PNG file into ``folder``."""
    from maskviewer.io.export.patches import export_patch_pngs

    return export_patch_pngs(folder, all_patches(model), model.grid, model.state.image.value_max)


def export_npy(model: PatchModel, path: str | Path, inputs: bool = False) -> np.ndarray:
    """Write all patches as one ``(N, kh, kw, C)`` NPY (``inputs``: as the model's batch)."""
    from maskviewer.core.patches import prepare_patches
    from maskviewer.inference.patch_runner import plan_feed
    from maskviewer.io.export.patches import export_npy as write_npy

    batch = all_patches(model)
    if inputs:
        if model.state.model_info is None:
            raise PatchSettingsError("Open a model first: model inputs depend on its input mapping.")
        if model.fit_error:
            raise PatchSettingsError(model.fit_error)
        feed = plan_feed(model.state.model_info, model.mappings())
        m, shape = next(iter(feed.patch_inputs.values()))
        batch = prepare_patches(batch, model.state.image.value_max, m, shape)
    write_npy(path, batch)
    return batch


def export_csv(model: PatchModel, path: str | Path) -> None:
    """Write the per-patch table (probabilities, occlusion drops) as CSV."""
    from maskviewer.io.export.patches import export_table_csv

    table = model.results.table(model.grid)
    if table is None:
        raise PatchSettingsError("Run all patches first: the table holds their predictions.")
    export_table_csv(path, *table)


# -- asking where --------------------------------------------------------------------------------


def _write(window: Any, title: str, fn: Callable, *args: Any) -> None:
    """Call ``fn(*args)``; say where it wrote, or show why it could not."""
    try:
        fn(*args)
    except (MaskviewerError, OSError, ValueError) as exc:
        window.show_error(title, str(exc))
        return
    window.statusBar().showMessage(f"{title}: written to {args[1]}", 8000)


def export_png_dialog(window: Any, model: PatchModel) -> None:
    folder = window.dialogs.folder("Folder for the patch PNGs", window.controller.last_dir())
    if folder:
        _write(window, "Export patches", export_pngs, model, folder)


def export_npy_dialog(window: Any, model: PatchModel, inputs: bool = False) -> None:
    title = "Save model inputs" if inputs else "Save patches"
    start = Path(window.controller.last_dir()) / ("patch_inputs.npy" if inputs else "patches.npy")
    path = window.dialogs.save_file(title, str(start), "NumPy (*.npy)")
    if path:
        _write(window, title, export_npy, model, path, inputs)


def export_csv_dialog(window: Any, model: PatchModel) -> None:
    start = Path(window.controller.last_dir()) / "patches.csv"
    path = window.dialogs.save_file("Save patch table", str(start), "CSV (*.csv)")
    if path:
        _write(window, "Export patch table", export_csv, model, path)
