"""The Patches tool's state, without Qt: settings, the grid, the current patch and the results.

Settings follow ``tf.image.extract_patches`` (size, stride, rate, VALID/SAME). Invalid settings
leave the last valid ones in place and say what was wrong. Each change of settings, image,
model or input mapping starts a new *epoch*: results of runs made before it are stale and
dropped when they arrive. The panel, the canvas overlays and the worker glue listen to the
events of :class:`PatchModel`; nothing here imports PySide6 or pyqtgraph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.events import Event
from maskviewer.core.mapping import InputMapping
from maskviewer.core.patches import (
    PatchGrid,
    PatchSettingsError,
    PatchSpec,
    extract_patches,
    make_grid,
    parse_pair,
    patch_input,
    preset_corners,
    preset_grid,
    preset_sliding,
)
from maskviewer.core.state import AppState
from maskviewer.gui.patches.results import PatchResults
from maskviewer.gui.patches.runs import KIND, KIND_CURRENT, KIND_OCCLUSION, Snapshot

__all__ = ["KIND", "KIND_CURRENT", "KIND_OCCLUSION", "PRESETS", "PRESET_TIPS", "ROW_STEP",
           "CurrentView", "PatchModel", "input_levels"]

PRESETS = {
    "corners": "Four corners",
    "grid": "Grid",
    "sliding": "Sliding window",
}
PRESET_TIPS = {
    "corners": "The four corner patches of the Size above (18 on a 28-pixel image: stride 10)",
    "grid": "Rows × cols non-overlapping patches (the field beside)",
    "sliding": "Patches of the Size above every Stride pixels, inside the image, rate 1",
}
#: a step of this size (or more) moves by one row of patches, whatever the grid's width
ROW_STEP = 1 << 30


def input_levels(arr: np.ndarray, scale: str) -> tuple[float, float]:
    """Display levels for a model input: the scaling's own range, the data's for mean/std and raw."""
    fixed = {"0..1": (0.0, 1.0), "0..255": (0.0, 255.0), "-1..1": (-1.0, 1.0)}
    if scale in fixed:
        return fixed[scale]
    finite = arr[np.isfinite(arr)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


@dataclass
class CurrentView:
    """The current patch as the panel shows it enlarged.

    ``caption`` None leaves the caption as it was (a fit error is said in the message line).
    """

    label: str
    array: np.ndarray
    levels: tuple[float, float]
    caption: str | None
    inputs: dict[str, np.ndarray] | None


class PatchModel:
    """Patch settings on the current image, the current patch, and the runs' results.

    Parameters
    ----------
    state
        The window's :class:`~maskviewer.core.state.AppState` (image, model, mappings, labels);
        the model follows its events.

    Attributes
    ----------
    spec : PatchSpec
        The last valid settings.
    grid : PatchGrid or None
        ``spec`` on the current image (None without an image or when ``spec`` does not fit it).
    index : int
        The current patch.
    message : str
        What is wrong (settings, fit to the model, a run), one line each; "" when all is well.
    epoch : int
        Bumped whenever results stop matching; a run remembers the epoch it was made in.
    results : PatchResults
        The runs' results and how they are read.

    Events
    ------
    spec_changed(spec), grid_changed(grid), current_changed(index), message_changed(text)
        Each as its name says. ``grid_changed`` comes with every new epoch (index back to 0).
    invalidated()
        Results were dropped: runs for the old settings are to be stopped.
    prediction_changed()
        The current patch's prediction may have arrived or changed.
    """

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.spec = PatchSpec()
        self.grid: PatchGrid | None = None
        self.index = 0
        self.message = ""
        self.fit_error = ""
        self.epoch = 0
        self._messages = {"settings": "", "fit": "", "run": ""}
        self.results = PatchResults(lambda: self.state.labels, getattr(state, "kinds", None))
        self.spec_changed = Event()
        self.grid_changed = Event()
        self.current_changed = Event()
        self.message_changed = Event()
        self.invalidated = Event()
        self.prediction_changed = Event()
        self.results.problem.connect(self.set_message)
        state.image_changed.connect(lambda _i: self.image_changed())
        state.model_changed.connect(lambda _i: self.model_changed())
        state.mapping_changed.connect(lambda _m: self.settings_changed())
        state.labels_changed.connect(lambda _l: self.results.refresh())
        if getattr(state, "kinds", None) is not None:  # the output read as another kind
            state.kinds.changed.connect(lambda _name: (self.results.read_outputs(), self.prediction_changed.emit()))

    # -- messages --------------------------------------------------------------------------------

    def set_message(self, text: str, source: str = "settings") -> None:
        """Set the message from ``source`` (settings, fit or run); all non-empty ones show."""
        self._messages[source] = text
        self.message = "\n".join(m for m in self._messages.values() if m)
        self.message_changed.emit(self.message)

    def _keep_previous(self) -> str:
        return f" The previous settings ({self.spec.describe()}) stay."

    # -- settings --------------------------------------------------------------------------------

    def apply_texts(self, size: str, stride: str, rate: str, padding: str) -> bool:
        """Use the settings typed in; on bad input say why and keep the last valid settings."""
        try:
            spec = PatchSpec(
                parse_pair(size, "Patch size"), parse_pair(stride, "Stride"), parse_pair(rate, "Rate"), padding
            )
        except PatchSettingsError as exc:
            self.set_message(f"{exc}{self._keep_previous()}")
            return False
        return self.set_spec(spec)

    def set_spec(self, spec: PatchSpec) -> bool:
        """Use ``spec`` if it fits the current image; otherwise report it and keep the last valid one."""
        image = self.state.image
        if image is not None:
            try:
                grid = make_grid(spec, image.height, image.width)
            except PatchSettingsError as exc:
                self.set_message(f"{exc}{self._keep_previous() if self.grid else ''}")
                return False
            self.grid = grid
        self.spec = spec
        self.spec_changed.emit(spec)
        self.set_message("")
        self.settings_changed()
        return True

    def apply_preset(self, key: str, size: str, stride: str, grid: str) -> bool:
        """Apply preset ``key`` (see ``PRESETS``) with the size, stride and grid fields' texts."""
        image = self.state.image
        if image is None:
            self.set_message("Open an image first: presets are computed from its size.")
            return False
        try:
            if key == "corners":
                spec = preset_corners(image.height, image.width, parse_pair(size, "Patch size"))
            elif key == "grid":
                rows, cols = parse_pair(grid, "Grid rows, cols")
                spec = preset_grid(image.height, image.width, rows, cols)
            else:
                spec = preset_sliding(parse_pair(size, "Patch size"), parse_pair(stride, "Stride"))
        except PatchSettingsError as exc:
            self.set_message(f"{exc}{self._keep_previous()}")
            return False
        return self.set_spec(spec)

    # -- what changed ----------------------------------------------------------------------------

    def image_changed(self) -> None:
        """Put the settings on the new image (or say why they do not fit it)."""
        image = self.state.image
        if image is None:
            self.grid = None
        else:
            try:
                self.grid = make_grid(self.spec, image.height, image.width)
                self.set_message("")
            except PatchSettingsError as exc:
                self.grid = None
                self.set_message(f"{exc} Choose settings that fit this image.")
        self.settings_changed()

    def model_changed(self) -> None:
        self.results.set_choices(self.state.model_info)
        self.settings_changed()

    def settings_changed(self) -> None:
        """A new epoch: drop the results, check the fit, go back to the first patch."""
        self.epoch += 1
        self.results.clear()
        self.invalidated.emit()
        self.set_message("", "run")
        self.check_fit()
        self.index = 0
        self.grid_changed.emit(self.grid)
        self.results.refresh()
        self.current_changed.emit(self.index)

    def check_fit(self) -> None:
        """Can the current patch size feed the model? (numpy only: one small patch)"""
        self.fit_error = ""
        info, image, grid = self.state.model_info, self.state.image, self.grid
        if info is None or image is None or grid is None:
            self.set_message("", "fit")
            return
        from maskviewer.inference.patch_runner import check_patch_fits, plan_feed

        try:
            check_patch_fits(image, grid, plan_feed(info, self.mappings()))
        except MaskviewerError as exc:
            self.fit_error = str(exc)
        self.set_message(self.fit_error, "fit")

    def mappings(self) -> dict[str, InputMapping]:
        """Copies of the input mappings (a job must not see later edits)."""
        return {k: InputMapping.from_dict(v.to_dict()) for k, v in self.state.mappings.items()}

    def count_text(self) -> str:
        g = self.grid
        if g is None:
            return "No patches." if self.state.image is not None else "Open an image to cut it into patches."
        eh, ew = g.spec.span
        extra = f" · each covers {eh}×{ew} pixels" if g.spec.rate != (1, 1) else ""
        return f"{g.describe()} · {g.spec.describe()}{extra}"

    # -- stepping --------------------------------------------------------------------------------

    def set_index(self, index: int) -> None:
        """Make patch ``index`` the current one (clamped to the grid)."""
        if self.grid is None:
            return
        self.index = int(min(max(index, 0), self.grid.count - 1))
        self.current_changed.emit(self.index)

    def step(self, delta: int, wrap: bool = False) -> None:
        """Move ``delta`` patches (``ROW_STEP`` multiples move by rows)."""
        if self.grid is None:
            return
        if abs(delta) >= ROW_STEP:
            delta = self.grid.cols * (1 if delta > 0 else -1)
        target = self.index + delta
        self.set_index(target % self.grid.count if wrap else target)

    # -- the current patch -----------------------------------------------------------------------

    def current_patch(self) -> np.ndarray | None:
        """The current patch as cut (``(kh, kw, C)``, the image's dtype)."""
        if self.grid is None or self.state.image is None:
            return None
        return extract_patches(self.state.image.array, self.grid, [self.index])[0]

    def current_inputs(self) -> dict[str, np.ndarray] | None:
        """The current patch as batched model inputs (``{name: (1, ...)}``), or None.

        Inputs fed from other files get their usual arrays; another view (the layers) can run
        exactly what the patch run feeds for this patch.
        """
        info, image, patch = self.state.model_info, self.state.image, self.current_patch()
        if info is None or image is None or patch is None or self.fit_error:
            return None
        from maskviewer.inference.patch_runner import plan_feed

        feed = plan_feed(info, self.mappings())
        if feed.other_inputs:
            return None  # needs other files loaded: the worker job builds those
        return {
            name: patch_input(patch, image.value_max, m, shape)[None]
            for name, (m, shape) in feed.patch_inputs.items()
        }

    def current_view(self) -> CurrentView | None:
        """How the current patch is shown: as it enters the model, else as cut."""
        g, image = self.grid, self.state.image
        if g is None or image is None:
            return None
        r, c = g.position(self.index)
        y, x = g.origin(self.index)
        label = f"Patch {self.index + 1} / {g.count} · row {r}, col {c} · at x {x}, y {y}"
        inputs, caption = None, None
        try:
            inputs = self.current_inputs()
        except MaskviewerError as exc:
            caption = str(exc)
        if inputs:
            name, arr = next(iter(inputs.items()))
            mapping = self.mappings().get(name) or InputMapping()
            shown = arr[0]
            caption = (
                f"As it enters the model: input {name!r} {tuple(shown.shape)}, "
                f"{mapping.resize}, scaled {mapping.scale}."
            )
            return CurrentView(label, shown, input_levels(shown, mapping.scale), caption, inputs)
        patch = self.current_patch()
        shown = patch[:, :, 0] if patch.shape[2] in (1, 2) else patch
        if not self.fit_error and self.state.model_info is None:
            caption = "As cut from the image (open a model to see it as the model sees it)."
        return CurrentView(label, shown, (0.0, float(image.value_max)), caption, None)

    def current_prediction(self) -> tuple[np.ndarray | None, bool]:
        """The current patch's probabilities (or None) and whether to ask the worker for them."""
        probs = self.results.patch_probs(self.index)
        if probs is not None or self.results.probs is not None or self.index in self.results.current_cache:
            return probs, False
        return None, self.can_run(quiet=True)

    # -- runs ------------------------------------------------------------------------------------

    def can_run(self, quiet: bool = False) -> bool:
        """Whether patches can run now; if not (and not ``quiet``) say why in the message."""
        why = ""
        if self.state.image is None or self.state.model_info is None:
            why = "Open an image and a model first."
        elif self.grid is None:
            why = self.message or "The patch settings do not fit this image."
        elif self.fit_error:
            why = self.fit_error
        if why and not quiet and why not in self.message:
            self.set_message(why, "run")
        return not why

    def job_parts(self, extra_images: dict[str, Any]) -> tuple:
        """``(image, grid, feed, extra images, snapshot)``: what a run job takes along."""
        from maskviewer.inference.patch_runner import plan_feed

        feed = plan_feed(self.state.model_info, self.mappings())
        return self.state.image, self.grid, feed, dict(extra_images), Snapshot(self.epoch, self.grid)

    def set_output(self, name: str | None) -> None:
        """Read output ``name`` (by its kind)."""
        self.results.set_output(name)
        self.prediction_changed.emit()

    def accept(self, kind: str, result: tuple) -> bool:
        """Take a finished job's result; False when it was made for settings since changed."""
        if result[0].epoch != self.epoch:
            return False
        if kind == KIND_CURRENT:
            _snap, index, outputs = result
            self.results.current_cache[index] = outputs
            if index == self.index:
                self.prediction_changed.emit()
        elif kind == KIND:
            self.results.accept_run(result[1])
            self.prediction_changed.emit()
        elif kind == KIND_OCCLUSION:
            self.results.accept_occlusion(result[1])
        return True
