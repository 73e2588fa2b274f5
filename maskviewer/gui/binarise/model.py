"""The Binarise tool's state and actions, without Qt.

:class:`BinariseModel` holds the maps that can be binarised (the image-shaped outputs and any
map another tool offers), the chosen one, the threshold, the method that set it, the polarity,
the reference mask and its scores, the Dice-vs-threshold curve and the side-by-side selection.
It says what changed through :class:`~maskviewer.core.events.Event` attributes; the panel,
the canvas overlay and the side-by-side dock redraw from its state.

Work that takes time (sorting a map, the slower methods, the scorer) is handed to ``submit``
as a job function; its result comes back through :meth:`BinariseModel.job_finished`. The tool
passes a :class:`~maskviewer.gui.jobs.JobClient`'s ``submit``; a test passes a list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.events import Event
from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import ReferenceScorer
from maskviewer.core.threshold import METHOD_LABELS, ThresholdCache, binarise
from maskviewer.gui.binarise.reference import ReferenceScoring, read_reference
from maskviewer.gui.binarise.side_by_side import SideBySide, plan_side_by_side
from maskviewer.gui.binarise.sources import (
    NO_SOURCE_NOTE,
    PREPARING_NOTE,
    Source,
    cache_job,
    describe,
    map_source,
    pick_source,
    prediction_sources,
    slider_range,
)

KIND_CACHE = "binarise-cache"
KIND_SCORE = "binarise-score"
KIND_METHOD = "binarise-method"
KINDS = (KIND_CACHE, KIND_METHOD, KIND_SCORE)
DEFAULT_THRESHOLD = 0.5
VIEWS = ("Binary over input", "Binary", "Continuous", "Continuous over input", "Hidden")
ROWS = ("dice", "iou", "precision", "recall", "accuracy", "tp", "fp", "fn", "tn")
FAST_METHODS = ("otsu", "yen", "isodata")  # from the cached histogram: microseconds

Submit = Callable[[str, Callable[[Any], Any]], Any]


def _method_job(name: str | None, cache: ThresholdCache, method: str) -> Callable[[Any], tuple]:
    """A worker job: ``(name, method, threshold)`` of a slow method on the map ``name``."""
    return lambda ctx: (name, method, cache.threshold(method, check=ctx.check))


def _score_job(name: str | None, values: np.ndarray, reference: np.ndarray) -> Callable[[Any], tuple]:
    """A worker job: ``(name, scorer)`` scoring the map ``name`` against ``reference``."""
    return lambda _ctx: (name, ReferenceScorer(values, reference))


class BinariseModel:
    """What the Binarise tool shows and how it changes.

    Parameters
    ----------
    submit
        ``submit(kind, fn)`` runs ``fn(ctx)`` later and hands its result to
        :meth:`job_finished` (its error to :meth:`job_failed`).
    cancel
        ``cancel(kind)`` drops the pending and running jobs of ``kind``.
    confirm
        ``confirm(title, text) -> bool`` asks the user (whether to resize a reference).

    The events (:class:`~maskviewer.core.events.Event`) are listed in ``__init__``.
    """

    def __init__(
        self,
        submit: Submit | None = None,
        cancel: Callable[[str], Any] | None = None,
        confirm: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.submit: Submit = submit or (lambda kind, fn: None)
        self.cancel: Callable[[str], Any] = cancel or (lambda kind: None)
        self.confirm: Callable[[str, str], bool] = confirm or (lambda title, text: False)
        self.threshold = DEFAULT_THRESHOLD
        self.method_used = ""
        self.invert = False
        self.sources: dict[str, Source] = {}
        self.extra_sources: dict[str, Source] = {}  # offered by other tools, kept across predictions
        self.caches: dict[str, ThresholdCache] = {}
        self.current: str | None = None
        self.prediction: Any = None  # the last prediction (inputs and outputs), for side by side
        self.scoring = ReferenceScoring()  # the reference, its scores and Dice curve
        self.above: np.ndarray | None = None  # display bins wholly above the threshold
        # what the panel's labels say (and self.scoring.note)
        self.info = NO_SOURCE_NOTE
        self.warning = ""
        self.method_note = ""
        # how the canvas shows the map
        self.view = VIEWS[0]
        self.opacity = 60
        self.show_errors = False
        # side by side
        self.all_outputs = False
        self.gallery_names: list[str] = []  # maps shown as binary tiles (they follow the threshold)
        self.difference: np.ndarray | None = None  # |input - reconstruction| when shown

        self.sources_changed = Event()  # (pick): new list; ``pick`` is about to be selected
        self.refreshed = Event()  # (): anything may have changed (source, reference, prediction)
        self.threshold_changed = Event()  # (skip): threshold, polarity or scores; ``skip``: who set it
        self.curve_changed = Event()  # (): the Dice curve was recomputed (or dropped)
        self.notes_changed = Event()  # (): info, warning, method_note or scoring.note
        self.display_changed = Event()  # (): view, opacity or TP/FP/FN
        self.gallery_changed = Event()  # (): rebuild the side-by-side dock
        self.error = Event()  # (title, message): something the user asked for failed

    # -- sources --------------------------------------------------------------------------------

    @property
    def cache(self) -> ThresholdCache | None:
        """The prepared map of the current source (None while it is prepared)."""
        return self.caches.get(self.current) if self.current else None

    @property
    def source(self) -> Source | None:
        return self.sources.get(self.current) if self.current else None

    def reset(self) -> None:
        """A new model or image: the old maps no longer apply (the reference stays)."""
        self.cancel(KIND_CACHE)
        self.sources, self.extra_sources, self.caches, self.current = {}, {}, {}, None
        self.prediction = None  # the side-by-side view must not show the old image's input
        self.scoring.drop()
        self._sync_sources()
        self._refresh_all()

    def set_prediction(self, prediction: Any, frame: Frame | None) -> None:
        """Offer the image-shaped outputs of ``prediction``, drawn over ``frame``."""
        self.prediction = prediction
        if prediction is None:
            return
        self.sources = prediction_sources(prediction.outputs, frame, self.extra_sources)
        self._build_caches({k: s for k, s in self.sources.items() if s.values is not None})

    def add_source(self, name: str, array: np.ndarray, frame: Frame | None = None) -> None:
        """Offer another map for binarising (an activation map, say).

        ``array`` is ``(H, W)`` or ``(H, W, 1)``; ``frame`` says where it lies on the image.
        """
        src = map_source(name, array, frame)
        self.extra_sources[name] = src
        self.sources[name] = src
        if src.values is not None:
            self._build_caches({name: src}, keep=True)
        else:
            self._sync_sources()

    def _build_caches(self, sources: dict[str, Source], keep: bool = False) -> None:
        """Sort and bin the maps on the worker (once per prediction, not per threshold)."""
        maps = {name: s.values for name, s in sources.items()}
        previous = dict(self.caches) if keep else {}
        if not maps:  # nothing to prepare: say why at once
            self.caches = previous
            self._sync_sources()
            if self.current is None:
                self._refresh_all()
            return
        self._set_notes(info=PREPARING_NOTE)
        self.submit(KIND_CACHE, cache_job(maps, previous))

    def _sync_sources(self) -> None:
        """Tell the views the list changed and select the current source (or the first usable)."""
        pick = pick_source(self.sources, self.current)
        self.sources_changed.emit(pick)
        if pick is not None:
            self.select_source(pick)

    def select_source(self, name: str | None) -> None:
        """Show ``name`` (a key of :attr:`sources`); its scores are recomputed."""
        if name is None:
            return
        self.current = name
        src, cache = self.sources.get(name), self.caches.get(name)
        self.scoring.drop()
        self.scoring.fitted = None
        if src is not None and src.values is not None and cache is not None and self.scoring.mask is not None:
            self._apply_reference(ask=False)
        self._refresh_all()

    # -- threshold ------------------------------------------------------------------------------

    def value_range(self) -> tuple[float, float] | None:
        """The slider's range: the finite values' range, widened when the map is constant."""
        return None if self.cache is None else slider_range(self.cache)

    def set_threshold(self, value: float, source: str = "") -> None:
        """Set the threshold; ``source`` (``"slider"``, ``"spin"``, ``"line"``) marks a hand-set one."""
        value = float(value)
        if not np.isfinite(value):
            return
        self.threshold = value
        if source in ("slider", "spin", "line"):
            self.method_used = ""
        self._threshold_changed(rescore=False, skip=source)

    def set_invert(self, invert: bool) -> None:
        """Foreground is ``value <= threshold`` when ``invert``, else ``value > threshold``."""
        self.invert = bool(invert)
        self._threshold_changed(rescore=True)

    def _update_threshold(self, rescore: bool) -> None:
        m = self.method_used
        self.method_note = f"{METHOD_LABELS[m]}: {self.threshold:.6g}" if m else ""
        cache = self.cache
        if cache is not None:
            self.above = cache.set_threshold(self.threshold)
            for name in self.gallery_names:
                other = self.caches.get(name)
                if other is not None and other is not cache:
                    other.set_threshold(self.threshold)
        self.scoring.update(self.threshold, self.invert, rescore)

    def _threshold_changed(self, rescore: bool = False, skip: str = "") -> None:
        self._update_threshold(rescore)
        self.threshold_changed.emit(skip)
        if rescore:
            self.curve_changed.emit()

    def apply_method(self, method: str) -> None:
        """Set the threshold with an automatic method (Li, Triangle and Mean on the worker)."""
        cache = self.cache
        if cache is None:
            return
        if cache.counts.n_finite == 0:
            self._set_notes(warning="The map has no finite values: there is nothing to threshold.")
            return
        if method in FAST_METHODS:
            self._method_done(method, cache.threshold(method))
            return
        self._set_notes(method_note=f"Computing {METHOD_LABELS[method]}…")
        self.submit(KIND_METHOD, _method_job(self.current, cache, method))

    def _method_done(self, method: str, value: float) -> None:
        self.set_threshold(value)
        self.method_used = method
        self._set_notes(method_note=f"{METHOD_LABELS[method]}: {value:.6g}")

    def use_best(self) -> None:
        """Move to the threshold of the best Dice (with a reference)."""
        curve = self.scoring.curve
        if curve is not None:
            self.set_threshold(curve.best_threshold)

    def binary_mask(self) -> np.ndarray | None:
        """The exact binary mask of the current source at the current threshold."""
        cache = self.cache
        return None if cache is None else binarise(cache.values, self.threshold, self.invert)

    # -- reference ------------------------------------------------------------------------------

    def load_reference(self, path: str | Path) -> bool:
        """Load a reference mask file (PNG/BMP/TIFF: non-zero is foreground; NPY)."""
        try:
            mask = read_reference(path)
        except (MaskviewerError, ValueError) as exc:
            self.error.emit("Cannot use this reference", f"{Path(path).name}: {exc}")
            return False
        return self.set_reference(mask, Path(path).name)

    def set_reference(self, mask: np.ndarray, name: str = "reference", image_mask: bool = False) -> bool:
        """Score against ``mask`` (bool). A mask of another size than the map is resized
        (nearest neighbour) if the user agrees; an image-sized painted mask (``image_mask``)
        is sampled through the input's frame."""
        self.scoring.set(mask, name, image_mask)
        ok = self._apply_reference(ask=True)
        self._refresh_all()
        return ok

    def clear_reference(self) -> None:
        self.scoring.clear(self.cache)
        self._refresh_all()

    def _apply_reference(self, ask: bool) -> bool:
        """Fit the reference to the current map and score it on the worker."""
        cache, src = self.cache, self.source
        if cache is None or self.scoring.mask is None:
            return False
        frame = None if src is None else src.frame
        fitted = self.scoring.fit(cache, frame, self.current, self.confirm, ask)
        self.notes_changed.emit()
        if fitted is None:
            return False
        self.submit(KIND_SCORE, _score_job(self.current, cache.values, fitted))
        return True

    # -- jobs -----------------------------------------------------------------------------------

    def job_finished(self, kind: str, result: Any) -> None:
        """The latest job of ``kind`` finished with ``result``."""
        if kind == KIND_CACHE:
            self.caches = result
            self._sync_sources()
            self._threshold_changed(rescore=True)
            self.gallery_changed.emit()
        elif kind == KIND_SCORE:
            name, scorer = result
            if name == self.current:
                self.scoring.scorer = scorer
                self._threshold_changed(rescore=True)
        elif kind == KIND_METHOD:
            name, method, value = result
            if name == self.current:
                self._method_done(method, value)

    def job_failed(self, kind: str, message: str) -> None:
        """The latest job of ``kind`` failed: say so under the source."""
        self._set_notes(warning=message)

    # -- notes and display ----------------------------------------------------------------------

    def _set_notes(self, **notes: str) -> None:
        for key, text in notes.items():
            setattr(self, key, text)
        self.notes_changed.emit()

    def _refresh_all(self) -> None:
        self.info, self.warning = describe(self.source, self.cache)
        self.scoring.refresh_note()
        self._update_threshold(rescore=True)
        self.refreshed.emit()

    def set_display(self, view: str | None = None, opacity: int | None = None, show_errors: bool | None = None) -> None:
        """How the canvas shows the map: one of :data:`VIEWS`, opacity 0..100, TP/FP/FN on top."""
        if view is not None:
            self.view = view
        if opacity is not None:
            self.opacity = int(opacity)
        if show_errors is not None:
            self.show_errors = bool(show_errors)
        self.display_changed.emit()

    def errors_shown(self) -> bool:
        """Whether the TP/FP/FN layers are drawn (asked for, scored, and laid over the codes)."""
        cache = self.cache
        return self.show_errors and self.scoring.scorer is not None and cache is not None and bool(cache._layers)

    # -- side by side ---------------------------------------------------------------------------

    def set_all_outputs(self, on: bool) -> None:
        """Side by side: every prepared output, or only the current one."""
        self.all_outputs = bool(on)
        self.gallery_changed.emit()

    def side_by_side(self) -> SideBySide:
        """What the side-by-side dock shows now; the binary tiles' maps follow the threshold."""
        plan = plan_side_by_side(self.prediction, self.cache is not None, self.current,
                                 list(self.caches) if self.all_outputs else [self.current])
        self.gallery_names = plan.names
        for name in plan.names:
            self.caches[name].set_threshold(self.threshold)
        if plan.shown:
            self.difference = plan.difference
        return plan
