"""The Patches tool's run results, without Qt: per-patch outputs, the combination and the maps.

:class:`PatchResults` holds what the last runs (all patches, occlusion, the current patch
alone) returned for the current settings, and the choices that read them (the output, the
combination method, the map kind and class). The output is read by its kind (see
:mod:`maskviewer.core.output_kinds`): class probabilities, label probabilities or values (a
count is combined as a count: mean, median, sum..., never through a sigmoid). Everything
shown from the results (the final answer, the table, the map over the image) is computed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core import output_kinds as ok
from maskviewer.core.events import Event
from maskviewer.core.model_info import ModelInfo
from maskviewer.core.patches import (
    COMBINE_BY_KIND,
    COMBINE_METHODS,
    COMBINE_TEXT,
    Combined,
    PatchGrid,
    as_values,
    combine_values,
    coverage_map,
    kind_family,
    patch_table,
)

MAPS = {"none": "No map", "score": "Class score per patch", "occlusion": "Occlusion: score drop"}
#: the map choices' names per kind family
MAP_TEXT = {
    "classes": MAPS,
    "labels": {"none": "No map", "score": "Label probability per patch", "occlusion": "Occlusion: probability drop"},
    "values": {"none": "No map", "score": "Value per patch", "occlusion": "Occlusion: change of the value"},
}
#: what one entry of the output is called, per kind family
ENTRY_WORD = {"classes": "Class", "labels": "Label", "values": "Value"}
MAP_MAX_SIDE = 512  # maps are evaluated at most this finely along the image's longer side
MAX_TABLE_CLASSES = 10  # probability columns in the table (the CSV has them all)


def class_label(i: int, labels: list[str] | None) -> str:
    """``"3 (cat)"`` when the class has a label, else ``"3"``."""
    return f"{i} ({labels[i]})" if labels and i < len(labels) else str(i)


def output_choices(info: ModelInfo | None) -> list[tuple[str, str]]:
    """``(name, text)`` of the vector outputs (``(batch, n)``): the ones patches can combine."""
    if info is None:
        return []
    return [(out.name, f"{out.name} {out.shape_text()}") for out in info.outputs if len(out.shape) == 2]


@dataclass
class MapLayer:
    """A per-pixel map over the image, ready to colour.

    Attributes
    ----------
    values : ndarray
        ``(h, w)`` coverage map (NaN where no patch covers the pixel).
    level : ndarray
        ``values`` mapped to 0..1 along the colour map (NaN as the lowest level).
    cmap : str
        The pyqtgraph colour map's name.
    legend : str
        What the colours mean.
    """

    values: np.ndarray
    level: np.ndarray
    cmap: str
    legend: str


@dataclass
class TableData:
    """What the per-patch table shows: ``probs[:, classes]`` and one occlusion-drop column.

    ``family`` says what the numbers are: ``"classes"``, ``"labels"`` (probabilities) or
    ``"values"`` (no top column).
    """

    rects: np.ndarray
    cols: int
    probs: np.ndarray
    classes: list[int]
    names: list[str]
    drop: tuple[str, np.ndarray] | None
    family: str = "classes"


class PatchResults:
    """Outputs of the runs for the current settings, and how they are read.

    Parameters
    ----------
    labels
        A callable returning the class labels (or None), read each time a name is shown.
    kinds
        The app state's :class:`~maskviewer.core.output_kinds.OutputKinds` (how each output
        is read); None: proposed from the values.

    Attributes
    ----------
    outputs : dict or None
        Output name -> ``(N, ...)`` of the last run of all patches.
    probs : ndarray or None
        ``(N, K)`` per-patch numbers read from :attr:`output_name` by its kind: probabilities
        (classes, labels) or values (regression).
    kind : OutputKind or None
        How :attr:`output_name` is read.
    occlusion : OcclusionRun or None
        The last occlusion run.
    combined : Combined or None
        ``probs`` combined by :attr:`method`.
    current_cache : dict
        Patch index -> outputs of that patch run alone (while all patches have not run).

    Events
    ------
    changed()
        The combination, table, bars and map are to be redrawn.
    note_changed(text), choices_changed(choices), map_kind_changed(kind),
    map_class_changed(cls), problem(text)
        Each as its name says; ``problem`` carries a message for the tool's message line.
    family_changed(family)
        The output is read as another kind family: the combinations offered change.
    """

    def __init__(self, labels: Callable[[], list[str] | None], kinds: ok.OutputKinds | None = None) -> None:
        self._labels = labels
        self._kinds = kinds
        self.outputs: dict[str, np.ndarray] | None = None
        self.probs: np.ndarray | None = None
        self.prob_note = ""
        self.kind: ok.OutputKind | None = None
        self.occlusion: Any = None  # OcclusionRun
        self.combined: Combined | None = None
        self.run_seconds = 0.0
        self.run_note = ""
        self.current_cache: dict[int, dict[str, np.ndarray]] = {}
        self.method = COMBINE_METHODS[0]
        self.choices: list[tuple[str, str]] = []
        self.output_name: str | None = None
        self.map_kind = "none"
        self.map_class: int | None = None
        self.class_count = 0
        self.family = "classes"
        self.changed = Event()
        self.note_changed = Event()
        self.choices_changed = Event()
        self.map_kind_changed = Event()
        self.map_class_changed = Event()
        self.family_changed = Event()
        self.problem = Event()

    def label(self, i: int) -> str:
        """Entry ``i`` of the output by its kind: ``"3 (cat)"``, ``"dog"``, ``"count"``."""
        if self.family == "classes" or self.kind is None:
            return class_label(i, self._labels())
        return ok.entry_name(self.kind, i, max(self.class_count, i + 1), self._labels())

    def methods(self) -> list[tuple[str, str]]:
        """``(key, text)`` of the combinations the output's kind allows."""
        return [(m, COMBINE_TEXT[self.family][m]) for m in COMBINE_BY_KIND[self.family]]

    # -- choices ---------------------------------------------------------------------------------

    def set_choices(self, info: ModelInfo | None) -> None:
        """Offer the outputs of a new model; the first one is read."""
        self.choices = output_choices(info)
        self.output_name = self.choices[0][0] if self.choices else None
        self.choices_changed.emit(self.choices)
        self._follow_kind(None)

    def set_output(self, name: str | None) -> None:
        """Read output ``name``."""
        self.output_name = name
        self.read_outputs()

    def set_method(self, method: str) -> None:
        self.method = method
        self.refresh()

    def set_map_kind(self, kind: str) -> None:
        self.map_kind = kind
        self.map_kind_changed.emit(kind)

    def set_map_class(self, cls: int | None) -> None:
        self.map_class = cls
        self.map_class_changed.emit(cls)

    def set_run_note(self, text: str) -> None:
        self.run_note = text
        self.note_changed.emit(text)

    def _kind_of(self, scores: np.ndarray | None) -> ok.OutputKind | None:
        name = self.output_name
        if name is None:
            return None
        first = None if scores is None or not len(scores) else np.asarray(scores[0])
        if self._kinds is not None:
            return self._kinds.kind_of(name, first)
        return ok.propose_from_values(name, first) if first is not None else None

    def _follow_kind(self, scores: np.ndarray | None) -> None:
        """Read the output by its kind now; a new kind family offers its own combinations."""
        self.kind = self._kind_of(scores)
        family = kind_family(self.kind.kind) if self.kind is not None else "classes"
        if family != self.family:
            self.family = family
            if self.method not in COMBINE_BY_KIND[family]:
                self.method = COMBINE_BY_KIND[family][0]
            self.family_changed.emit(family)

    def _read(self, scores: np.ndarray) -> np.ndarray:
        return as_values(scores, self.kind.kind if self.kind is not None else ok.SOFTMAX)[0]

    # -- results ---------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every result (the settings, image or model changed)."""
        self.outputs = self.probs = self.occlusion = self.combined = None
        self.current_cache.clear()

    def accept_run(self, run: Any) -> None:
        """Take a :class:`~maskviewer.inference.patch_runner.PatchRun` of all patches."""
        self.outputs = run.outputs
        self.run_seconds = run.seconds
        self.set_run_note(
            f"{run.grid.count} patches in {run.seconds * 1000:.0f} ms (batches of {run.batch_size})."
        )
        self.read_outputs()

    def accept_occlusion(self, run: Any) -> None:
        """Take an :class:`~maskviewer.inference.patch_runner.OcclusionRun`; show its map."""
        self.occlusion = run
        if self.map_kind != "occlusion":
            self.set_map_kind("occlusion")
        self.set_run_note(
            f"Occlusion: {run.grid.count} greyed images in {run.seconds * 1000:.0f} ms (grey = {run.fill:g})."
        )
        self.refresh()

    def read_outputs(self) -> None:
        """Read the per-patch numbers from the chosen output by its kind, then refresh."""
        self.probs = None
        scores = self.output_of(self.outputs) if self.outputs is not None else None
        self._follow_kind(scores)
        if self.outputs is not None:
            if scores is None or (self.kind is not None and self.kind.is_map):
                self.prob_note = ""
                self.problem.emit(
                    "The model has no vector output (one row of numbers per image), so patches "
                    "cannot be combined."
                )
            else:
                self.probs, self.prob_note = as_values(scores, self.kind.kind)
        self.refresh()

    def refresh(self) -> None:
        """Combine the per-patch numbers, pick the map's entry and announce :attr:`changed`."""
        self.combined = None
        if self.probs is not None:
            self.combined = combine_values(self.probs, self.method, self.family)
            note = self.run_note.split(" Outputs:")[0]
            self.set_run_note(f"{note} Outputs: {self.prob_note}.")
        self._update_classes()
        self.changed.emit()

    def _update_classes(self) -> None:
        # the map follows the combination's class; a new class count starts at the first class
        k = self.num_classes()
        if k != self.class_count or not k:
            self.class_count = k
            self.map_class = self.combined.label if self.combined is not None else (0 if k else None)
        elif self.combined is not None:
            self.map_class = self.combined.label

    # -- reading ---------------------------------------------------------------------------------

    def output_of(self, outputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The chosen output among ``outputs`` (the only one when there is one), or None."""
        name = self.output_name
        if name is None:
            return None
        if name in outputs:
            return outputs[name]
        return next(iter(outputs.values())) if len(outputs) == 1 else None

    def num_classes(self) -> int:
        if self.probs is not None:
            return self.probs.shape[1]
        if self.occlusion is not None:
            scores = self.output_of({k: v[None] for k, v in self.occlusion.base.items()})
            if scores is not None:
                return int(np.asarray(scores).reshape(1, -1).shape[1])
        return 0

    def class_names(self) -> list[str]:
        """The map's entry choices, one per class, label or value."""
        return [self.label(i) for i in range(self.class_count)]

    def occlusion_drop(self) -> np.ndarray | None:
        """``(N, K)``: how much each entry (probability or value) drops with each patch greyed out."""
        run = self.occlusion
        if run is None:
            return None
        base = self.output_of({k: v[None] for k, v in run.base.items()})
        occl = self.output_of(run.occluded)
        if base is None or occl is None or (self.kind is not None and self.kind.is_map):
            return None
        return self._read(base) - self._read(occl)

    def patch_probs(self, index: int) -> np.ndarray | None:
        """The numbers of patch ``index`` from the full run or its own run, or None."""
        if self.probs is not None:
            return self.probs[index]
        if index in self.current_cache:
            scores = self.output_of(self.current_cache[index])
            if scores is not None and not (self.kind is not None and self.kind.is_map):
                return self._read(np.asarray(scores)[None])[0]
        return None

    def prediction_text(self, probs: np.ndarray | None) -> str:
        """The current patch: its three most likely classes or labels, or its values."""
        if probs is None:
            return ""
        if self.family == "values" and self.kind is not None:
            return "This patch: " + ok.summary(ok.read(self.kind, probs, self._labels(), 3), 3)
        order = np.argsort(-probs, kind="stable")[:3]
        return "This patch: " + ", ".join(f"{self.label(i)} {probs[i]:.3f}" for i in order)

    def result_text(self, model_open: bool) -> str:
        c = self.combined
        if c is None:
            return "Not run yet." if model_open else "Open a model to run the patches."
        how = f"{COMBINE_TEXT[self.family][c.method].lower()} of {len(self.probs)} patches"
        if self.family == "classes":
            return f"Final: class {self.label(c.label)} · {c.probability:.4f} ({how})"
        reading = ok.read(shown_kind(self.kind), c.scores, self._labels(), 3)
        return f"Final: {ok.summary(reading, 3)} ({how})"

    def table(self, grid: PatchGrid | None) -> tuple[list[str], list[list]] | None:
        """The full per-patch table (as exported to CSV)."""
        if self.probs is None or grid is None:
            return None
        names = self._labels() if self.family == "classes" else self.class_names()
        return patch_table(grid, self.probs, names, self.occlusion_drop(), self.family)

    def table_data(self, grid: PatchGrid | None) -> TableData | None:
        """The table shown: the most likely classes (at most ``MAX_TABLE_CLASSES``)."""
        if self.probs is None or grid is None or self.combined is None:
            return None
        k = self.probs.shape[1]
        shown = list(range(k))
        if k > MAX_TABLE_CLASSES:  # the classes the combination ranks highest
            order = np.argsort(-self.combined.scores, kind="stable")[:MAX_TABLE_CLASSES]
            shown = sorted(int(i) for i in order)
        names = [self.label(i) for i in range(k)]
        drop = self.occlusion_drop()
        column = None
        if drop is not None:
            cls = self.combined.label if self.map_class is None else self.map_class
            column = (f"occlusion drop ({names[cls]})", drop[:, cls])
        return TableData(grid.rects(), grid.cols, self.probs, shown, names, column, self.family)

    def map_values(self) -> tuple[np.ndarray, str] | None:
        """``(N,)`` per-patch values of the map shown and its kind, or None."""
        kind, cls = self.map_kind, self.map_class
        if kind == "score" and self.probs is not None and cls is not None:
            return self.probs[:, cls], kind
        if kind == "occlusion" and cls is not None:
            drop = self.occlusion_drop()
            if drop is not None:
                return drop[:, cls], kind
        return None

    def map_layer(self, grid: PatchGrid | None) -> tuple[MapLayer | None, str]:
        """The map over the image (None when there is none) and the legend to show."""
        values = self.map_values() if grid is not None else None
        if values is None:
            return None, "" if self.map_kind == "none" else "Run the patches (or occlusion) first."
        vals, kind = values
        m = coverage_map(grid, vals, MAP_MAX_SIDE)
        lo, hi, cmap, legend = map_legend(self.family, kind, self.label(self.map_class), m)
        level = np.clip((np.nan_to_num(m, nan=lo) - lo) / (hi - lo), 0, 1)
        return MapLayer(m, level, cmap, legend), legend


def export_fields(res: PatchResults) -> dict:
    """What an export's manifest says of the run, in the output kind's words."""
    if res.probs is None or res.kind is None:
        return {}
    c = res.combined
    fields: dict[str, Any] = {"output_kind": res.kind.kind, "output_kind_text": res.kind.label,
                              "read_as": res.prob_note}
    if res.family == "values":
        fields["patch_values_read"] = res.probs.tolist()
        if c is not None:
            fields["combined"] = {"method": c.method, "values": c.scores.tolist(),
                                  "names": res.class_names()}
        return fields
    fields["patch_probabilities"] = res.probs.tolist()
    fields["probability_note"] = res.prob_note
    if c is not None:
        key = "class" if res.family == "classes" else "label"
        fields["combined"] = {"method": c.method, "scores": c.scores.tolist(), key: c.label,
                              "probability": c.probability}
    return fields


def shown_kind(kind: ok.OutputKind) -> ok.OutputKind:
    """The kind of numbers already shown (probabilities): logits kinds read without a second
    softmax or sigmoid."""
    shown = {ok.LOGITS: ok.SOFTMAX, ok.MULTILABEL_LOGITS: ok.MULTILABEL}.get(kind.kind, kind.kind)
    return ok.OutputKind(shown, kind.name, kind.reason, kind.chosen)


def map_legend(family: str, kind: str, name: str, m: np.ndarray) -> tuple[float, float, str, str]:
    """``(lo, hi, colour map, legend)`` of a patch map of ``family`` numbers for entry ``name``."""
    finite = m[np.isfinite(m)]
    if kind == "score":
        if family == "values":
            lo = float(finite.min()) if finite.size else 0.0
            hi = float(finite.max()) if finite.size else 1.0
            hi = hi if hi > lo else lo + 1e-6
            return lo, hi, "viridis", (f"{name} per pixel, mean over the patches covering it: "
                                       f"{lo:.4g} (purple) … {hi:.4g} (yellow).")
        what = f"p(class {name})" if family == "classes" else f"p({name})"
        return 0.0, 1.0, "viridis", f"{what} per pixel, mean over the patches covering it: 0 (purple) … 1 (yellow)."
    top = float(np.abs(finite).max()) if finite.size else 1.0
    hi = max(top, 1e-6)
    what = {"classes": f"p(class {name})", "labels": f"p({name})", "values": name}[family]
    return -hi, hi, "CET-D1", (
        f"Drop in {what} when the patch is greyed out: −{hi:.3g} (blue, the patch lowers it) … "
        f"+{hi:.3g} (red, it depends on the patch)."
    )
