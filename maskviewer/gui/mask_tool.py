"""The masks tool: paint, load and save masks, feed them to the model, and run the ablation.

Painting happens on the GUI thread on numpy arrays (a dab costs well under a millisecond);
the overlay is updated in the changed rectangle only. After each edit of a mask the model is
fed, the controller's debounced prediction runs again (newest request wins). The ablation runs
as a job on the inference thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainterPath, QPen
from PySide6.QtWidgets import (
    QColorDialog,
    QFileDialog,
    QGraphicsEllipseItem,
    QGraphicsPathItem,
    QInputDialog,
    QListWidgetItem,
    QMessageBox,
)

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mask_feed import (
    ABLATION_LABELS,
    MODE_LABELS,
    MaskFeed,
    ablation_masks,
    ablation_rows,
    apply_feed,
    current_feed,
    feed_options,
    masks_needed,
    propose_mask_mode,
)
from maskviewer.core.masks import Box, Brush, Mask, MaskSet, Stroke
from maskviewer.gui.mask_overlay import MaskOverlayItem
from maskviewer.gui.mask_panel import TOOLS, AblationPanel, MasksPanel, color_icon
from maskviewer.io.masks import (
    MASK_FILTER,
    MaskLoadError,
    MaskSizeError,
    load_mask,
    resize_mask_nearest,
    save_mask,
)

ABLATION_KIND = "mask-ablation"
ABLATION_SEED = 0
PAINT_TOOLS = ("brush", "eraser", "fill", "rectangle", "ellipse", "lasso")


def _image_key(image) -> str:
    return f"{image.path or id(image)}:{image.height}x{image.width}"


class MaskTool(QObject):
    """Owns the masks of each image, the overlays and the painting interaction.

    Hooks a test (or another front end) may replace: :attr:`ask` (a yes/no question),
    :attr:`ask_unsaved` (``"save"``, ``"discard"`` or ``"cancel"``) and :attr:`pick_save_dir`.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.canvas = window.canvas
        self.sets: dict[str, MaskSet] = {}
        self.maskset: MaskSet | None = None
        self.overlays: dict[int, MaskOverlayItem] = {}
        self.tool = "brush"
        self.opacity = 0.5
        self.outline = False
        self._stroke: Stroke | None = None
        self._ending_stroke = False
        self._shape_start: tuple[float, float] | None = None
        self._lasso: list[tuple[float, float]] = []
        self._lasso_dragged = False
        self._erase_modifier = False
        self._last_names: list[str] = ["mask"]
        self.ablation_results: dict[str, dict[str, np.ndarray]] | None = None
        self.ask: Callable[[str, str], bool] = self._ask_dialog
        self.ask_unsaved: Callable[[], str] = self._ask_unsaved_dialog
        self.pick_save_dir: Callable[[], str] = self._pick_save_dir_dialog

        self.panel = MasksPanel()
        self.dock = window.add_panel("Masks", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.ablation_panel = AblationPanel()
        self.ablation_dock = window.add_panel(
            "Mask ablation", self.ablation_panel, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.ablation_dock.hide()

        self.cursor = QGraphicsEllipseItem()
        pen = QPen(QColor(255, 255, 255, 220))
        pen.setCosmetic(True)
        pen.setWidthF(1.2)
        self.cursor.setPen(pen)
        self.cursor.hide()
        self.canvas.add_overlay(self.cursor, 40.0)
        self.preview = QGraphicsPathItem()
        ppen = QPen(QColor(255, 255, 0, 230))
        ppen.setCosmetic(True)
        ppen.setStyle(Qt.PenStyle.DashLine)
        self.preview.setPen(ppen)
        self.canvas.add_overlay(self.preview, 41.0)

        self._build_actions()
        self._connect_panel()
        self.canvas.viewport().installEventFilter(self)
        self.canvas.viewport().setMouseTracking(True)
        s = self.state
        s.image_changed.connect(self._image_changed)
        s.model_changed.connect(self._model_changed)
        s.mapping_changed.connect(lambda _m: self._refresh_feed())
        self.controller.mask_provider = self._provide_masks
        w = self.controller.worker
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        self.set_tool("brush")
        self._refresh_list()
        self._refresh_feed()

    # -- public ---------------------------------------------------------------------------------

    def current_mask(self) -> np.ndarray | None:
        """The active mask: a read-only ``(H, W)`` float32 view in 0..1 (None without an image)."""
        if self.maskset is None or self.maskset.active is None:
            return None
        view = self.maskset.active.data.view()
        view.flags.writeable = False
        return view

    @property
    def brush(self) -> Brush:
        p = self.panel
        return Brush(p.size.value() / 2.0, p.hardness.value(), p.intensity.value())

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        button = self.panel.tool_buttons[tool]
        if not button.isChecked():
            button.setChecked(True)
        self._cancel_shape()
        self._update_cursor_shape()
        self.window.statusBar().showMessage(
            dict((t, tip) for t, _l, _k, tip in TOOLS)[tool], 4000
        )

    def can_close(self) -> bool:
        """Ask before closing with unsaved masks; False keeps the window open."""
        dirty = [ms for ms in self.sets.values() if ms.dirty]
        if not dirty:
            return True
        answer = self.ask_unsaved()
        if answer == "discard":
            return True
        if answer != "save":
            return False
        folder = self.pick_save_dir()
        if not folder:
            return False
        try:
            for ms in dirty:
                self._save_set(ms, Path(folder))
        except (OSError, MaskviewerError) as exc:
            self.window.show_error("Cannot save masks", str(exc))
            return False
        return True

    # -- masks per image ------------------------------------------------------------------------

    def _image_changed(self, image) -> None:
        self._end_interaction()
        if self.maskset is not None:
            self._last_names = self.maskset.names or ["mask"]
        self._clear_overlays()
        if image is None:
            self.maskset = None
            self._refresh_list()
            return
        key = _image_key(image)
        ms = self.sets.get(key)
        if ms is None:
            ms = MaskSet(image.height, image.width, image_path=image.path)
            # keep the previous image's mask names, so the mask fed to the model stays fed
            for name in self._last_names:
                ms.add(name)
            ms.set_active(ms.names[0])
            self.sets[key] = ms
        self.maskset = ms
        ms.changed.connect(self._mask_changed)
        ms.masks_changed.connect(self._masks_changed)
        self._rebuild_overlays()
        self._refresh_list()
        self._refresh_feed()

    def _clear_overlays(self) -> None:
        if self.maskset is not None:
            self.maskset.changed.disconnect(self._mask_changed)
            self.maskset.masks_changed.disconnect(self._masks_changed)
        for item in self.overlays.values():
            self.canvas.remove_overlay(item)
        self.overlays = {}

    def _rebuild_overlays(self) -> None:
        """One overlay per mask, the active one on top; existing ones are kept (no re-render)."""
        ms = self.maskset
        present = {id(m) for m in ms.masks} if ms is not None else set()
        for key in [k for k in self.overlays if k not in present]:
            self.canvas.remove_overlay(self.overlays.pop(key))
        if ms is None:
            return
        for i, mask in enumerate(ms.masks):
            item = self.overlays.get(id(mask))
            if item is None:
                item = MaskOverlayItem(mask, self.outline)
                item.setOpacity(self.opacity)
                self.canvas.add_overlay(item, 20.0)
                self.overlays[id(mask)] = item
            else:
                item.sync_color()
            item.setVisible(mask.visible)
            item.setZValue(30.0 if mask is ms.active else 20.0 + i * 0.01)

    def _mask_changed(self, mask: Mask, box: Box | None) -> None:
        item = self.overlays.get(id(mask))
        if item is not None and not self._ending_stroke:  # a stroke's dabs are drawn already
            item.update_box(box)
        if self._stroke is None and not self._ending_stroke:  # an edit finished: feed it
            self._mask_edited(mask)

    def _mask_edited(self, mask: Mask, now: bool = False) -> None:
        """Re-run the model if ``mask`` feeds it: at once after a stroke (a single event),
        through the controller's debounce otherwise (bursts of undo, fills)."""
        self._refresh_list_flags()
        if mask.name in masks_needed(self.state.mappings):
            if now:
                self.controller.run_prediction()  # the worker keeps only the newest request
            else:
                self.controller.schedule_prediction()

    def _masks_changed(self) -> None:
        self._rebuild_overlays()
        self._refresh_list()
        self._refresh_feed()

    def _provide_masks(self, names: set[str]) -> dict[str, np.ndarray]:
        """Copies of the named masks (taken now, on the GUI thread, so painting may go on)."""
        if self.maskset is None:
            return {}
        return {n: m.data.copy() for n in names if (m := self.maskset.get(n)) is not None}

    # -- the list -------------------------------------------------------------------------------

    def _refresh_list(self) -> None:
        lw = self.panel.mask_list
        lw.blockSignals(True)
        lw.clear()
        if self.maskset is not None:
            for mask in self.maskset.masks:
                item = QListWidgetItem(color_icon(mask.color), self._label(mask))
                item.setData(Qt.ItemDataRole.UserRole, mask.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if mask.visible else Qt.CheckState.Unchecked)
                lw.addItem(item)
                if mask is self.maskset.active:
                    lw.setCurrentItem(item)
        lw.blockSignals(False)
        has = self.maskset is not None
        for b in (self.panel.add_button, self.panel.rename_button, self.panel.delete_button,
                  self.panel.color_button, self.panel.load_button, self.panel.save_button):
            b.setEnabled(has)
        self._refresh_feed_masks()

    @staticmethod
    def _label(mask: Mask) -> str:
        return f"{mask.name} •" if mask.dirty else mask.name

    def _refresh_list_flags(self) -> None:
        lw = self.panel.mask_list
        if self.maskset is None:
            return
        for i in range(lw.count()):
            item = lw.item(i)
            mask = self.maskset.get(item.data(Qt.ItemDataRole.UserRole))
            if mask is not None and item.text() != self._label(mask):
                item.setText(self._label(mask))

    def _list_selected(self, current: QListWidgetItem | None, _prev=None) -> None:
        if current is not None and self.maskset is not None:
            self.maskset.set_active(current.data(Qt.ItemDataRole.UserRole))

    def _list_item_changed(self, item: QListWidgetItem) -> None:
        if self.maskset is None:
            return
        mask = self.maskset.get(item.data(Qt.ItemDataRole.UserRole))
        if mask is not None:
            mask.visible = item.checkState() == Qt.CheckState.Checked
            overlay = self.overlays.get(id(mask))
            if overlay is not None:
                overlay.setVisible(mask.visible)

    def add_mask(self, name: str | None = None) -> Mask | None:
        if self.maskset is None:
            return None
        if name is None:
            name, ok = QInputDialog.getText(self.window, "Add mask", "Name of the new mask:", text="mask")
            if not ok:
                return None
        return self.maskset.add(name or "mask")

    def rename_mask(self, new: str | None = None) -> None:
        ms = self.maskset
        if ms is None or ms.active is None:
            return
        old = ms.active.name
        if new is None:
            new, ok = QInputDialog.getText(self.window, "Rename mask", "New name:", text=old)
            if not ok:
                return
        fed_before = current_feed(self.state.mappings)
        given = ms.rename(old, new)
        if fed_before.mask_name == old and given != old:  # keep feeding the renamed mask
            self._set_feed(MaskFeed(fed_before.mode, fed_before.input_name, given))

    def delete_mask(self) -> None:
        ms = self.maskset
        if ms is None or ms.active is None:
            return
        mask = ms.active
        if mask.dirty and not self.ask(
            "Delete mask", f"Delete the mask {mask.name!r} with its unsaved painting?"
        ):
            return
        ms.remove(mask.name)
        if not ms.masks:
            ms.add("mask")

    def choose_color(self) -> None:
        ms = self.maskset
        if ms is None or ms.active is None:
            return
        color = QColorDialog.getColor(QColor(*ms.active.color), self.window, "Mask colour")
        if color.isValid():
            ms.set_color(ms.active.name, (color.red(), color.green(), color.blue()))

    # -- display --------------------------------------------------------------------------------

    def set_opacity(self, value: float) -> None:
        self.opacity = float(value)
        for item in self.overlays.values():
            item.setOpacity(self.opacity)

    def set_outline(self, on: bool) -> None:
        self.outline = bool(on)
        for item in self.overlays.values():
            item.set_outline(self.outline)

    # -- edits ----------------------------------------------------------------------------------

    def undo(self) -> None:
        if self._stroke is None and self.maskset is not None:
            entry = self.maskset.undo()
            self.window.statusBar().showMessage(
                f"Undid: {entry.label}" if entry else "Nothing to undo.", 3000
            )

    def redo(self) -> None:
        if self._stroke is None and self.maskset is not None:
            entry = self.maskset.redo()
            self.window.statusBar().showMessage(
                f"Redid: {entry.label}" if entry else "Nothing to redo.", 3000
            )

    def invert(self) -> None:
        if self.maskset is not None:
            self.maskset.invert()

    def clear(self) -> None:
        if self.maskset is not None:
            self.maskset.clear()

    def change_size(self, factor: float) -> None:
        """Scale the brush diameter by ``factor`` (by at least one pixel)."""
        s = self.panel.size
        new = int(round(s.value() * factor))
        if new == s.value():
            new += 1 if factor > 1 else -1
        s.setValue(max(1, new))

    # -- files ----------------------------------------------------------------------------------

    def load_mask_dialog(self) -> None:
        if self.maskset is None:
            self.window.show_error("Load mask", "Open an image first: a mask belongs to an image.")
            return
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Load mask", self.controller.last_dir(), MASK_FILTER
        )
        if path:
            self.load_mask_file(path)

    def load_mask_file(self, path: str | Path) -> bool:
        """Load a mask file into the active mask (one undoable edit).

        A file of another size is offered a nearest-neighbour resize; on any error the mask
        stays as it was and the error is shown.
        """
        ms = self.maskset
        if ms is None or ms.active is None:
            self.window.show_error("Load mask", "Open an image first: a mask belongs to an image.")
            return False
        path = Path(path)
        try:
            data = load_mask(path, ms.shape)
        except MaskSizeError as exc:
            h, w = exc.expected
            question = (
                f"{exc}\n\nResize it to {w}×{h} with nearest neighbour (values are kept, edges "
                "become blocky)?"
            )
            if not self.ask("Mask size differs", question):
                self.window.statusBar().showMessage("Mask not loaded.", 5000)
                return False
            data = resize_mask_nearest(exc.mask, h, w)
        except MaskLoadError as exc:
            self.window.show_error("Cannot load mask", str(exc))
            return False
        ms.replace(data, label=f"Load {path.name}")
        ms.mark_saved(ms.active.name, str(path))
        self._refresh_list_flags()
        self.window.statusBar().showMessage(
            f"Loaded {path.name} into mask {ms.active.name!r} (Ctrl+Z undoes it).", 8000
        )
        return True

    def save_mask_dialog(self) -> None:
        ms = self.maskset
        if ms is None or ms.active is None:
            return
        mask = ms.active
        suggested = str(Path(self.controller.last_dir()) / self._file_name(ms, mask))
        path, _ = QFileDialog.getSaveFileName(
            self.window, f"Save mask {mask.name!r}", suggested, "PNG (*.png);;NumPy (*.npy)"
        )
        if path:
            self.save_mask_file(path)

    def save_mask_file(self, path: str | Path, name: str | None = None) -> bool:
        ms = self.maskset
        if ms is None:
            return False
        mask = ms.get(name) if name else ms.active
        if mask is None:
            return False
        try:
            save_mask(path, mask.data)
        except (OSError, MaskviewerError) as exc:
            self.window.show_error("Cannot save mask", f"{Path(path).name}: {exc}")
            return False
        ms.mark_saved(mask.name, str(path))
        self._refresh_list_flags()
        self.window.statusBar().showMessage(f"Saved mask {mask.name!r} to {path}", 8000)
        return True

    @staticmethod
    def _file_name(ms: MaskSet, mask: Mask) -> str:
        stem = Path(ms.image_path).stem if ms.image_path else "image"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in mask.name)
        suffix = ".png" if mask.is_binary() else ".npy"
        return f"{stem}_{safe}{suffix}"

    def _save_set(self, ms: MaskSet, folder: Path) -> None:
        for mask in ms.masks:
            if mask.dirty:
                path = folder / self._file_name(ms, mask)
                save_mask(path, mask.data)
                ms.mark_saved(mask.name, str(path))

    def _ask_dialog(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self.window, title, text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _ask_unsaved_dialog(self) -> str:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Unsaved masks",
            "Some masks have painting that is not saved. Save them before closing?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            self.window,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {
            QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard",
        }.get(QMessageBox.StandardButton(answer), "cancel")

    def _pick_save_dir_dialog(self) -> str:
        return QFileDialog.getExistingDirectory(
            self.window, "Folder for the unsaved masks", self.controller.last_dir()
        )

    # -- feeding the model ----------------------------------------------------------------------

    def _model_changed(self, info) -> None:
        self.ablation_results = None
        if info is None:
            self._refresh_feed()
            return
        if current_feed(self.state.mappings).mode == "none" and not self._feed_chosen(info):
            image = self.state.image
            channels = None
            if image is not None:
                channels = 1 if image.channels in (1, 2) else 3
            proposal = propose_mask_mode(info, channels)
            if proposal.mode != "none":
                self._set_feed(MaskFeed(proposal.mode, proposal.input_name, self._default_feed_mask()))
                self.window.statusBar().showMessage(
                    f"Proposed from the model's inputs: {self._feed_text(proposal)} "
                    "(change it in the Masks panel).", 10000,
                )
        self._refresh_feed()

    def _settings_key(self, info) -> str:
        from maskviewer.gui.controller import _key

        return f"mask_feed/{_key(info.path)}"

    def _feed_chosen(self, info) -> bool:
        return self.controller.settings.value(self._settings_key(info)) is not None

    def _default_feed_mask(self) -> str:
        if self.maskset is not None and self.maskset.active is not None:
            return self.maskset.active.name
        return self._last_names[0] if self._last_names else "mask"

    @staticmethod
    def _feed_text(feed: MaskFeed) -> str:
        if feed.mode == "none":
            return MODE_LABELS["none"]
        return f"{MODE_LABELS[feed.mode]} — input {feed.input_name!r}"

    def feed(self) -> MaskFeed:
        """How the mask feeds the model now (read from the input mappings)."""
        return current_feed(self.state.mappings)

    def set_feed(self, mode: str, input_name: str | None = None, mask_name: str | None = None) -> None:
        """Feed a mask to the model: ``mode`` is none, channel, multiply or input."""
        if mode != "none" and input_name is None:
            info = self.state.model_info
            options = [o for o in feed_options(info) if o.mode == mode] if info else []
            if not options:
                raise MaskviewerError(f"This model has no input that takes the mask as {mode!r}.")
            input_name = options[0].input_name
        self._set_feed(MaskFeed(mode, input_name, mask_name or self._default_feed_mask()))

    def _set_feed(self, feed: MaskFeed) -> None:
        info = self.state.model_info
        if info is None:
            return
        new = apply_feed(self.state.mappings, feed)
        for name, m in new.items():
            if self.state.mappings.get(name) != m:
                self.controller.set_mapping(name, m)
        self.controller.settings.setValue(self._settings_key(info), feed.label)

    def _refresh_feed(self) -> None:
        p = self.panel
        info = self.state.model_info
        feed = current_feed(self.state.mappings)
        p.feed_mode.blockSignals(True)
        p.feed_mode.clear()
        if info is None:
            p.feed_mode.addItem(MODE_LABELS["none"], MaskFeed())
            p.feed_note.setText("Open a model to feed the mask to it.")
        else:
            for opt in feed_options(info):
                p.feed_mode.addItem(self._feed_text(opt), opt)
                if (opt.mode, opt.input_name) == (feed.mode, feed.input_name if feed.mode != "none" else None):
                    p.feed_mode.setCurrentIndex(p.feed_mode.count() - 1)
            notes = {
                "none": "",
                "channel": " The mask channel is in 0..1 whatever the image scaling.",
                "multiply": " Pixels are multiplied by the mask before scaling.",
                "input": " The mask is scaled like a grey image with values 0..1.",
            }
            resize = "" if feed.mode in ("none", "multiply") else (
                " A binary mask is resized with nearest neighbour, a soft one bilinearly.")
            p.feed_note.setText(feed.describe() + notes[feed.mode] + resize)
        p.feed_mode.blockSignals(False)
        self._refresh_feed_masks()
        p.ablation_button.setEnabled(feed.mode != "none")

    def _refresh_feed_masks(self) -> None:
        p = self.panel
        feed = current_feed(self.state.mappings)
        names = self.maskset.names if self.maskset is not None else list(self._last_names)
        if feed.mask_name and feed.mask_name not in names:
            names = names + [feed.mask_name]
        p.feed_mask.blockSignals(True)
        p.feed_mask.clear()
        p.feed_mask.addItems(names)
        if feed.mask_name:
            p.feed_mask.setCurrentText(feed.mask_name)
        p.feed_mask.setEnabled(feed.mode != "none")
        p.feed_mask.blockSignals(False)

    def _feed_mode_picked(self, _index: int) -> None:
        opt = self.panel.feed_mode.currentData()
        if isinstance(opt, MaskFeed):
            mask = self.panel.feed_mask.currentText() or self._default_feed_mask()
            self._set_feed(MaskFeed(opt.mode, opt.input_name, mask))

    def _feed_mask_picked(self, _index: int) -> None:
        feed = current_feed(self.state.mappings)
        name = self.panel.feed_mask.currentText()
        if feed.mode != "none" and name and name != feed.mask_name:
            self._set_feed(MaskFeed(feed.mode, feed.input_name, name))

    # -- ablation -------------------------------------------------------------------------------

    def run_ablation(self) -> int | None:
        """Run the model with the painted, zero, one, random and inverted masks (one job)."""
        feed = current_feed(self.state.mappings)
        if self.state.model_info is None or self.state.image is None or self.maskset is None:
            self.window.show_error("Mask ablation", "Open an image and a model first.")
            return None
        if feed.mode == "none":
            self.window.show_error(
                "Mask ablation",
                "The mask is not fed to the model, so there is nothing to compare. Choose how "
                "it is fed in the Masks panel (Mask → model).",
            )
            return None
        mask = self.maskset.get(feed.mask_name or "")
        if mask is None:
            self.window.show_error("Mask ablation", f"This image has no mask {feed.mask_name!r}.")
            return None
        others = self._provide_masks(masks_needed(self.state.mappings))
        variants = ablation_masks(mask.data, ABLATION_SEED)
        try:
            builds = {
                v: self.controller.build_inputs(masks={**others, mask.name: arr})
                for v, arr in variants.items()
            }
        except MaskviewerError as exc:
            self.window.show_error("Mask ablation", str(exc))
            return None

        def job(ctx) -> dict[str, dict[str, np.ndarray]]:
            results = {}
            for i, (variant, build) in enumerate(builds.items()):
                arrays, _frames = build()
                ctx.check()
                outputs = ctx.host.predict(arrays)
                results[variant] = {k: v[0] for k, v in outputs.items()}
                ctx.progress(i + 1, len(builds))
            return results

        self.ablation_panel.summary.setText("Running the model with each mask variant…")
        self.ablation_dock.show()
        self.ablation_dock.raise_()
        return self.controller.submit(ABLATION_KIND, job)

    def _job_finished(self, kind: str, generation: int, result) -> None:
        if kind != ABLATION_KIND or not self.controller.is_latest(kind, generation):
            return
        self.ablation_results = result
        rows = ablation_rows(result, self.state.labels)
        parts = []
        for out_name, ref in result["painted"].items():
            if np.asarray(ref).ndim <= 1 and np.asarray(ref).size > 1:
                labels = self.state.labels
                tops = []
                for v, outs in result.items():
                    i = int(np.argmax(outs[out_name]))
                    label = labels[i] if labels and i < len(labels) else str(i)
                    tops.append(f"{ABLATION_LABELS[v]}: {label}")
                parts.append(f"{out_name} top class — " + ", ".join(tops))
        summary = (
            f"Model run with {len(result)} masks (random: seed {ABLATION_SEED}, same coverage as "
            "the painted mask). Δ is the difference to the painted mask."
        )
        if parts:
            summary += "\n" + "\n".join(parts)
        self.ablation_panel.show_rows(rows, summary)

    def _job_failed(self, kind: str, generation: int, message: str, _exc) -> None:
        if kind == ABLATION_KIND and self.controller.is_latest(kind, generation):
            self.ablation_panel.summary.setText(f"The ablation failed: {message}")

    # -- painting with the mouse ----------------------------------------------------------------

    def _image_pos(self, event) -> tuple[float, float]:
        """Pixel-centre coordinates (pixel (r, c) is centred on (c, r)) of a viewport event."""
        scene = self.canvas.mapToScene(event.position().toPoint())
        p = self.canvas.view.mapSceneToView(scene)
        return p.x() - 0.5, p.y() - 0.5

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        et = event.type()
        if et == QEvent.Type.Leave:
            self.cursor.hide()
            return False
        if et not in (
            QEvent.Type.MouseButtonPress,
            QEvent.Type.MouseMove,
            QEvent.Type.MouseButtonRelease,
            QEvent.Type.MouseButtonDblClick,
        ):
            return False
        if self.maskset is None or self.maskset.active is None or self.tool not in PAINT_TOOLS:
            self.cursor.hide()
            return False
        x, y = self._image_pos(event)
        self._move_cursor(x, y)
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if et == QEvent.Type.MouseButtonPress:
            if event.button() != Qt.MouseButton.LeftButton:
                return False
            self._press(x, y, shift)
            return True
        if et == QEvent.Type.MouseButtonDblClick:
            if event.button() != Qt.MouseButton.LeftButton:
                return False
            if self.tool == "lasso" and len(self._lasso) >= 3:
                self._finish_lasso()
            return True
        if et == QEvent.Type.MouseMove:
            if event.buttons() & Qt.MouseButton.LeftButton:
                self._drag(x, y)
                return True
            if self.tool == "lasso" and self._lasso and not self._lasso_dragged:
                self._show_lasso(extra=(x, y))
            return False
        if event.button() == Qt.MouseButton.LeftButton:
            self._release(x, y)
            return True
        return False

    def _press(self, x: float, y: float, shift: bool) -> None:
        ms = self.maskset
        assert ms is not None
        self._erase_modifier = shift
        if self.tool in ("brush", "eraser"):
            erase = self.tool == "eraser" or shift
            self._stroke = ms.begin_stroke(self.brush, erase)
            ms.stroke_to(self._stroke, x, y)
        elif self.tool == "fill":
            cx, cy = int(round(x)), int(round(y))
            if 0 <= cx < ms.width and 0 <= cy < ms.height:
                value = 0.0 if shift else self.panel.intensity.value()
                ms.fill(cx, cy, value, self.panel.tolerance.value())
        elif self.tool in ("rectangle", "ellipse"):
            self._shape_start = (x, y)
            self._show_shape(x, y)
        elif self.tool == "lasso":
            if not self._lasso:
                self._lasso_dragged = False
            elif self._near_first(x, y):
                self._finish_lasso()
                return
            self._lasso.append((x, y))
            self._show_lasso()

    def _drag(self, x: float, y: float) -> None:
        if self._stroke is not None and self.maskset is not None:
            self.maskset.stroke_to(self._stroke, x, y)
        elif self._shape_start is not None:
            self._show_shape(x, y)
        elif self.tool == "lasso" and self._lasso:
            last = self._lasso[-1]
            if abs(x - last[0]) + abs(y - last[1]) >= 1.0:
                self._lasso.append((x, y))
                self._lasso_dragged = True
                self._show_lasso()

    def _release(self, x: float, y: float) -> None:
        ms = self.maskset
        if self._stroke is not None and ms is not None:
            stroke, self._stroke = self._stroke, None
            if stroke.box is not None:
                # the pixels are final: the model starts on them while the undo entry is built
                self._mask_edited(stroke.mask, now=True)
            self._ending_stroke = True
            try:
                ms.end_stroke(stroke)
            finally:
                self._ending_stroke = False
            self._refresh_list_flags()  # the mask is now unsaved
        elif self._shape_start is not None and ms is not None:
            x0, y0 = self._shape_start
            self._shape_start = None
            self.preview.setPath(QPainterPath())
            value = self.panel.intensity.value()
            # corners are the pixels under the press and the release
            corners = (round(x0), round(y0), round(x), round(y))
            if self.tool == "rectangle":
                ms.rectangle(*corners, value, self._erase_modifier)
            else:
                ms.ellipse(*corners, value, self._erase_modifier)
        elif self.tool == "lasso" and self._lasso_dragged:
            self._finish_lasso()

    def _near_first(self, x: float, y: float) -> bool:
        if len(self._lasso) < 3:
            return False
        fx, fy = self._lasso[0]
        scale = self.canvas.view.viewPixelSize()[0] or 1.0
        return abs(x - fx) + abs(y - fy) <= 6 * scale

    def _finish_lasso(self) -> None:
        points, self._lasso = self._lasso, []
        self._lasso_dragged = False
        self.preview.setPath(QPainterPath())
        if self.maskset is not None and len(points) >= 3:
            self.maskset.polygon(points, self.panel.intensity.value(), self._erase_modifier)

    def _show_lasso(self, extra: tuple[float, float] | None = None) -> None:
        path = QPainterPath()
        pts = self._lasso + ([extra] if extra else [])
        if pts:
            path.moveTo(QPointF(pts[0][0] + 0.5, pts[0][1] + 0.5))
            for px, py in pts[1:]:
                path.lineTo(QPointF(px + 0.5, py + 0.5))
        self.preview.setPath(path)

    def _show_shape(self, x: float, y: float) -> None:
        assert self._shape_start is not None
        x0, y0 = (round(v) for v in self._shape_start)
        x, y = round(x), round(y)
        rect = QRectF(QPointF(min(x0, x), min(y0, y)), QPointF(max(x0, x) + 1, max(y0, y) + 1))
        path = QPainterPath()
        if self.tool == "rectangle":
            path.addRect(rect)
        else:
            path.addEllipse(rect)
        self.preview.setPath(path)

    def _cancel_shape(self) -> None:
        self._shape_start = None
        self._lasso = []
        self._lasso_dragged = False
        self.preview.setPath(QPainterPath())

    def _end_interaction(self) -> None:
        if self._stroke is not None and self.maskset is not None:
            self.maskset.end_stroke(self._stroke)
        self._stroke = None
        self._cancel_shape()

    def _move_cursor(self, x: float, y: float) -> None:
        if self.tool in ("brush", "eraser"):
            r = self.brush.radius
            cx, cy = round(x) + 0.5, round(y) + 0.5
            self.cursor.setRect(QRectF(cx - r, cy - r, 2 * r, 2 * r))
            self.cursor.show()
        else:
            self.cursor.hide()

    def _update_cursor_shape(self) -> None:
        if self.tool in ("brush", "eraser"):
            rect = self.cursor.rect()
            c = rect.center()
            r = self.brush.radius
            self.cursor.setRect(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r))
            self.canvas.viewport().setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.cursor.hide()
            shape = Qt.CursorShape.ArrowCursor if self.tool == "pan" else Qt.CursorShape.CrossCursor
            self.canvas.viewport().setCursor(shape)

    # -- wiring ---------------------------------------------------------------------------------

    def _build_actions(self) -> None:
        w = self.window
        menu = w.menuBar().addMenu("Mas&k")
        w.menuBar().insertMenu(w.help_menu.menuAction(), menu)
        self.menu = menu
        self.actions: dict[str, QAction] = {}

        def add(key: str, text: str, slot, shortcut=None) -> QAction:
            act = QAction(text, w)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(lambda _c=False: slot())
            menu.addAction(act)
            self.actions[key] = act
            return act

        add("undo", "&Undo Stroke", self.undo, QKeySequence.StandardKey.Undo)
        add("redo", "&Redo Stroke", self.redo, "Ctrl+Shift+Z")
        menu.addSeparator()
        for tool, label, key, _tip in TOOLS:
            add(f"tool_{tool}", f"{label} Tool", lambda t=tool: self.set_tool(t), key)
        add("smaller", "Smaller Brush", lambda: self.change_size(1 / 1.25), "[")
        add("larger", "Larger Brush", lambda: self.change_size(1.25), "]")
        menu.addSeparator()
        add("invert", "&Invert Mask", self.invert, "Ctrl+I")
        add("clear", "&Clear Mask", self.clear)
        add("new", "&New Mask…", lambda: self.add_mask())
        menu.addSeparator()
        add("load", "&Load Mask…", self.load_mask_dialog, "Ctrl+Shift+M")
        add("save", "&Save Mask…", self.save_mask_dialog, "Ctrl+Alt+S")
        menu.addSeparator()
        add("ablation", "Mask &Ablation", self.run_ablation, "Ctrl+Shift+A")
        file_actions = w.file_menu.actions()
        w.file_menu.insertAction(file_actions[min(3, len(file_actions) - 1)], self.actions["load"])

    def _connect_panel(self) -> None:
        p = self.panel
        for tool, button in p.tool_buttons.items():
            button.clicked.connect(lambda _c=False, t=tool: self.set_tool(t))
        p.mask_list.currentItemChanged.connect(self._list_selected)
        p.mask_list.itemChanged.connect(self._list_item_changed)
        p.add_button.clicked.connect(lambda: self.add_mask())
        p.rename_button.clicked.connect(lambda: self.rename_mask())
        p.delete_button.clicked.connect(self.delete_mask)
        p.color_button.clicked.connect(self.choose_color)
        p.load_button.clicked.connect(self.load_mask_dialog)
        p.save_button.clicked.connect(self.save_mask_dialog)
        p.opacity.valueChanged.connect(lambda v: self.set_opacity(v / 100.0))
        p.outline.toggled.connect(self.set_outline)
        p.undo_button.clicked.connect(self.undo)
        p.redo_button.clicked.connect(self.redo)
        p.invert_button.clicked.connect(self.invert)
        p.clear_button.clicked.connect(self.clear)
        p.size.valueChanged.connect(lambda _v: self._update_cursor_shape())
        p.feed_mode.currentIndexChanged.connect(self._feed_mode_picked)
        p.feed_mask.currentIndexChanged.connect(self._feed_mask_picked)
        p.ablation_button.clicked.connect(self.run_ablation)

    def export_items(self) -> list:
        """The current image's masks, for File → Export."""
        from maskviewer.gui.export_tool import mask_items

        return mask_items(self)


def install(window) -> MaskTool:
    """Add the Masks dock, the Mask menu and painting on the canvas."""
    return MaskTool(window)
