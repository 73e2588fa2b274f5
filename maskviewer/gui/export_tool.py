"""Exporting what the window shows: File → Export… (Ctrl+E) and "Export…" on a right-click.

Each tool says what it shows through ``export_items() -> list[ExportItem]`` (see
:mod:`maskviewer.io.export`); the functions below build those lists from the tools' public
state, and the tools' own ``export_items`` call them. The files go into a folder the user
picks (remembered), one sub-folder per image, with ``manifest.json``; nothing is overwritten
without asking. Writing happens here on the GUI thread: the maps shown are small, already
computed, and the user waits for the files anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import Frame
from maskviewer.io.export import ArtifactWriter, ExportItem, ExportStyle, export_items
from maskviewer.io.export.naming import existing, image_prefix

SETTINGS_DIR = "export/last_dir"
SETTINGS_LEGEND = "export/legend"


# ---------------------------------------------------------------------------------------------
# What each tool shows


def method_label(method: str, k: int = 5, channel: int = 0) -> str:
    """The method as the command line names it (``top3``, ``channel2``...), so files match."""
    if method == "topk":
        return f"top{k}"
    if method == "channel":
        return f"channel{channel}"
    return method


def layers_items(tool: Any) -> list[ExportItem]:
    """The Layers tool's map (activation, attention or CAM) as shown, at the layer's resolution."""
    o = getattr(tool, "outcome", None)
    state = tool.state
    if o is None or o.error or state.image is None:
        return []
    frame = tool.current_frame()
    image = state.image.path
    req = o.request
    if o.cam is not None:
        cam = o.cam
        return [ExportItem(
            "cam", cam.layer, cam.heatmap, frame, cam.method, cam.class_index, image, vrange=(0.0, 1.0),
            info={"output": cam.output, "score": cam.score}, caption=f"{cam.method} class {cam.class_index}",
        )]
    lm = o.maps
    if lm is None:
        return []
    entry = tool.entries.get(lm.path)
    kind = "attention" if (lm.method == "attention" or getattr(entry, "attention", False)) else "activation"
    info: dict[str, Any] = {"layer_shape": list(lm.shape), "value_range": list(lm.value_range)}
    if not lm.spatial:
        return [ExportItem(kind, lm.path, lm.vector, None, "vector", image=image, info=info)]
    if lm.channels is not None:
        info["channels"] = [int(c) for c in lm.channels]
    method = method_label(lm.method, req.k, req.channel)
    if lm.method == "channel":
        info["channel"] = req.channel
    if lm.method == "grid":
        return [ExportItem(kind, lm.path, lm.maps, frame, "grid", image=image, vrange=lm.value_range,
                           tiles=lm.maps, info={**info, "selected_channel": req.channel})]
    return [ExportItem(kind, lm.path, lm.map, frame, method, image=image, vrange=lm.value_range, info=info,
                       caption=f"{lm.path} · {method}")]


def mask_items(tool: Any) -> list[ExportItem]:
    """Every mask of the current image, at image resolution."""
    from maskviewer.core.mask_feed import current_feed

    ms = getattr(tool, "maskset", None)
    image = tool.state.image
    if ms is None or image is None:
        return []
    feed = current_feed(tool.state.mappings)
    frame = Frame(0.0, 0.0, float(image.width), float(image.height))
    out = []
    for mask in ms.masks:
        fed = feed.label if feed.mode != "none" and feed.mask_name == mask.name else "none"
        out.append(ExportItem("mask", mask.name, mask.data.copy(), frame, fed, image=image.path,
                              info={"color": list(mask.color), "visible": mask.visible, "fed_as": fed}))
    return out


def patch_items(tool: Any) -> list[ExportItem]:
    """The patch map shown (class probability or occlusion drop per pixel) and the run's numbers."""
    from maskviewer.core.patches import coverage_map

    grid, probs, combined = tool.grid, tool.probs, tool.combined
    image = tool.state.image
    if grid is None or image is None or (probs is None and tool.occlusion is None):
        return []
    shown = tool.map_values()
    cls = tool.panel.map_class.currentData()
    if shown is None:
        if probs is None or combined is None:
            return []
        values, kind, cls = probs[:, combined.label], "score", combined.label
    else:
        values, kind = shown
    spec = grid.spec
    info: dict[str, Any] = {
        "grid": {"size": list(spec.size), "stride": list(spec.stride), "rate": list(spec.rate),
                 "padding": spec.padding, "rows": grid.rows, "cols": grid.cols, "count": grid.count,
                 "rects_xywh": grid.rects().tolist()},
        "map": kind,
        "patch_values": np.asarray(values).tolist(),
    }
    from maskviewer.gui.patches.results import export_fields

    results = tool.model.results
    info.update(export_fields(results))  # the numbers in the output kind's words
    family = results.family
    method = combined.method if kind == "score" and combined is not None else kind
    frame = Frame(0.0, 0.0, float(grid.width), float(grid.height))
    vrange = (0.0, 1.0) if kind == "score" and family != "values" else None
    name = tool._output_name() or "output"
    entry = results.label(cls) if cls is not None else ""
    caption = {"classes": "p(class) per pixel", "labels": f"p({entry}) per pixel",
               "values": f"{entry} per pixel"}[family] if kind == "score" else "drop when greyed out"
    index = None if cls is None or family == "values" else int(cls)
    return [ExportItem("patch", name, coverage_map(grid, values).astype(np.float32), frame, method,
                       index, image.path, vrange=vrange, info=info, caption=caption)]


