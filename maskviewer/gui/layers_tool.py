"""The Layers tool: per-layer activation maps, attention maps and Grad-CAM over the image.

Model work runs as jobs on the inference thread (kinds ``"layers_info"`` and ``"probe"``);
the GUI thread only normalises the small map, upsamples it and maps it through a 256-entry
colour table, so changing colours, opacity or scaling never asks the model again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer

from maskviewer.core.errors import Cancelled, MaskviewerError
from maskviewer.core.heatmap import (
    channel_grid,
    colorize,
    colormap_lut,
    default_cam_layer,
    mask_to_grid,
    normalize,
    to_indices,
    upsample_to_frame,
)
from maskviewer.core.mapping import Frame, is_image_input
from maskviewer.gui.layers_panel import CAM_METHODS, METHOD_LABELS, LayersPanel


@dataclass
class ProbeRequest:
    """A snapshot of what the panel asks for."""

    path: str
    method: str
    k: int = 5
    channel: int = 0
    output: str | None = None
    class_index: int | None = None
    rank_in_mask: bool = False
    mask_input: str | None = None


@dataclass
class ProbeOutcome:
    """What a probe job sends back: a map to draw, or a message saying why there is none."""

    request: ProbeRequest
    frames: dict[str, Frame] = field(default_factory=dict)
    maps: Any = None  # LayerMaps
    cam: Any = None  # CamResult
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _run_probe(ctx, info, build: Callable, req: ProbeRequest, mask: np.ndarray | None) -> ProbeOutcome:
    """The probe job, on the inference thread."""
    from maskviewer.inference.cam import grad_cam
    from maskviewer.inference.probe import Reduction, get_probe

    if ctx.host.info is not info:
        raise Cancelled("made for a model that is no longer loaded")
    out = ProbeOutcome(req)
    try:
        arrays, frames = build()
        out.frames = frames
        ctx.check()
        packed = ctx.host.pack_inputs(arrays)
        probe = get_probe(ctx.host)
        if req.method in CAM_METHODS:
            out.cam = grad_cam(
                probe,
                packed,
                req.path,
                output_keys=list(ctx.host.loaded.output_keys),
                output=req.output,
                class_index=req.class_index,
                plus=req.method == "gradcam++",
            )
        else:
            weights = None
            if req.rank_in_mask and mask is not None and req.mask_input in frames:
                frame = frames[req.mask_input]
                weights = lambda h, w: mask_to_grid(mask, frame, h, w)  # noqa: E731
            out.maps = probe.reduce(packed, req.path, Reduction(req.method, req.k, req.channel), weights)
            out.notes = list(out.maps.notes)
    except Cancelled:
        raise
    except MaskviewerError as exc:
        out.error = str(exc)
    except Exception as exc:  # a layer the probe cannot run: say which, keep the app going
        out.error = (
            f"Layer {req.path} cannot be probed: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        )
    return out


class LayersTool(QObject):
    """Owns the Layers dock, the heatmap overlay and the probe jobs."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = self.controller.state
        self.panel = LayersPanel()
        self.dock = window.add_panel("Layers", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.hide()
        window.add_panel_overlay("Layers", self.overlay, 20)
        #: returns the painted mask (image pixels, (H, W)) or None; set by the mask tool
        self.mask_provider: Callable[[], np.ndarray | None] = self._mask_from_tool
        self.entries: dict[str, Any] = {}
        self._model_note = ""  # shown whenever no error is: e.g. "no spatial layers"
        self.outcome: ProbeOutcome | None = None
        self.grid_layout = None
        self._grid_channels: np.ndarray | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)  # one job for a burst of edits
        self._timer.timeout.connect(self.probe_now)

        p = self.panel
        p.request_changed.connect(self.request)
        p.display_changed.connect(self.render)
        p.tile_clicked.connect(self._tile_clicked)
        p.channel_clicked.connect(self.select_channel)
        p.layer_list.itemSelectionChanged.connect(self._layer_changed)
        s = self.state
        s.model_changed.connect(self._model_changed)
        s.image_changed.connect(lambda _img: self._clear_display())
        s.prediction_changed.connect(self._prediction_changed)
        s.labels_changed.connect(lambda _l: self._update_info())
        w = self.controller.worker
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        window.model_panel.layer_selected.connect(self.select_layer)
        self._model_changed(self.state.model_info)

    def _mask_from_tool(self) -> np.ndarray | None:
        masks = getattr(self.window, "tools", {}).get("masks")
        current = getattr(masks, "current_mask", None)
        return current() if callable(current) else None

    # -- model and layers ----------------------------------------------------------------------

    def _model_changed(self, info) -> None:
        self._timer.stop()
        self._model_note = ""
        self.entries = {}
        self.panel.set_layers([])
        self._clear_display()
        if info is None:
            self.panel.show_message("No model loaded. Open a model to see its layers.")
            return
        self.panel.set_outputs([t.name for t in info.outputs])
        self.panel.set_inputs([t.name for t in info.inputs if is_image_input(t.shape)] or [t.name for t in info.inputs])
        if not info.probe_supported:
            self.panel.show_message(info.note or "This model's layers cannot be probed.")
            return
        self.panel.show_message("Reading the layers…")

        def job(ctx):
            from maskviewer.inference.probe import describe_layers

            try:
                return describe_layers(ctx.host)
            except MaskviewerError as exc:
                return str(exc)

        self.controller.submit("layers_info", job)

    def _layers_ready(self, result) -> None:
        if isinstance(result, str):
            self.panel.show_message(result)
            return
        self.entries = {e.path: e for e in result}
        self.panel.set_layers(result)
        spatial = [e for e in result if e.spatial]
        self._model_note = (
            ""
            if spatial
            else "This model has no layer with a spatial (H, W, C) output, so there is no map "
            "to draw over the image; its layers are shown as bars."
        )
        self.panel.show_message(self._model_note)
        info = self.state.model_info
        default = default_cam_layer(info) if info is not None else None
        path = default.path if default is not None and default.path in self.entries else None
        path = path or (spatial[-1].path if spatial else (result[0].path if result else None))
        if path:
            self.panel.select_layer(path)

    def select_layer(self, path: str) -> None:
        """Select ``path`` in the panel (from the Model dock or a test)."""
        if path and path != self.panel.current_path():
            self.panel.select_layer(path)

    def select_channel(self, channel: int) -> None:
        """Show one channel: in grid mode the grid stays, otherwise the method becomes 'one channel'."""
        p = self.panel
        p._updating = True
        try:
            p.channel.setValue(int(channel))
            if p.current_method() != "grid":
                p.set_method("channel")
        finally:
            p._updating = False
        p._update_enabled()
        self.request()

    def _layer_changed(self) -> None:
        entry = self.panel.current_entry()
        if entry is None:
            return
        c = entry.shape[-1] if entry.spatial and entry.shape[-1] is not None else 1
        self.panel.set_channel_count(int(c))
        if entry.attention and self.panel.current_method() in ("mean", "max"):
            self.panel._updating = True
            self.panel.set_method("attention")
            self.panel._updating = False
            self.panel._update_enabled()
        elif not entry.attention and self.panel.current_method() == "attention" and c != 1:
            self.panel._updating = True
            self.panel.set_method("mean")
            self.panel._updating = False
            self.panel._update_enabled()

    # -- requests ------------------------------------------------------------------------------

    def _prediction_changed(self, prediction) -> None:
        if prediction is not None:
            self.request()

    def request(self) -> None:
        """Ask for the current layer's map soon (bursts of changes make one job)."""
        self._timer.start()

    def current_request(self) -> ProbeRequest | None:
        p = self.panel
        path = p.current_path()
        if path is None:
            return None
        ci = p.class_index.value()
        return ProbeRequest(
            path=path,
            method=p.current_method(),
            k=p.k.value(),
            channel=p.channel.value(),
            output=p.output.currentData(),
            class_index=None if ci < 0 else ci,
            rank_in_mask=p.rank_in_mask.isChecked(),
            mask_input=p.input.currentData(),
        )

    def probe_now(self) -> int | None:
        """Submit the probe job for the current request; returns its generation."""
        info = self.state.model_info
        req = self.current_request()
        loading = getattr(self.controller, "_loading_model", False)  # its results would be stale
        if info is None or not info.probe_supported or req is None or loading:
            return None
        if self.state.image is None:
            self.panel.show_message("Open an image to see what the layers respond to.")
            return None
        entry = self.entries.get(req.path)
        if entry is not None and not entry.spatial and req.method in CAM_METHODS:
            self._show_error(
                f"Layer {req.path} has no spatial output, so there is no map for Grad-CAM; "
                "pick a convolutional layer."
            )
            return None
        mask = None
        if req.rank_in_mask:
            mask = self.mask_provider()
            if mask is None:
                self.panel.info.setText("No mask painted yet: channels are ranked over the whole map.")
        try:
            build = self.controller.build_inputs()
        except MaskviewerError as exc:
            self._show_error(str(exc))
            return None
        return self.controller.submit("probe", lambda ctx: _run_probe(ctx, info, build, req, mask))

    def _job_finished(self, kind: str, generation: int, result: Any) -> None:
        if kind not in ("probe", "layers_info") or not self.controller.is_latest(kind, generation):
            return
        if kind == "layers_info":
            self._layers_ready(result)
            return
        self.outcome = result
        if result.error:
            self._show_error(result.error)
            return
        self.panel.show_message(self._model_note)  # an error before is solved; the model's note stays
        self.render()

    def _job_failed(self, kind: str, generation: int, message: str, _exc: Any) -> None:
        if kind in ("probe", "layers_info") and self.controller.is_latest(kind, generation):
            self._show_error(message)

    def _show_error(self, message: str) -> None:
        self.panel.show_message(message)
        self._clear_display(keep_message=True)

    # -- drawing -------------------------------------------------------------------------------

    def _clear_display(self, keep_message: bool = False) -> None:
        self.overlay.hide()
        self.outcome = None if not keep_message else self.outcome
        self.panel.colorbar.set_range(None, None)
        self.panel.clear_ranking()
        self.panel.views.setCurrentIndex(2)
        self.panel.info.setText("")

    def current_map(self) -> tuple[np.ndarray | None, tuple[float, float] | None]:
        """The map to draw (layer resolution) and the shared range, from the latest result."""
        o = self.outcome
        if o is None or o.error:
            return None, None
        if o.cam is not None:
            return o.cam.heatmap, (0.0, 1.0)
        if o.maps is not None and o.maps.spatial:
            return o.maps.map, o.maps.value_range
        return None, None

    def current_frame(self) -> Frame | None:
        o = self.outcome
        if o is None or not o.frames:
            return None
        name = self.panel.input.currentData()
        return o.frames.get(name) or next(iter(o.frames.values()))

    def render(self) -> None:
        """Draw the latest result with the current colours, opacity, scaling and input."""
        cmap = self.panel.colormap.currentData()
        mode = self.panel.normalisation.currentData()
        self.panel.colorbar.set_colormap(cmap)
        o = self.outcome
        if o is None or o.error:
            return
        values, shared = self.current_map()
        frame = self.current_frame()
        if values is not None and frame is not None:
            unit, (lo, hi) = normalize(values, mode, vrange=shared if mode == "shared" else None)
            idx = to_indices(upsample_to_frame(unit, frame))
            self.overlay.setImage(idx, autoLevels=False, levels=(0, 255), lut=colormap_lut(cmap))
            self.overlay.setRect(frame.x, frame.y, frame.width, frame.height)
            self.overlay.setOpacity(self.panel.opacity.value() / 100.0)
            self.overlay.show()
            caption = "relative to the maximum" if o.cam is not None else METHOD_LABELS[o.request.method].lower()
            self.panel.colorbar.set_range(lo, hi, caption)
        else:
            self.overlay.hide()
            self.panel.colorbar.set_range(None, None)
        self._render_side(cmap, mode)
        self._update_info()

    def _render_side(self, cmap: str, mode: str) -> None:
        o = self.outcome
        p = self.panel
        lm = o.maps if o is not None else None
        if lm is not None and not lm.spatial:
            vec = lm.vector.reshape(-1)[:4096]
            p.bar_item.setOpts(x=np.arange(len(vec)), height=vec, width=0.8)
            p.bars.autoRange()
            p.views.setCurrentIndex(1)
            p.clear_ranking()
            return
        if lm is not None and lm.maps is not None:
            grid, layout = channel_grid(lm.maps, mode, vrange=lm.value_range if mode == "shared" else None)
            rgba = colorize(np.nan_to_num(grid), cmap)
            rgba[np.isnan(grid), 3] = 0
            p.grid.item.setImage(rgba, autoLevels=False, levels=(0, 255))
            self.grid_layout = layout
            self._grid_channels = lm.channels
            self._highlight_tile(lm)
            p.views.setCurrentIndex(0)
        else:
            self.grid_layout = None
            self._grid_channels = None
            p.views.setCurrentIndex(2)
        if lm is not None and lm.channel_means is not None:
            masked = lm.rank_scores is not None and not np.array_equal(lm.rank_scores, lm.channel_means)
            order = np.argsort(-lm.rank_scores, kind="stable")
            bold = min(o.request.k, len(order)) if o.request.method == "topk" else 0
            p.set_ranking(order, lm.channel_means, lm.rank_scores if masked else None, bold)
        elif o is not None and o.cam is not None:
            w = o.cam.weights
            order = np.argsort(-w, kind="stable")
            p.set_ranking(order, w, None)
            p.ranking.setHorizontalHeaderLabels(["#", "Channel", "CAM weight"])
        else:
            p.clear_ranking()

    def _highlight_tile(self, lm) -> None:
        hl = self.panel.grid.highlight
        layout = self.grid_layout
        if layout is None or lm.method != "grid":
            hl.hide()
            return
        hits = np.nonzero(self._grid_channels == self.panel.channel.value())[0]
        if not len(hits):
            hl.hide()
            return
        x, y = layout.tile_origin(int(hits[0]))
        hl.setRect(x - 0.5, y - 0.5, layout.tile_w + 1, layout.tile_h + 1)
        hl.show()

    def _tile_clicked(self, x: float, y: float) -> None:
        if self.grid_layout is None or self._grid_channels is None:
            return
        i = self.grid_layout.tile_at(x, y)
        if i is not None:
            self.select_channel(int(self._grid_channels[i]))

    def _update_info(self) -> None:
        o = self.outcome
        if o is None or o.error:
            return
        parts = []
        if o.cam is not None:
            labels = self.state.labels or []
            cls = o.cam.class_index
            name = f" ({labels[cls]})" if cls < len(labels) else ""
            parts.append(
                f"{'Grad-CAM++' if o.cam.method == 'gradcam++' else 'Grad-CAM'} of {o.cam.output} "
                f"class {cls}{name} (score {o.cam.score:.4g}) on {o.cam.layer}"
            )
        elif o.maps is not None:
            shape = "×".join(str(d) for d in o.maps.shape)
            if o.maps.spatial:
                parts.append(f"{o.maps.path} · {shape} · {METHOD_LABELS[o.maps.method].lower()}")
                if o.maps.method == "topk":
                    parts.append("top channels: " + ", ".join(str(int(c)) for c in o.maps.channels))
                elif o.maps.method in ("channel", "grid"):
                    parts.append(f"channel {o.request.channel}")
            else:
                parts.append(f"{o.maps.path} · {shape}: not spatial, shown as bars")
        parts.extend(o.notes)
        self.panel.info.setText("\n".join(parts))

    def displayed_rgb(self) -> np.ndarray | None:
        """The overlay as drawn (before opacity): ``lut[indices]``, ``(H, W, 3)`` uint8."""
        if not self.overlay.isVisible() or self.overlay.image is None:
            return None
        return np.asarray(self.overlay.lut)[self.overlay.image]

    def export_items(self) -> list:
        """The map shown, for File → Export (see maskviewer.gui.export_tool)."""
        from maskviewer.gui.export_tool import layers_items

        return layers_items(self)


def install(window) -> LayersTool:
    """Add the Layers dock and the heatmap overlay to ``window``."""
    return LayersTool(window)
