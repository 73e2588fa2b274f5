"""The input dock: how the image becomes each model input (source, resize, scaling)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from maskviewer.core.mapping import (
    RESIZE_LABELS,
    RESIZE_MODES,
    SCALE_LABELS,
    SCALE_MODES,
    InputMapping,
    explain_mapping,
    is_image_input,
)
from maskviewer.core.mask_feed import parse_source
from maskviewer.core.model_info import ModelInfo


def _floats(text: str) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        return None
    return vals or None


PICK_FILE = "pick-file"
#: the widest an input's title is drawn (pixels): a page is never narrower than about 260
TITLE_WIDTH = 220


def _source_label(source: str) -> str:
    """How a mapping source reads in the selector (files by name, masks by how they feed)."""
    if source.startswith("file:"):
        return "File: " + source.split(":", 1)[1].rsplit("/", 1)[-1]
    mode, name = parse_source(source)
    if mode == "channel":
        return f"Image + mask '{name}' as a channel"
    if mode == "multiply":
        return f"Image × mask '{name}'"
    if mode == "input":
        return f"Mask '{name}'"
    return source


class _InputEditor(QGroupBox):
    changed = Signal(str, object)  # input name, InputMapping
    pick_file = Signal(str)  # input name: the user wants another image file as source

    def __init__(
        self, name: str, shape_text: str, mapping: InputMapping, sources: list[tuple[str, str]],
        read: str = "",
    ):
        super().__init__()
        self.name = name
        # a long input name is shortened in the title (whole in the tooltip): the page stays narrow
        metrics = self.fontMetrics()
        room = max(TITLE_WIDTH - metrics.horizontalAdvance(f"  {shape_text}"), 60)
        short = metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room)
        self.setTitle(f"{short}  {shape_text}")
        self.setToolTip(f"Input {name} {shape_text}")
        # what the model itself says about its input, so the proposal can be checked
        self.read = QLabel(read)
        self.read.setWordWrap(True)
        self.read.setVisible(bool(read))
        self.source = QComboBox()
        for label, value in sources:
            self.source.addItem(label, value)
        self.source.addItem("Another image file…", PICK_FILE)
        self.resize_mode = QComboBox()
        for mode in RESIZE_MODES:
            self.resize_mode.addItem(RESIZE_LABELS[mode], mode)
        self.scale = QComboBox()
        for mode in SCALE_MODES:
            self.scale.addItem(SCALE_LABELS[mode], mode)
        self.mean = QLineEdit()
        self.std = QLineEdit()
        self.mean.setPlaceholderText("e.g. 0.485, 0.456, 0.406")
        self.std.setPlaceholderText("e.g. 0.229, 0.224, 0.225")
        for combo in (self.source, self.resize_mode, self.scale):  # long labels elide, never widen the page
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        form = QFormLayout(self)
        form.addRow(self.read)
        form.addRow("Source", self.source)
        form.addRow("Resize", self.resize_mode)
        form.addRow("Scale", self.scale)
        form.addRow("Mean", self.mean)
        form.addRow("Std", self.std)
        self.set_mapping(mapping)
        for combo in (self.source, self.resize_mode, self.scale):
            combo.currentIndexChanged.connect(self._emit)
        self.mean.editingFinished.connect(self._emit)
        self.std.editingFinished.connect(self._emit)

    def set_mapping(self, m: InputMapping) -> None:
        for combo, value in ((self.source, m.source), (self.resize_mode, m.resize), (self.scale, m.scale)):
            combo.blockSignals(True)
            idx = combo.findData(value)
            if idx < 0 and combo is self.source:
                label = _source_label(value)
                combo.insertItem(combo.count() - 1, label, value)
                combo.setItemData(combo.count() - 2, value.split(":", 1)[-1], 3)  # tooltip
                idx = combo.count() - 2
            combo.setCurrentIndex(max(idx, 0))
            combo.blockSignals(False)
        self.mean.setText(", ".join(f"{v:g}" for v in m.mean))
        self.std.setText(", ".join(f"{v:g}" for v in m.std))
        self._update_enabled()

    def mapping(self) -> InputMapping:
        m = InputMapping(
            source=self.source.currentData(),
            resize=self.resize_mode.currentData(),
            scale=self.scale.currentData(),
        )
        mean, std = _floats(self.mean.text()), _floats(self.std.text())
        if mean:
            m.mean = mean
        if std:
            m.std = std
        return m

    def _update_enabled(self) -> None:
        meanstd = self.scale.currentData() == "mean/std"
        self.mean.setEnabled(meanstd)
        self.std.setEnabled(meanstd)
        for combo in (self.source, self.resize_mode, self.scale):  # the whole text, when elided
            combo.setToolTip(combo.currentText())

    def _emit(self) -> None:
        self._update_enabled()
        if self.source.currentData() == PICK_FILE:
            self.pick_file.emit(self.name)
            return
        self.changed.emit(self.name, self.mapping())


class MappingPanel(QWidget):
    """One editor per model input; emits ``(input name, InputMapping)`` on every edit."""

    mapping_edited = Signal(str, object)
    pick_file = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(4, 4, 4, 4)
        self.hint = QLabel("Open a model to choose how the image is fed to it.")
        self.hint.setWordWrap(True)
        self._lay.addWidget(self.hint)
        self._lay.addStretch(1)
        self.editors: dict[str, _InputEditor] = {}
        self.extra_sources: list[tuple[str, str]] = []

    def set_model(self, info: ModelInfo | None, mappings: dict[str, InputMapping]) -> None:
        for editor in self.editors.values():
            self._lay.removeWidget(editor)
            editor.deleteLater()
        self.editors = {}
        if info is None:
            self.hint.setText("Open a model to choose how the image is fed to it.")
            return
        self.hint.setText(
            "How the image becomes each input. Changes re-run the model; they are remembered "
            "for this model."
        )
        sources = [("Current image", "image")] + self.extra_sources
        for pos, spec in enumerate(info.inputs):
            read = (explain_mapping(info.preprocessing.get(spec.name))
                    if is_image_input(spec.shape) else "")
            editor = _InputEditor(
                spec.name, spec.shape_text(), mappings.get(spec.name, InputMapping()), sources, read
            )
            editor.changed.connect(self.mapping_edited)
            editor.pick_file.connect(self.pick_file)
            self.editors[spec.name] = editor
            self._lay.insertWidget(1 + pos, editor)

    def update_mappings(self, mappings: dict[str, InputMapping]) -> None:
        for name, m in mappings.items():
            if name in self.editors and self.editors[name].mapping() != m:
                self.editors[name].set_mapping(m)
