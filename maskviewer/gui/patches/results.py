"""The Patches tool's run results, without Qt: per-patch outputs, the combination and the maps.

:class:`PatchResults` holds what the last runs (all patches, occlusion, the current patch
alone) returned for the current settings, and the choices that read them (the output taken as
class scores, the combination method, the map kind and class). Everything shown from the
results (the final class, the table, the map over the image) is computed here from numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.model_info import ModelInfo
from maskviewer.core.patches import (
    COMBINE_LABELS,
    COMBINE_METHODS,
    Combined,
    PatchGrid,
    as_probabilities,
    combine,
    coverage_map,
    patch_table,
)

MAPS = {"none": "No map", "score": "Class score per patch", "occlusion": "Occlusion: score drop"}
MAP_MAX_SIDE = 512  # maps are evaluated at most this finely along the image's longer side
MAX_TABLE_CLASSES = 10  # probability columns in the table (the CSV has them all)


def class_label(i: int, labels: list[str] | None) -> str:
    """``"3 (cat)"`` when the class has a label, else ``"3"``."""
    return f"{i} ({labels[i]})" if labels and i < len(labels) else str(i)


def output_choices(info: ModelInfo | None) -> list[tuple[str, str]]:
    """``(name, text)`` of the outputs that can be read as class scores: ``(batch, classes)``."""
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
    """What the per-patch table shows: ``probs[:, classes]`` and one occlusion-drop column."""

    rects: np.ndarray
    cols: int
    probs: np.ndarray
    classes: list[int]
    names: list[str]
    drop: tuple[str, np.ndarray] | None


class PatchResults:
    """Outputs of the runs for the current settings, and how they are read.

    Parameters
    ----------
    labels
        A callable returning the class labels (or None), read each time a name is shown.

    Attributes
    ----------
    outputs : dict or None
        Output name -> ``(N, ...)`` of the last run of all patches.
    probs : ndarray or None
        ``(N, K)`` per-patch probabilities read from :attr:`output_name`.
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
    """

    def __init__(self, labels: Callable[[], list[str] | None]) -> None:
        self._labels = labels
        self.outputs: dict[str, np.ndarray] | None = None
        self.probs: np.ndarray | None = None
        self.prob_note = ""
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
        self.changed = Event()
        self.note_changed = Event()
        self.choices_changed = Event()
        self.map_kind_changed = Event()
        self.map_class_changed = Event()
        self.problem = Event()

    def label(self, i: int) -> str:
        return class_label(i, self._labels())

    # -- choices ---------------------------------------------------------------------------------

    def set_choices(self, info: ModelInfo | None) -> None:
        """Offer the outputs of a new model; the first one is read."""
        self.choices = output_choices(info)
        self.output_name = self.choices[0][0] if self.choices else None
        self.choices_changed.emit(self.choices)

    def set_output(self, name: str | None) -> None:
        """Read ``name`` as the class scores."""
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
        """Read the per-patch probabilities from the chosen output, then refresh."""
        self.probs = None
        if self.outputs is not None:
            scores = self.output_of(self.outputs)
            if scores is None:
                self.prob_note = ""
                self.problem.emit(
                    "The model has no class-score output (one vector per image), so patches "
                    "cannot be combined into a class."
                )
            else:
                self.probs, self.prob_note = as_probabilities(scores)
        self.refresh()

    def refresh(self) -> None:
        """Combine the probabilities, pick the map's classes and announce :attr:`changed`."""
        self.combined = None
        if self.probs is not None:
            self.combined = combine(self.probs, self.method)
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
                return as_probabilities(scores)[0].shape[1]
        return 0

    def class_names(self) -> list[str]:
        """The map's class choices, one per class."""
        return [self.label(i) for i in range(self.class_count)]

    def occlusion_drop(self) -> np.ndarray | None:
        """``(N, K)``: how much each class's probability drops with each patch greyed out."""
        run = self.occlusion
        if run is None:
            return None
        base = self.output_of({k: v[None] for k, v in run.base.items()})
        occl = self.output_of(run.occluded)
        if base is None or occl is None:
            return None
        return as_probabilities(base)[0] - as_probabilities(occl)[0]

    def patch_probs(self, index: int) -> np.ndarray | None:
        """The probabilities of patch ``index`` from the full run or its own run, or None."""
        if self.probs is not None:
            return self.probs[index]
        if index in self.current_cache:
            scores = self.output_of(self.current_cache[index])
            if scores is not None:
                return as_probabilities(scores[None])[0][0]
        return None

    def prediction_text(self, probs: np.ndarray | None) -> str:
        """The current patch's three most likely classes."""
        if probs is None:
            return ""
        order = np.argsort(-probs, kind="stable")[:3]
        return "This patch: " + ", ".join(f"{self.label(i)} {probs[i]:.3f}" for i in order)

    def result_text(self, model_open: bool) -> str:
        c = self.combined
        if c is None:
            return "Not run yet." if model_open else "Open a model to run the patches."
        return (
            f"Final: class {self.label(c.label)} · {c.probability:.4f} "
            f"({COMBINE_LABELS[c.method].lower()} of {len(self.probs)} patches)"
        )

    def table(self, grid: PatchGrid | None) -> tuple[list[str], list[list]] | None:
        """The full per-patch table (as exported to CSV)."""
        if self.probs is None or grid is None:
            return None
        return patch_table(grid, self.probs, self._labels(), self.occlusion_drop())

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
        return TableData(grid.rects(), grid.cols, self.probs, shown, names, column)

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
        cls = self.label(self.map_class)
        if kind == "score":
            lo, hi, cmap = 0.0, 1.0, "viridis"
            legend = f"p(class {cls}) per pixel, mean over the patches covering it: 0 (purple) … 1 (yellow)."
        else:
            finite = m[np.isfinite(m)]
            top = float(np.abs(finite).max()) if finite.size else 1.0
            lo, hi, cmap = -max(top, 1e-6), max(top, 1e-6), "CET-D1"
            legend = (
                f"Drop in p(class {cls}) when the patch is greyed out: −{hi:.3g} (blue, the patch "
                f"hurts the class) … +{hi:.3g} (red, the class depends on it)."
            )
        level = np.clip((np.nan_to_num(m, nan=lo) - lo) / (hi - lo), 0, 1)
        return MapLayer(m, level, cmap, legend), legend