def binarise_items(tool: Any) -> list[ExportItem]:
    """The binary output shown, with its threshold and scores."""
    mask = tool.binary_mask()
    image = tool.state.image
    if mask is None or image is None:
        return []
    source = tool.sources.get(tool.current) if tool.current else None
    frame = getattr(source, "frame", None) or tool._frame()
    record = tool.score_record()
    return [ExportItem("binary", str(tool.current), mask, frame, record.get("method") or "manual",
                       image=image.path, info=record)]


# ---------------------------------------------------------------------------------------------
# The tool


class ExportTool(QObject):
    """File → Export… and the right-click menu of the image view.

    The folder and the overwrite question are asked through ``window.dialogs``
    (:meth:`pick_folder`, :meth:`ask_overwrite`).
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.settings = self.controller.settings
        self.last_manifest: Path | None = None

        menu = window.file_menu
        self.action = QAction("&Export View…", window)
        self.action.setShortcut(QKeySequence("Ctrl+E"))
        self.action.setToolTip("Write the heatmap, overlay, raw maps, masks, patch maps and binary outputs shown")
        self.action.triggered.connect(lambda _c=False: self.export_dialog())
        self.legend_action = QAction("Export Colour-Bar &Legends", window)
        self.legend_action.setCheckable(True)
        self.legend_action.setChecked(self.settings.value(SETTINGS_LEGEND, "true") in (True, "true"))
        self.legend_action.toggled.connect(lambda on: self.settings.setValue(SETTINGS_LEGEND, "true" if on else "false"))
        seps = [a for a in menu.actions() if a.isSeparator()]
        before = seps[-1] if seps else None  # above Quit
        for act in (self.action, self.legend_action):
            if before is not None:
                menu.insertAction(before, act)
            else:
                menu.addAction(act)
        canvas = window.canvas
        canvas.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        canvas.customContextMenuRequested.connect(lambda pos: self.context_menu().exec(canvas.mapToGlobal(pos)))
        QTimer.singleShot(0, self._hook_views)  # the other tools' views exist once all are installed

    def _hook_views(self) -> None:
        """Right-click → Export… on the Layers dock's channel grid too."""
        layers = getattr(self.window, "tools", {}).get("layers")
        grid = getattr(getattr(layers, "panel", None), "grid", None)
        if grid is not None:
            grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            grid.customContextMenuRequested.connect(lambda pos: self.context_menu().exec(grid.mapToGlobal(pos)))

    def context_menu(self) -> QMenu:
        """The right-click menu: Export… (and the session actions when that tool is installed)."""
        menu = QMenu(self.window)
        menu.addAction(self.action)
        menu.addAction(self.legend_action)
        session = getattr(self.window, "tools", {}).get("session")
        if session is not None:
            menu.addSeparator()
            menu.addAction(session.save_action)
        return menu

    # -- what is shown --------------------------------------------------------------------------

    def items(self) -> list[ExportItem]:
        """Everything the tools show now, asked from each tool's ``export_items``."""
        out: list[ExportItem] = []
        for tool in getattr(self.window, "tools", {}).values():
            fn = getattr(tool, "export_items", None)
            if callable(fn):
                out.extend(fn())
        return out

    def style(self) -> ExportStyle:
        """Colours and opacity as the Layers dock shows them."""
        layers = getattr(self.window, "tools", {}).get("layers")
        panel = getattr(layers, "panel", None)
        if panel is None:
            return ExportStyle(legend=self.legend_action.isChecked())
        return ExportStyle(
            panel.colormap.currentData() or "viridis",
            panel.normalisation.currentData() or "per_map",
            panel.opacity.value() / 100.0,
            legend=self.legend_action.isChecked(),
        )

    def settings_record(self) -> dict:
        state = self.controller.state
        return {
            "image": state.image.path if state.image is not None else None,
            "mappings": {k: m.to_dict() for k, m in state.mappings.items()},
        }

    # -- writing --------------------------------------------------------------------------------

    def export_to(self, folder: str | Path, items: list[ExportItem] | None = None, overwrite: bool | None = None) -> Path | None:
        """Write ``items`` (default: everything shown) into ``folder``; returns the manifest.

        Existing files are replaced only if :attr:`ask_overwrite` agrees (or ``overwrite``).
        Errors are shown to the user and give None.
        """
        state = self.controller.state
        items = self.items() if items is None else items
        if not items or state.image is None:
            self.window.show_error(
                "Nothing to export",
                "Open an image and a model first: the export writes the heatmaps, masks, patch "
                "maps and binary outputs the window shows.",
            )
            return None
        folder = Path(folder)
        style = self.style()
        images = {state.image.path: state.image}
        prefix = image_prefix(state.image.path)
        if overwrite is None:
            taken = existing(ArtifactWriter(folder, style), items, images, prefix)
            if taken and not self.ask_overwrite(taken):
                self.window.statusBar().showMessage("Export cancelled: nothing was overwritten.", 8000)
                return None
            overwrite = bool(taken)
        try:
            manifest = export_items(
                folder, items, images, style=style, settings=self.settings_record(),
                model_path=self.controller.model_path, model_sha256=self.controller.model_sha256,
                overwrite=overwrite, prefix=prefix,
            )
        except (MaskviewerError, OSError) as exc:
            self.window.show_error("Export failed", str(exc))
            return None
        self.settings.setValue(SETTINGS_DIR, str(folder))
        self.last_manifest = manifest
        self.window.statusBar().showMessage(f"Exported {len(items)} view(s) to {folder}", 10000)
        return manifest

    def export_dialog(self) -> Path | None:
        folder = self.pick_folder()
        return self.export_to(folder) if folder else None

    def last_folder(self) -> str:
        return str(self.settings.value(SETTINGS_DIR, "") or self.controller.last_dir())

    def pick_folder(self) -> str:
        """The folder to export into, asked of the user (``""`` when cancelled)."""
        return self.window.dialogs.folder("Export the view into…", self.last_folder()) or ""

    def ask_overwrite(self, paths: list[Path]) -> bool:
        """Whether to replace ``paths``, which exist already (the user's answer)."""
        shown = "\n".join(str(p) for p in paths[:5]) + ("\n…" if len(paths) > 5 else "")
        return self.window.dialogs.question(
            "Overwrite files?", f"{len(paths)} file(s) of the export exist already:\n\n{shown}\n\nReplace them?"
        )


def install(window) -> ExportTool:
    """Add File → Export View… (Ctrl+E) and the right-click Export on the image view."""
    return ExportTool(window)
