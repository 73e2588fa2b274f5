"""Exporting what the window shows: File → Export… (Ctrl+E) and "Export…" on a right-click.

Each tool says what it shows through ``export_items() -> list[ExportItem]`` (see
:mod:`maskviewer.io.export`); the functions below build those lists from the tools' public
state, and the tools' own ``export_items`` call them. What was never made (a mask nobody
painted) is not offered. The export dialog (:mod:`maskviewer.gui.export_dialog`) shows each
item with a preview; the user picks items, formats, picture scale and folder (by default in
their Pictures folder, never inside the installed package; remembered). The files go into
that folder, one sub-folder per image, with ``manifest.json``; nothing is overwritten without
asking. Writing happens here on the GUI thread: the maps shown are small, already computed,
and the user waits for the files anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import Frame
from maskviewer.gui.export_choice import FORMATS, SCALES, ExportChoice, default_folder, offered
from maskviewer.io.export import ArtifactWriter, ExportItem, ExportStyle, export_items
from maskviewer.io.export.naming import existing, image_prefix

SETTINGS_DIR = "export/last_dir"
SETTINGS_LEGEND = "export/legend"
SETTINGS_FORMATS = "export/formats"
SETTINGS_SCALE = "export/scale"
SETTINGS_OVERLAY = "export/overlay"
#: the File-menu group the export action belongs to (see maskviewer.gui.menus)
FILE_GROUP = ("maskviewer_file_group", "export")


# ---------------------------------------------------------------------------------------------
# What each tool shows


def method_label(method: str, k: int = 5, channel: int = 0) -> str:
    """The method as the command line names it (``top3``, ``channel2``...), so files match."""
    if method == "topk":
        return f"top{k}"
    if method == "channel":
        return f"channel{channel}"
    return method


def _target(state: Any, cam: Any) -> str:
    """What a CAM explains, in its output's words (a count is not "class 0")."""
    from maskviewer.core.output_kinds import target_text

    return target_text(state.kinds.kind_of(cam.output).kind, cam.output, cam.class_index, state.labels)


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
        low = min(0.0, float(np.nanmin(cam.heatmap)))  # IG and saliency maps can be negative
        return [ExportItem(
            "cam", cam.layer, cam.heatmap, frame, cam.method, cam.class_index, image, vrange=(low, 1.0),
            info={"output": cam.output, "score": cam.score}, caption=f"{cam.method} {_target(state, cam)}",
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


def compare_items(tool: Any) -> list[ExportItem]:
    """The Compare page's table: each method's map (on the layer's grid or the input's pixels),
    its deletion and insertion curves with their AUCs and its sanity check in the manifest, the
    curves as a plot, in the table's order."""
    from maskviewer.io.export.plots import curves_plot

    m = tool.model
    o = m.outcome
    if o is None or o.frame is None or tool.state.image is None:
        return []
    req, image = o.request, tool.state.image.path
    items = []
    for rank, view in enumerate(m.rows(), 1):
        r = m.result(view.method)
        if r is None or r.error or r.map is None:
            continue
        values = np.asarray(r.map, np.float32)
        finite = values[np.isfinite(values)]
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        high = max(1.0, float(finite.max())) if finite.size else 1.0
        name = req.layer if r.space == "layer" and req.layer else (req.input_name or "image")
        info: dict[str, Any] = {"output": req.output, "space": r.space, "compare_rank": rank,
                                "compare_order": f"{m.sort_key} {'descending' if m.descending else 'ascending'}"}
        curves = {k: c for k, c in (("deletion", r.deletion), ("insertion", r.insertion)) if c is not None}
        if curves:
            info["faithfulness"] = {"steps": req.steps, **{f"{k}_auc": float(c.auc) for k, c in curves.items()},
                                    **{k: c.to_dict() for k, c in curves.items()}}
        if r.sanity is not None:
            info["sanity"] = r.sanity.to_dict()
        plot = curves_plot({k: (c.fractions, c.scores, c.auc) for k, c in curves.items()},
                           f"{r.label} · {name} · class {r.class_index}") if curves else None
        caption = f"{r.label} · " + " · ".join(f"{k} AUC {float(c.auc):.3f}" for k, c in curves.items())
        items.append(ExportItem("cam", name, values, o.frame, r.method, r.class_index, image, vrange=(low, high),
                                info=info, caption=caption, plot=plot))
    return items


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
        self.action = QAction("&Export…", window)
        self.action.setShortcut(QKeySequence("Ctrl+E"))
        self.action.setToolTip("Choose among the heatmaps, masks, patch maps and binary outputs shown, "
                               "with previews, and write them as PNG and/or NPY")
        self.action.setProperty(*FILE_GROUP)
        self.action.triggered.connect(lambda _c=False: self.export_dialog())
        self.dialog = None  # the export dialog while it is open
        seps = [a for a in menu.actions() if a.isSeparator()]
        if seps:  # above Quit
            menu.insertAction(seps[-1], self.action)
        else:
            menu.addAction(self.action)
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
        session = getattr(self.window, "tools", {}).get("session")
        if session is not None:
            menu.addSeparator()
            menu.addAction(session.save_action)
        return menu

    # -- what is shown --------------------------------------------------------------------------

    def items(self) -> list[ExportItem]:
        """Everything the tools show now, asked from each tool's ``export_items``, less what
        was never made (a mask nobody painted; see :func:`~maskviewer.gui.export_choice.offered`)."""
        out: list[ExportItem] = []
        for tool in getattr(self.window, "tools", {}).values():
            fn = getattr(tool, "export_items", None)
            if callable(fn):
                out.extend(fn())
        return offered(out)

    def remembered(self) -> ExportChoice:
        """The last export's choices (folder, formats, scale, legends, overlays)."""
        s = self.settings
        scale = str(s.value(SETTINGS_SCALE, "auto"))
        scale_value: int | str = int(scale) if scale.isdigit() else "auto"
        formats = str(s.value(SETTINGS_FORMATS, "both"))
        return ExportChoice(
            folder=self.last_folder(),
            formats=formats if formats in FORMATS else "both",
            scale=scale_value if scale_value in SCALES else "auto",
            legend=s.value(SETTINGS_LEGEND, "false") in (True, "true"),
            overlay=s.value(SETTINGS_OVERLAY, "true") in (True, "true"),
        )

    def remember(self, choice: ExportChoice) -> None:
        s = self.settings
        s.setValue(SETTINGS_FORMATS, choice.formats)
        s.setValue(SETTINGS_SCALE, str(choice.scale))
        s.setValue(SETTINGS_LEGEND, "true" if choice.legend else "false")
        s.setValue(SETTINGS_OVERLAY, "true" if choice.overlay else "false")

    def colormap(self) -> str:
        panel = getattr(getattr(self.window, "tools", {}).get("layers"), "panel", None)
        return (panel.colormap.currentData() if panel is not None else None) or "viridis"

    def style(self, choice: ExportChoice | None = None) -> ExportStyle:
        """Colours and opacity as the Layers dock shows them; formats, scale, legends and
        overlays as ``choice`` (default: as last chosen)."""
        choice = choice or self.remembered()
        extra = dict(formats=choice.format_tuple, overlay=choice.overlay, legend=choice.legend, scale=choice.scale)
        layers = getattr(self.window, "tools", {}).get("layers")
        panel = getattr(layers, "panel", None)
        if panel is None:
            return ExportStyle(**extra)
        return ExportStyle(
            panel.colormap.currentData() or "viridis",
            panel.normalisation.currentData() or "per_map",
            panel.opacity.value() / 100.0,
            **extra,
        )

    def settings_record(self) -> dict:
        state = self.controller.state
        return {
            "image": state.image.path if state.image is not None else None,
            "mappings": {k: m.to_dict() for k, m in state.mappings.items()},
        }

    # -- writing --------------------------------------------------------------------------------

    def export_to(
        self, folder: str | Path, items: list[ExportItem] | None = None, overwrite: bool | None = None,
        style: ExportStyle | None = None,
    ) -> Path | None:
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
        style = style or self.style()
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

    def make_dialog(self, items: list[ExportItem] | None = None):
        """The export dialog for ``items`` (default: what is shown now), set as last time."""
        from maskviewer.gui.export_dialog import ExportDialog

        image = self.controller.state.image
        size = (image.height, image.width) if image is not None else None
        return ExportDialog(self.items() if items is None else items, self.remembered(), size,
                            browse=self.pick_folder, colormap=self.colormap(), parent=self.window)

    def export_dialog(self) -> Path | None:
        """File → Export…: ask what, how and where (through ``window.dialogs.run``), then write
        only the chosen items into the chosen folder."""
        items = self.items()
        if not items or self.controller.state.image is None:
            return self.export_to("", [])  # explains that there is nothing to export
        self.dialog = dialog = self.make_dialog(items)
        try:
            if not self.window.dialogs.run(dialog):
                return None
            return self.export_from(dialog)
        finally:
            self.dialog = None
            dialog.deleteLater()

    def export_from(self, dialog) -> Path | None:
        """Write what an accepted export dialog chose; remember the choices."""
        choice = dialog.choice()
        chosen = [dialog.items[i] for i in choice.chosen]
        if not chosen or not choice.folder:
            self.window.show_error("Nothing exported", "Tick at least one item and choose a folder.")
            return None
        self.remember(choice)
        return self.export_to(choice.folder, chosen, style=self.style(choice))

    def last_folder(self) -> str:
        """The folder the export starts in: the last one used, else a folder in the user's
        Pictures (or Documents, or home) — never inside the installed package."""
        locations = [
            QStandardPaths.writableLocation(loc)
            for loc in (QStandardPaths.StandardLocation.PicturesLocation,
                        QStandardPaths.StandardLocation.DocumentsLocation,
                        QStandardPaths.StandardLocation.HomeLocation)
        ]
        return default_folder(str(self.settings.value(SETTINGS_DIR, "") or ""), locations)

    def pick_folder(self, start: str | None = None) -> str:
        """The folder to export into, asked of the user (``""`` when cancelled)."""
        return self.window.dialogs.folder("Export into…", start or self.last_folder()) or ""

    def ask_overwrite(self, paths: list[Path]) -> bool:
        """Whether to replace ``paths``, which exist already (the user's answer)."""
        shown = "\n".join(str(p) for p in paths[:5]) + ("\n…" if len(paths) > 5 else "")
        return self.window.dialogs.question(
            "Overwrite files?", f"{len(paths)} file(s) of the export exist already:\n\n{shown}\n\nReplace them?"
        )


def install(window) -> ExportTool:
    """Add File → Export View… (Ctrl+E) and the right-click Export on the image view."""
    return ExportTool(window)
