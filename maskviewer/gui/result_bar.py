"""The result bar under the image: the model's answer stays in view whatever panel is in front.

Kind-aware (see :mod:`maskviewer.core.output_kinds`): the top classes ``3 (0.91) · 8 (0.05) · …``,
a count by its name ``count 15.33``, labels with their probabilities. After an edit (a mask
stroke, an input change) it also shows what changed since the previous result:
``3 (0.91) ← 0 (0.62)``, ``count 15.33 ← 12.10``. Without a model it says how to start; while
the model runs it says so.

``install(window)`` adds the bar below the canvas, lets the Predictions panel read outputs by
the app state's kinds (its "Read as" choices go to the controller), and offers the outputs,
read by kind, to File → Export.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy

from maskviewer.core import output_kinds as ok
from maskviewer.core.state import Prediction

CHANGE_STYLE = "color: #d08020;"
MUTED_STYLE = "color: gray;"


def _same_outputs(a: Prediction, b: Prediction) -> bool:
    """Whether two predictions gave the same numbers (a repeated run of the same inputs)."""
    if a is b:
        return True
    if a.outputs.keys() != b.outputs.keys():
        return False
    return all(np.array_equal(np.asarray(a.outputs[k]), np.asarray(b.outputs[k])) for k in a.outputs)


def _map_text(name: str, pred: Prediction, previous: Prediction | None) -> tuple[str, str]:
    """An image-shaped output in a few words (its size and range), and the change of its mean."""
    v = np.asarray(pred.outputs[name], dtype=np.float64)
    shape = v.shape[:-1] if v.ndim == 3 and v.shape[-1] == 1 else v.shape
    finite = v[np.isfinite(v)]
    span = f" ({finite.min():.2f}…{finite.max():.2f})" if finite.size else ""
    text = f"{name}: map {'×'.join(str(d) for d in shape)}{span}"
    old = None if previous is None else previous.outputs.get(name)
    if old is None or np.shape(old) != v.shape or not finite.size:
        return text, ""
    mean, before = float(np.nanmean(v)), float(np.nanmean(np.asarray(old, dtype=np.float64)))
    if abs(mean - before) < 5e-4 * max(1.0, abs(before)):
        return text, ""
    return text, f"{name}: mean {mean:.3g} ← {before:.3g}"


def _shortcut(window: Any, fragment: str, default: str) -> str:
    """The shortcut of the menu action whose text holds ``fragment`` (as the menus show it)."""
    for menu in (getattr(window, "file_menu", None), getattr(window, "model_menu", None)):
        for act in menu.actions() if menu is not None else []:
            if fragment in act.text().replace("&", "") and not act.shortcut().isEmpty():
                return act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
    return default


class ResultBar(QFrame):
    """A slim, full-width bar: the result line, the change since the last result, a status."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("resultBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#resultBar { border-top: 1px solid #606060; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 8, 3)
        lay.setSpacing(14)
        self.title = QLabel("Result")
        self.title.setStyleSheet(MUTED_STYLE)
        self.result = QLabel("")
        self.result.setStyleSheet("font-weight: bold;")
        self.change = QLabel("")
        self.change.setStyleSheet(CHANGE_STYLE)
        self.status = QLabel("")
        self.status.setStyleSheet(MUTED_STYLE)
        for label in (self.result, self.change):
            # long lines are cut at the window's edge, never widen the window
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.title)
        lay.addWidget(self.result, 3)
        lay.addWidget(self.change, 2)
        lay.addWidget(self.status)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def show_message(self, text: str) -> None:
        """An empty state: ``text`` alone."""
        self.result.setText(text)
        self.result.setStyleSheet(MUTED_STYLE)
        self.change.setText("")
        self.change.hide()  # the message takes the whole width
        self.setToolTip(text)

    def show_result(self, text: str, change: str) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("font-weight: bold;")
        self.change.setText(change)
        self.change.setStyleSheet(CHANGE_STYLE if "←" in change else MUTED_STYLE)
        self.change.setVisible(bool(change))
        self.setToolTip(text + (f"\nChanged since the previous result: {change}" if change else ""))

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #c03030;" if error else MUTED_STYLE)

    def text(self) -> str:
        """Everything the bar says, as one line (for tests and the tooltip)."""
        return "  ".join(t for t in (self.result.text(), self.change.text(), self.status.text()) if t)


