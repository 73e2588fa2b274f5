"""Help → Demos…: the gallery of bundled demos, and opening one with the view it is about.

Opening a demo opens its first image, its labels and its model; once the model has loaded it
feeds the demo's other inputs from their files, feeds its mask, and puts the view the demo
shows (Layers, Masks, Kernels, Patches, Binarise) in front, set up on what the demo is about.

This module depends on :mod:`maskviewer.demo` (the Qt-free demo index), never the other way
round: :func:`open_demo` is the window-side way to open a demo by name.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.mapping import InputMapping
from maskviewer.demo import Demo, get_demo, list_demos
from maskviewer.gui.demo_banner import DemoBanner

THUMB = 160


class DemoGallery(QDialog):
    """Lists the demos with their explanation and held-out score; Open opens the chosen one."""

    def __init__(self, tool: DemoTool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tool = tool
        self.setWindowTitle("Demos")
        self.resize(820, 460)
        self.demos: list[Demo] = []
        self.list = QListWidget()
        self.list.setMinimumWidth(300)
        self.list.setWordWrap(True)  # the titles are whole phrases
        self.title = QLabel("")
        self.title.setStyleSheet("font-weight: bold; font-size: 13pt;")
        self.title.setWordWrap(True)
        self.score = QLabel("")
        self.score.setStyleSheet("color: #206020;")
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setStyleSheet("background: #202020;")
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.description.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.view_note = QLabel("")
        self.view_note.setStyleSheet("color: #606060;")
        self.open_button = QPushButton("Open")
        self.open_button.setDefault(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        right = QVBoxLayout()
        head = QHBoxLayout()
        text = QVBoxLayout()
        text.addWidget(self.title)
        text.addWidget(self.score)
        text.addWidget(self.view_note)
        text.addStretch(1)
        head.addLayout(text, 1)
        head.addWidget(self.thumb)
        right.addLayout(head)
        right.addWidget(self.description, 1)
        body = QHBoxLayout()
        body.addWidget(self.list)
        body.addLayout(right, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(body, 1)
        lay.addWidget(buttons)

        self.list.currentRowChanged.connect(self._show)
        self.list.itemDoubleClicked.connect(lambda _item: self.open_current())
        self.open_button.clicked.connect(self.open_current)
        self.reload()

    def reload(self) -> None:
        """Read the demo index again."""
        self.list.clear()
        try:
            self.demos = list_demos()
        except MaskviewerError as exc:
            self.demos = []
            self.description.setText(str(exc))
        for demo in self.demos:
            item = QListWidgetItem(demo.title)
            item.setToolTip(f"maskviewer --demo {demo.name}")
            self.list.addItem(item)
        if not self.demos:
            self.title.setText("No demos are installed")
            self.open_button.setEnabled(False)
        else:
            self.list.setCurrentRow(0)

    def current(self) -> Demo | None:
        row = self.list.currentRow()
        return self.demos[row] if 0 <= row < len(self.demos) else None

    def select(self, name: str) -> bool:
        """Select the demo called ``name``; False if there is none."""
        for row, demo in enumerate(self.demos):
            if demo.name == name:
                self.list.setCurrentRow(row)
                return True
        return False

    def _show(self, _row: int) -> None:
        demo = self.current()
        if demo is None:
            return
        self.title.setText(demo.title)
        text = demo.score_text()
        self.score.setText(text[:1].upper() + text[1:])  # "Dice" keeps its capital
        self.view_note.setText(f"Opens in the {demo.view} view  ·  maskviewer --demo {demo.name}")
        self.description.setText(demo.description)
        missing = demo.missing_files()
        self.open_button.setEnabled(not missing)
        if missing:
            self.description.setText(
                demo.description + "\n\nMissing files: " + ", ".join(missing)
                + ". Rebuild the demos with scripts/build_demos.py."
            )
        pix = QPixmap(str(demo.path(demo.images[0]))) if demo.images else QPixmap()
        if pix.isNull():
            self.thumb.clear()
        else:
            self.thumb.setPixmap(
                pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                           Qt.TransformationMode.FastTransformation)
            )

    def open_current(self) -> None:
        demo = self.current()
        if demo is not None:
            self.tool.open(demo)
            self.accept()


class DemoTool(QObject):
    """Adds Help → Demos… and opens demos in the window."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.state = window.controller.state
        self.gallery: DemoGallery | None = None
        self.demo: Demo | None = None
        self._pending: Demo | None = None  # waiting for its model to load
        self._pending_prediction: Demo | None = None
        self._pending_layer: str | None = None
        self.action = window.help_menu.addAction("&Demos…", self.show_gallery)
        about = next((a for a in window.help_menu.actions() if a is not self.action), None)
        if about is not None:  # first in the Help menu
            window.help_menu.insertAction(about, self.action)
        #: what to try and the held-out score, above the image while the demo's model is open
        self.banner = DemoBanner(on_details=self.show_gallery)
        if hasattr(window, "add_canvas_widget"):
            window.add_canvas_widget(self.banner, "top")
        self.state.model_changed.connect(self._model_changed)
        self.state.prediction_changed.connect(self._prediction_changed)
        self.controller.worker.job_finished.connect(self._job_finished)

    # -- the gallery ----------------------------------------------------------------------------

    def show_gallery(self, name: str | None = None) -> DemoGallery:
        """Show the gallery (non-modal), with ``name`` selected if given."""
        if self.gallery is None:
            self.gallery = DemoGallery(self, self.window)
        else:
            self.gallery.reload()
        if name:
            self.gallery.select(name)
        self.gallery.show()
        self.gallery.raise_()
        self.gallery.activateWindow()
        return self.gallery

    # -- opening a demo -------------------------------------------------------------------------

    def open(self, demo: Demo) -> bool:
        """Open ``demo``: image, masks, labels, model; the rest follows when the model is loaded."""
        missing = demo.missing_files()
        if missing:
            self.window.show_error(
                "Cannot open the demo",
                f"The demo {demo.name!r} is incomplete: {', '.join(missing)} missing. Rebuild "
                "the demos with scripts/build_demos.py or reinstall maskviewer.",
            )
            return False
        c = self.controller
        self.demo = demo
        self.banner.show_demo(demo)
        self._pending = self._pending_prediction = None
        self._pending_layer = None
        if not c.open_image(str(demo.path(demo.images[0]))):
            return False
        if hasattr(self.window, "canvas"):
            self.window.canvas.fit()  # demo images differ a lot in size
        if demo.view == "Masks" and demo.masks:
            masks = self.window.tools.get("masks") if hasattr(self.window, "tools") else None
            if masks is not None and hasattr(masks, "load_mask_file"):
                masks.load_mask_file(str(demo.path(demo.masks[0])))
        if demo.labels:
            c.load_labels(str(demo.path(demo.labels)))
        self._pending = demo
        c.open_model(str(demo.path(demo.model)))
        self.show_view(demo.view)
        self.window.statusBar().showMessage(f"Demo: {demo.title} — {demo.score_text()}", 15000)
        return True

    def show_view(self, view: str) -> bool:
        """Show and raise the dock titled ``view``; False if the window has none."""
        docks = getattr(self.window, "docks", {})
        dock = docks.get(view) or next(
            (d for title, d in docks.items() if title.lower() == view.lower()), None
        )
        if dock is None:
            return False
        dock.show()
        dock.raise_()
        return True

    @staticmethod
    def _is_model_of(demo: Demo | None, info) -> bool:
        if demo is None or info is None:
            return False
        try:
            return Path(info.path).resolve() == demo.path(demo.model).resolve()
        except OSError:
            return False

    def _is_demo_model(self, info) -> bool:
        return self._is_model_of(self._pending, info)

    def _model_changed(self, info) -> None:
        if not self._is_model_of(self.banner.demo, info):
            self.banner.hide()  # another model: the demo's instructions no longer apply
        if not self._is_demo_model(info):
            if info is not None:
                self._pending = None  # another model was opened meanwhile
            return
        demo = self._pending
        self._pending = None
        assert demo is not None
        try:
            # fed now, so the first prediction already sees the demo's inputs
            self._feed_inputs(demo, info)
        except MaskviewerError as exc:
            self.window.show_error("Demo", str(exc))
        # the views finish reacting to the new model (and its mappings) first
        QTimer.singleShot(0, lambda: self._set_up_view_if_current(demo, info))

    def _set_up_view_if_current(self, demo: Demo, info) -> None:
        if self.state.model_info is not info:
            return  # another model was opened meanwhile
        try:
            self._set_up_view(demo)
        except MaskviewerError as exc:
            self.window.show_error("Demo", str(exc))

    def _feed_inputs(self, demo: Demo, info) -> None:
        names = {t.name for t in info.inputs}
        c = self.controller
        for name, rel in demo.inputs.items():
            if name not in names:
                continue
            path = str(demo.path(rel))
            if not c.set_input_file(name, path):
                continue
            if rel.endswith(".npy"):  # an array of the input's exact shape: fed as stored
                m = c.state.mappings.get(name, InputMapping())
                c.set_mapping(name, InputMapping.from_dict({**m.to_dict(), "resize": "none", "scale": "raw"}))

    def _set_up_view(self, demo: Demo) -> None:
        tools = getattr(self.window, "tools", {})
        focus = demo.focus
        if "masks" in tools and demo.view != "Masks":
            tools["masks"].set_tool("pan")  # only the masks demo starts in paint mode
        if demo.view == "Masks" and "masks" in tools:
            masks = tools["masks"]
            feed = focus.get("feed", "channel")
            if masks.feed().mode != feed:
                masks.set_feed(feed)
            masks.set_tool("brush")  # the demo is about painting: start in paint mode
        elif demo.view == "Layers" and focus.get("layer"):
            self._pending_layer = str(focus["layer"])
        elif demo.view == "Patches" and "patches" in tools:
            self._set_up_patches(tools["patches"], focus)
        elif demo.view == "Attention" and "attention" in tools:
            tools["attention"].show_mode(str(focus.get("method", "rollout")))
        elif demo.view == "Binarise":
            self._pending_prediction = demo
            if self.state.prediction is not None:  # it came first
                self._prediction_changed(self.state.prediction)
        self.show_view(demo.view)

    def _set_up_patches(self, tool, focus: dict) -> None:
        from maskviewer.core.patches import preset_corners

        image = self.state.image
        if image is None:
            return
        p = tool.panel
        combine = p.method.findData(focus.get("combine", "mean"))
        if combine >= 0:
            p.method.setCurrentIndex(combine)
        preset = p.preset.findData(focus.get("preset", "corners"))
        if preset >= 0:
            p.preset.setCurrentIndex(preset)
        # the vote's map is what the demo is about: shown over the image as soon as it is run
        tool.show_map(focus.get("map", "score"))
        size = int(focus.get("size", 18))
        if tool.set_spec(preset_corners(image.height, image.width, size)) and focus.get("run", True):
            tool.run_all()

    def _job_finished(self, _kind: str, _generation: int, _result) -> None:
        # the layer list is read by a job after the model loads: select the layer once it is there
        if self._pending_layer is None:
            return
        layers = getattr(self.window, "tools", {}).get("layers")
        if layers is None:
            self._pending_layer = None
            return
        if self._pending_layer in getattr(layers, "entries", {}):
            path, self._pending_layer = self._pending_layer, None
            layers.select_layer(path)

    def _prediction_changed(self, prediction) -> None:
        demo = self._pending_prediction
        if demo is None or prediction is None:
            return
        self._pending_prediction = None
        binarise = getattr(self.window, "tools", {}).get("binarise")
        if binarise is None:
            return
        output = demo.focus.get("output")
        if output and output in prediction.outputs:
            binarise.select_source(output)
        if demo.masks:
            binarise.load_reference(str(demo.path(demo.masks[0])))


def demo_tool(window) -> DemoTool:
    """The window's demos tool (made on the spot if it is not installed)."""
    tool = getattr(window, "tools", {}).get("demos")
    if tool is None:
        tool = DemoTool(window)
        if hasattr(window, "tools"):
            window.tools["demos"] = tool
    return tool


def open_demo_in_window(window, demo: Demo) -> bool:
    """Open ``demo`` in ``window`` with its view in front."""
    return demo_tool(window).open(demo)


def open_demo(window, name: str | None) -> Demo:
    """Open the demo called ``name`` (the first for None or ``""``) in ``window``.

    Returns
    -------
    Demo
        The demo opened (its model is still loading).

    Raises
    ------
    MaskviewerError
        No demos are installed, or none has that name.
    """
    demo = get_demo(name)
    open_demo_in_window(window, demo)
    return demo


def install(window) -> DemoTool:
    """Add Help → Demos…."""
    return DemoTool(window)
