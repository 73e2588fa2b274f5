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
from maskviewer.core.metrics import (
    DiceCurve,
    ReferenceScorer,
    Scores,
    reference_to_mask,
    resize_nearest,
)
from maskviewer.core.threshold import METHOD_LABELS, ThresholdCache, binarise
from maskviewer.gui.binarise.reference import (
    NO_REFERENCE_NOTE,
    counts_note,
    resize_question,
    sample_image_mask,
    unused_note,
)
from maskviewer.gui.binarise.side_by_side import SideBySide, plan_side_by_side
from maskviewer.gui.binarise.sources import (
    NO_SOURCE_NOTE,
    PREPARING_NOTE,
    Source,
    describe,
    image_sources,
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

    Events
    ------
    sources_changed(pick)
        The list of sources changed; ``pick`` is the one about to be selected (or None).
    refreshed()
        Everything may have changed (another source, reference or prediction).
    threshold_changed(skip)
        The threshold, polarity or scores changed; ``skip`` names the widget that set it.
    curve_changed()
        The Dice curve was recomputed (or dropped).
    notes_changed()
        :attr:`info`, :attr:`warning`, :attr:`reference_note` or :attr:`method_note` changed.
    display_changed()
        The view, opacity or TP/FP/FN setting changed.
    gallery_changed()
        The side-by-side dock should be rebuilt.
    error(title, message)
        Something the user asked for failed.
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
        self.reference: np.ndarray | None = None  # as given (any size)
        self.reference_name = ""
        self.ref_for_map: np.ndarray | None = None  # on the current map's grid
        self._ref_resize_ok = False
        self._ref_is_image_mask = False
        self.scorer: ReferenceScorer | None = None
        self.scores: Scores | None = None
        self.curve: DiceCurve | None = None
        self.above: np.ndarray | None = None  # display bins wholly above the threshold
        self.inside: np.ndarray | None = None  # display-code layers inside/outside the reference
        self.outside: np.ndarray | None = None
        # what the panel's labels say
        self.info = NO_SOURCE_NOTE
        self.warning = ""
        self.reference_note = "No reference."
        self.method_note = ""
        # how the canvas shows the map
        self.view = VIEWS[0]
        self.opacity = 60
        self.show_errors = False
        # side by side
        self.all_outputs = False
        self.gallery_names: list[str] = []  # maps shown as binary tiles (they follow the threshold)
        self.difference: np.ndarray | None = None  # |input - reconstruction| when shown

        self.sources_changed = Event()
        self.refreshed = Event()
        self.threshold_changed = Event()
        self.curve_changed = Event()
        self.notes_changed = Event()
        self.display_changed = Event()
        self.gallery_changed = Event()
        self.error = Event()

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
        self.scorer = self.scores = self.curve = None
        self._sync_sources()
        self._refresh_all()

    def set_prediction(self, prediction: Any, frame: Frame | None) -> None:
        """Offer the image-shaped outputs of ``prediction``, drawn over ``frame``."""
        self.prediction = prediction
        if prediction is None:
            return
        sources = {s.name: s for s in image_sources(prediction.outputs)}
        for s in sources.values():
            s.frame = frame
        sources.update(self.extra_sources)
        self.sources = sources
        self._build_caches({k: s for k, s in sources.items() if s.values is not None})

    def add_source(self, name: str, array: np.ndarray, frame: Frame | None = None) -> None:
        """Offer another map for binarising (an activation map, say).

        ``array`` is ``(H, W)`` or ``(H, W, 1)``; ``frame`` says where it lies on the image.
        """
        a = np.asarray(array)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim != 2:
            src = Source(name, None, f"“{name}” has shape {tuple(np.shape(array))}: binarising needs a 2-D map.")
        else:
            src = Source(name, a, frame=frame)
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

        def job(ctx) -> dict:
            out = dict(previous)
            for i, (name, values) in enumerate(maps.items()):
                ctx.progress(i, len(maps))
                out[name] = ThresholdCache(values, check=ctx.check)
            return out

        self._set_notes(info=PREPARING_NOTE)
        self.submit(KIND_CACHE, job)

    def _sync_sources(self) -> None:
        """Tell the views the list changed and select the current source (or the first usable)."""
        names = list(self.sources)
        pick = None
        if names:
            usable = [n for n in names if self.sources[n].values is not None]
            pick = self.current if self.current in names else (usable[0] if usable else names[0])
        self.sources_changed.emit(pick)
        if pick is not None:
            self.select_source(pick)

    def select_source(self, name: str | None) -> None:
        """Show ``name`` (a key of :attr:`sources`); its scores are recomputed."""
        if name is None:
            return
        self.current = name
        src, cache = self.sources.get(name), self.caches.get(name)
        self.scorer = self.scores = self.curve = None
        self.ref_for_map = None
        if src is not None and src.values is not None and cache is not None and self.reference is not None:
            self._apply_reference(ask=False)
        self._refresh_all()

    # -- threshold ------------------------------------------------------------------------------

    def value_range(self) -> tuple[float, float] | None:
        """The slider's range: the finite values' range, widened when the map is constant."""
        cache = self.cache
        if cache is None:
            return None
        lo, hi = cache.lo, cache.hi
        return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)

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
        if rescore:
            self._update_curve()
        self._update_scores()

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
        name = self.current

        def job(ctx) -> tuple[str, str, float]:
            return name, method, cache.threshold(method, check=ctx.check)

        self._set_notes(method_note=f"Computing {METHOD_LABELS[method]}…")
        self.submit(KIND_METHOD, job)

    def _method_done(self, method: str, value: float) -> None:
        self.set_threshold(value)
        self.method_used = method
        self._set_notes(method_note=f"{METHOD_LABELS[method]}: {value:.6g}")

    def use_best(self) -> None:
        """Move to the threshold of the best Dice (with a reference)."""
        if self.curve is not None:
            self.set_threshold(self.curve.best_threshold)

    def binary_mask(self) -> np.ndarray | None:
        """The exact binary mask of the current source at the current threshold."""
        cache = self.cache
        return None if cache is None else binarise(cache.values, self.threshold, self.invert)

    # -- reference ------------------------------------------------------------------------------

    def load_reference(self, path: str | Path) -> bool:
        """Load a reference mask file (PNG/BMP/TIFF: non-zero is foreground; NPY)."""
        from maskviewer.io.images import load_image

        try:
            image = load_image(path)
            mask = reference_to_mask(image.raw if image.raw is not None else image.array)
        except (MaskviewerError, ValueError) as exc:
            self.error.emit("Cannot use this reference", f"{Path(path).name}: {exc}")
            return False
        return self.set_reference(mask, Path(path).name)

    def set_reference(self, mask: np.ndarray, name: str = "reference", image_mask: bool = False) -> bool:
        """Score against ``mask`` (bool). A mask of another size than the map is resized
        (nearest neighbour) if the user agrees; an image-sized painted mask (``image_mask``)
        is sampled through the input's frame."""
        self.reference = np.asarray(mask, dtype=bool)
        self.reference_name = name
        self._ref_resize_ok = False
        self._ref_is_image_mask = image_mask
        ok = self._apply_reference(ask=True)
        self._refresh_all()
        return ok

    def clear_reference(self) -> None:
        self.reference = None
        self.reference_name = ""
        self.ref_for_map = None
        self.scorer = self.scores = self.curve = None
        if self.cache is not None:
            self.cache.clear_layers()
        self._refresh_all()

    def _fit_reference(self, ask: bool) -> np.ndarray | None:
        """The reference on the current map's grid, or None when the user declines a resize."""
        ref, shape, src = self.reference, self.cache.values.shape, self.source
        if self._ref_is_image_mask and src is not None and src.frame is not None:
            return sample_image_mask(ref, src.frame, shape)
        if ref.shape == shape:
            return ref
        if not self._ref_resize_ok:
            question = resize_question(self.reference_name, ref.shape, self.current, shape)
            if not ask or not self.confirm("Reference size differs", question):
                return None
            self._ref_resize_ok = True
        return resize_nearest(ref, shape)

    def _apply_reference(self, ask: bool) -> bool:
        cache, ref = self.cache, self.reference
        if cache is None or ref is None:
            return False
        fitted = self._fit_reference(ask)
        if fitted is None:
            self.reference_note = unused_note(self.reference_name, ref.shape, cache.values.shape)
            self.ref_for_map = None
            self.scorer = None
            self.notes_changed.emit()
            return False
        self.ref_for_map = fitted
        self.scorer = None  # the old reference's scores no longer apply
        cache.clear_layers()
        self.inside = cache.add_layer(fitted)  # copies of the codes, patched as they are
        self.outside = cache.add_layer(~fitted)
        values, name = cache.values, self.current

        def job(_ctx) -> tuple[str, ReferenceScorer]:
            return name, ReferenceScorer(values, fitted)

        self._set_notes(reference_note=f"{self.reference_name}: scoring…")
        self.submit(KIND_SCORE, job)
        return True

    def _update_curve(self) -> None:
        self.curve = None if self.scorer is None else self.scorer.dice_curve(invert=self.invert)

    def _update_scores(self) -> None:
        if self.scorer is None:
            self.scores = None
            return
        self.scores = self.scorer.scores(self.threshold, self.invert)
        if self.ref_for_map is not None:
            self.reference_note = counts_note(self.reference_name, self.ref_for_map)

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
                self.scorer = scorer
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
        if self.reference is None:
            self.reference_note = NO_REFERENCE_NOTE
        elif self.ref_for_map is not None:
            self.reference_note = counts_note(self.reference_name, self.ref_for_map)
        self._update_curve()
        self._update_threshold(rescore=False)
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
        return self.show_errors and self.scorer is not None and cache is not None and bool(cache._layers)

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