class ResultBarTool(QObject):
    """Keeps the bar in step with the app state: predictions, kinds, labels, runs and errors."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = c = window.controller
        self.state = s = c.state
        self.bar = ResultBar()
        window.add_canvas_widget(self.bar, "bottom")
        panel = getattr(window, "predictions_panel", None)
        if panel is not None:
            panel.bind_kinds(s.kinds, c.set_output_kind)
        self.current: Prediction | None = None
        self.previous: Prediction | None = None
        self.loading = False
        s.prediction_changed.connect(self._prediction)
        s.model_changed.connect(self._model)
        s.image_changed.connect(lambda _i: self.show())
        s.labels_changed.connect(lambda _l: self.show())
        s.kinds.changed.connect(lambda _n: self.show())
        c.busy_changed.connect(self._busy)
        c.prediction_error.connect(lambda message: self.bar.set_status(f"Inference failed: {message}", True))
        c.model_loading.connect(self._loading)
        self.show()

    # -- events ----------------------------------------------------------------------------------

    def _prediction(self, prediction: Prediction | None) -> None:
        if prediction is None:
            self.show()
            return
        if self.current is not None and not _same_outputs(self.current, prediction):
            self.previous = self.current  # a re-run with the same answer keeps what it is compared with
        self.current = prediction
        self.bar.set_status("")
        self.show()

    def _model(self, _info: Any) -> None:
        self.loading = False
        self.current = self.previous = None  # another model's numbers are not compared
        self.show()

    def _loading(self, _path: str) -> None:
        self.loading = True
        self.show()

    def _busy(self, busy: bool, what: str) -> None:
        if busy and what == "predict":
            self.bar.set_status("running…")
        elif not busy and self.bar.status.text() == "running…":
            self.bar.set_status("")

    # -- what the bar says -----------------------------------------------------------------------

    def readings(self, prediction: Prediction | None) -> dict[str, ok.Reading | None]:
        """Each output of ``prediction`` read by its kind (None for maps)."""
        if prediction is None:
            return {}
        out: dict[str, ok.Reading | None] = {}
        for name, value in prediction.outputs.items():
            v = np.asarray(value)
            kind = self.state.kinds.kind_of(name, v)
            out[name] = None if kind.is_map else ok.read(kind, v, self.state.labels, 3)
        return out

    def lines(self) -> tuple[str, str]:
        """``(result, change)`` for the current prediction, one segment per output."""
        pred = self.current
        if pred is None:
            return "", ""
        now, before = self.readings(pred), self.readings(self.previous)
        many = len(now) > 1
        texts, changes = [], []
        for name, reading in now.items():
            if reading is None:
                text, diff = _map_text(name, pred, self.previous)
                texts.append(text)
                changes += [diff] if diff else []
                continue
            named = many and reading.kind.is_classes
            texts.append((f"{name}: " if named else "") + ok.summary(reading, 3))
            diff = ok.change(reading, before.get(name))
            if diff:
                changes.append((f"{name}: " if named else "") + diff)
        if not changes and self.previous is not None:
            return "   |   ".join(texts), "no change since the previous result"
        return "   |   ".join(texts), "   ".join(changes)

    def show(self) -> None:
        s = self.state
        if self.loading:
            self.bar.show_message("Loading the model…")
        elif s.model_info is None:
            model_key = _shortcut(self.window, "Open Model", "Ctrl+Shift+O")
            self.bar.show_message(f"No model — open one ({model_key}) or a demo (Help → Demos…)")
        elif s.image is None:
            image_key = _shortcut(self.window, "Open Image", "Ctrl+O")
            self.bar.show_message(f"No image — open one ({image_key}) or drop it on the window")
        elif self.current is None or s.prediction is None:
            self.bar.show_message("Running the model…")
        else:
            self.bar.show_result(*self.lines())

    # -- export ----------------------------------------------------------------------------------

    def export_items(self) -> list:
        """The outputs of the current prediction, read by their kinds, for File → Export."""
        from maskviewer.io.export import ExportItem

        pred, image = self.state.prediction, self.state.image
        if pred is None or image is None:
            return []
        items = []
        for name, value in pred.outputs.items():
            v = np.asarray(value, dtype=np.float32)
            kind = self.state.kinds.kind_of(name, v)
            if kind.is_map:
                continue  # the maps are shown and exported by their own tools
            method, info = ok.export_record(kind, v, self.state.labels)
            items.append(ExportItem("prediction", name, v.reshape(-1), None, method, image=image.path, info=info))
        return items


def install(window) -> ResultBarTool:
    """Add the result bar below the image."""
    return ResultBarTool(window)
