"""The Compare tool's state, Qt-free: which methods to run, the rows they gave, their order.

Each row is one method's map of the current image with its deletion AUC (lower is better),
insertion AUC (higher is better) and its sanity check (the Spearman correlation with the
original map once the model is randomised; the method passes when it falls below 0.5). The
rows sort by any of these; the selected row is drawn large over the image. Thumbnails and the
large map are made here with numpy, so the widgets only copy pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.faithfulness import BASELINES
from maskviewer.core.heatmap import (
    colormap_lut,
    composite,
    normalize,
    to_indices,
    upsample,
    upsample_to_frame,
)
from maskviewer.gui.compare.jobs import CompareOutcome, CompareRequest, MethodResult
from maskviewer.gui.layers.drawing import Heatmap

EMPTY_TEXT = (
    "Compare attribution methods on the current image: tick two or more methods and press Run. "
    "Each gets its deletion AUC (lower is better), insertion AUC (higher is better) and a sanity "
    "check (does its map change when the model's weights are randomised?). Open a model and an "
    "image first; CAM methods use the layer, output and class chosen in the Layers tool."
)
#: the columns, as the table shows them; (key, header)
COLUMNS = (
    ("method", "Method (map)"), ("deletion", "Deletion\nAUC ↓"), ("insertion", "Insertion\nAUC ↑"),
    ("sanity", "Sanity:\nρ random"),
)
#: the sort order each column starts with: best first
BEST_FIRST_DESCENDING = {"method": False, "deletion": False, "insertion": True, "sanity": False}
THUMB_SIDE = 56
FALLBACK_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


@dataclass
class RowView:
    """One table row, ready to show."""

    method: str
    label: str
    thumbnail: np.ndarray | None  # (h, w, 3) uint8
    deletion: float
    insertion: float
    sanity: float  # Spearman after the full randomisation (NaN: not run or the map went flat)
    sanity_text: str
    passed: bool | None
    error: str


def _value(x: float | None) -> float:
    return float("nan") if x is None else float(x)


class CompareModel:
    """The Compare tool's state and actions.

    Events
    ------
    choices_changed()
        The methods offered or ticked, or the settings, changed.
    rows_changed()
        New results, or a new order.
    selection_changed(method)
        The row drawn large (None: none).
    message_changed(text)
        The line under the controls (the empty state, an error, what was compared).
    """

    def __init__(self) -> None:
        self.methods: dict[str, str] = dict(FALLBACK_METHODS)
        self.chosen: list[str] = ["gradcam", "gradcam++"]
        self.steps = 16
        self.baselines = {"deletion": "black", "insertion": "blur"}
        self.sanity = True
        self.sanity_steps = 6
        self.outcome: CompareOutcome | None = None
        self.sort_key = "deletion"
        self.descending = False
        self.selected: str | None = None
        self.colormap = "turbo"
        self.opacity = 60
        self.message = EMPTY_TEXT
        self.choices_changed = Event()
        self.rows_changed = Event()
        self.selection_changed = Event()
        self.message_changed = Event()

    # -- choices ---------------------------------------------------------------------------------

    def set_methods(self, labels: dict[str, str], default: list[str] | None = None) -> None:
        """The methods offered (name -> label); the ticked ones that remain are kept."""
        self.methods = dict(labels)
        kept = [m for m in self.chosen if m in self.methods]
        self.chosen = kept or [m for m in (default or list(self.methods)[:2]) if m in self.methods]
        self.choices_changed.emit()

    def set_chosen(self, method: str, on: bool) -> None:
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; one of {list(self.methods)}")
        if on and method not in self.chosen:
            self.chosen = [m for m in self.methods if m in self.chosen or m == method]
        elif not on and method in self.chosen:
            self.chosen = [m for m in self.chosen if m != method]
        else:
            return
        self.choices_changed.emit()

    def set_steps(self, steps: int) -> None:
        self.steps = min(max(int(steps), 2), 256)
        self.choices_changed.emit()

    def set_baseline(self, mode: str, baseline: str) -> None:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; one of {BASELINES}")
        self.baselines[mode] = baseline
        self.choices_changed.emit()

    def set_sanity(self, on: bool, steps: int | None = None) -> None:
        self.sanity = bool(on)
        if steps is not None:
            self.sanity_steps = min(max(int(steps), 2), 500)
        self.choices_changed.emit()

    def make_request(
        self, layer: str | None, output: str | None, class_index: int | None, input_name: str | None,
    ) -> CompareRequest | str:
        """The request for the ticked methods, or why there is none (a message)."""
        if len(self.chosen) == 0:
            return "Tick at least one method to compare."
        return CompareRequest(
            methods=list(self.chosen), layer=layer, output=output, class_index=class_index,
            input_name=input_name, steps=self.steps, baselines=dict(self.baselines), sanity=self.sanity,
            sanity_steps=self.sanity_steps,
        )

    # -- results ---------------------------------------------------------------------------------

    def set_outcome(self, outcome: CompareOutcome) -> None:
        """Keep a job's result; the first row (in the current order) is selected."""
        self.outcome = outcome
        ok = [r for r in outcome.rows if not r.error]
        where = f" on layer {outcome.request.layer}" if outcome.request.layer else ""
        self.set_message(
            outcome.error or (f"{len(ok)} of {len(outcome.rows)} methods compared{where}; click a row to show "
                              "its map large." if outcome.rows else EMPTY_TEXT)
        )
        self.rows_changed.emit()
        views = self.rows()
        self.select(next((v.method for v in views if not v.error), None))

    def clear(self, message: str = EMPTY_TEXT) -> None:
        self.outcome = None
        self.rows_changed.emit()
        self.select(None)
        self.set_message(message)

    def set_message(self, text: str) -> None:
        self.message = text
        self.message_changed.emit(text)

    def result(self, method: str) -> MethodResult | None:
        if self.outcome is None:
            return None
        return next((r for r in self.outcome.rows if r.method == method), None)

    # -- order and selection -------------------------------------------------------------------

    def sort_by(self, key: str, descending: bool | None = None) -> None:
        """Order the rows by ``key``; clicking the same column again turns the order round."""
        if key not in BEST_FIRST_DESCENDING:
            raise ValueError(f"cannot sort by {key!r}; one of {list(BEST_FIRST_DESCENDING)}")
        if descending is None:
            descending = (not self.descending) if key == self.sort_key else BEST_FIRST_DESCENDING[key]
        self.sort_key, self.descending = key, bool(descending)
        self.rows_changed.emit()

    def select(self, method: str | None) -> None:
        if method is not None and self.result(method) is None:
            raise ValueError(f"no result for {method!r}")
        self.selected = method
        self.selection_changed.emit(method)

    def rows(self) -> list[RowView]:
        """The rows in the current order; rows without a value (errors, NaN) always last."""
        if self.outcome is None:
            return []
        views = [self._view(r) for r in self.outcome.rows]

        def key(v: RowView) -> tuple:
            value = v.label.lower() if self.sort_key == "method" else getattr(v, self.sort_key)
            missing = bool(v.error) or (isinstance(value, float) and not np.isfinite(value))
            return (missing, 0 if missing else value)

        present = sorted((v for v in views if not key(v)[0]), key=key, reverse=self.descending)
        return present + [v for v in views if key(v)[0]]

    def _view(self, r: MethodResult) -> RowView:
        s = r.sanity
        if r.error:
            text, rho, passed = "—", float("nan"), None
        elif s is None:
            text, rho, passed = "not run", float("nan"), None
        else:
            rho = _value(s.final_spearman)
            shown = f"ρ {rho:.2f}" if np.isfinite(rho) else "ρ n/a (flat)"
            text, passed = f"{shown}\n{'passes' if s.passed else 'FAILS'}", bool(s.passed)
        return RowView(
            method=r.method, label=r.label, thumbnail=self.thumbnail(r), error=r.error,
            deletion=_value(r.deletion.auc) if r.deletion is not None else float("nan"),
            insertion=_value(r.insertion.auc) if r.insertion is not None else float("nan"),
            sanity=rho, sanity_text=text, passed=passed,
        )

    # -- pictures --------------------------------------------------------------------------------

    def _input_rgb(self) -> np.ndarray | None:
        if self.outcome is None or self.outcome.image is None:
            return None
        x = np.asarray(self.outcome.image, np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        x = x[:, :, :3] if x.shape[2] >= 3 else np.repeat(x[:, :, :1], 3, axis=2)
        unit, _ = normalize(x)
        return (unit * 255.0 + 0.5).astype(np.uint8)

    def thumbnail(self, r: MethodResult) -> np.ndarray | None:
        """The map over the model's input, at most :data:`THUMB_SIDE` pixels a side, RGB."""
        image = self._input_rgb()
        if r.map is None or image is None:
            return None
        h, w = image.shape[:2]
        unit, _ = normalize(upsample(r.map, h, w) if r.map.shape != (h, w) else r.map)
        rgba = np.concatenate([colormap_lut(self.colormap)[to_indices(unit)],
                               np.full((h, w, 1), 255, np.uint8)], axis=2)
        picture = composite(image, rgba, self.opacity / 100.0)
        scale = THUMB_SIDE / max(h, w)
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
        rows = np.minimum((np.arange(th) + 0.5) * h / th, h - 1).astype(int)
        cols = np.minimum((np.arange(tw) + 0.5) * w / tw, w - 1).astype(int)
        return np.ascontiguousarray(picture[rows][:, cols])

    def large(self) -> Heatmap | None:
        """The selected map at display size over the input's frame, or None."""
        r = self.result(self.selected) if self.selected else None
        if r is None or r.map is None or self.outcome is None or self.outcome.frame is None:
            return None
        unit, (lo, hi) = normalize(r.map)
        indices = to_indices(upsample_to_frame(unit, self.outcome.frame))
        return Heatmap(indices, self.outcome.frame, lo, hi, r.label)
