"""The controller: wires the session state, the inference worker, settings and the window.

It owns no widgets. The window (or a test) connects to its signals and provides ``confirm``
for questions that need the user's consent. Settings live in :mod:`maskviewer.gui.settings`,
model loading and consent in :mod:`maskviewer.gui.model_loading`, and the model inputs are
built by :mod:`maskviewer.gui.inputs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping
from maskviewer.core.predictions import read_labels
from maskviewer.core.state import AppState, Prediction
from maskviewer.gui.inputs import input_builder, propose_missing
from maskviewer.gui.model_loading import ModelLoader
from maskviewer.gui.settings import AppSettings
from maskviewer.gui.worker import InferenceWorker, JobContext
from maskviewer.io.images import load_image


class Controller(QObject):
    """Loads files, keeps the state, and asks the worker for model work."""

    status = Signal(str)  # short status-bar messages
    error = Signal(str, str)  # title, message: something the user asked for failed
    prediction_error = Signal(str)  # inference failed (shown inline, not as a dialog)
    busy_changed = Signal(bool, str)  # busy, what
    progress = Signal(int, int)  # done, total
    backend_status = Signal(str)
    recent_changed = Signal(list)
    model_loading = Signal(str)

    #: Set by the masks tool: ``names -> {name: (H, W) float32 mask}``, copies taken on the
    #: GUI thread, for mapping sources that feed a mask (see ``maskviewer.core.mask_feed``).
    mask_provider: Callable[[set[str]], dict] | None = None

    def __init__(
        self,
        settings: QSettings,
        worker: InferenceWorker | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = AppState()
        #: the raw QSettings (tools keep their own keys in it); :attr:`prefs` reads the app's
        self.settings = settings
        self.prefs = AppSettings(settings)
        self.worker = worker or InferenceWorker(self)
        #: asks the user a yes/no question needing consent; the window sets it (default: no)
        self.confirm: Callable[[str, str], bool] = lambda title, text: False
        self.loader = ModelLoader(self)
        self._latest: dict[str, int] = {}
        self._extra_images: dict[str, ImageData] = {}
        self.last_prediction_error = ""
        self._predict_timer = QTimer(self)
        self._predict_timer.setSingleShot(True)
        self._predict_timer.setInterval(30)  # coalesce bursts of edits into one request
        self._predict_timer.timeout.connect(self.run_prediction)
        self._connect_worker()
        self.state.mapping_changed.connect(lambda _m: self.schedule_prediction())

    def _connect_worker(self) -> None:
        w = self.worker
        w.backend_loading.connect(lambda: self.backend_status.emit("Loading TensorFlow…"))
        w.backend_ready.connect(self._backend_ready)
        w.backend_failed.connect(self._backend_failed)
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        w.job_cancelled.connect(self._job_cancelled)
        w.idle.connect(self._job_done)
        w.job_progress.connect(self._job_progress)
        w.job_started.connect(self._job_started)

    # -- the loaded model (kept by the loader) ------------------------------------------------

    @property
    def model_path(self) -> str | None:
        return self.loader.path

    @property
    def model_sha256(self) -> str | None:
        return self.loader.sha256

    @property
    def custom_files(self) -> list[str]:
        """The custom-object files of the model loaded (or loading)."""
        return self.loader.custom_files

    @property
    def loading_model(self) -> bool:
        """A model is loading: results computed for the current one would be stale."""
        return self.loader.loading

    @property
    def extra_images(self) -> dict[str, ImageData]:
        """Images opened to feed model inputs (``file:`` sources), by path."""
        return self._extra_images

    # -- backend --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the inference thread (it imports the backend first)."""
        self.worker.start()

    def shutdown(self) -> None:
        self._predict_timer.stop()
        self.worker.stop()

    def _backend_ready(self, device: Any) -> None:
        self.state.device = device.describe()
        self.backend_status.emit(self.state.device)

    def _backend_failed(self, message: str) -> None:
        self.backend_status.emit("No model backend")
        self.error.emit("Model backend", message)

    # -- images ---------------------------------------------------------------------------------

    def open_image(self, path: str | Path) -> bool:
        """Open an image; on failure report it and keep the current one."""
        try:
            image = load_image(path)
        except MaskviewerError as exc:
            self.error.emit("Cannot open image", str(exc))
            return False
        self.show_image(image, Path(path).name)
        self.remember_file(path)
        return True

    def show_image(self, image: ImageData, name: str | None = None) -> None:
        """Make ``image`` (read already, from a file or a row of an array) the current image."""
        self.state.set_image(image)
        self._propose_missing_mappings()
        self.status.emit(f"Opened {name or image.path or 'an image'}: {image.describe()}")
        self.schedule_prediction()

    def set_input_file(self, input_name: str, path: str | Path) -> bool:
        """Feed ``input_name`` from another image file."""
        try:
            self._extra_images[str(path)] = load_image(path)
        except MaskviewerError as exc:
            self.error.emit("Cannot open image", str(exc))
            self.state.mapping_changed.emit(self.state.mappings)  # reset the editor
            return False
        m = self.state.mappings.get(input_name, InputMapping())
        m = InputMapping.from_dict({**m.to_dict(), "source": f"file:{path}"})
        self.set_mapping(input_name, m)
        return True

    # -- models ---------------------------------------------------------------------------------

    def open_model(
        self,
        path: str | Path,
        custom_object_files: list[str] | None = None,
        trust: bool = False,
    ) -> bool:
        """Load a model on the inference thread.

        Custom-object files are Python code: they run only after :attr:`confirm` says yes (or
        ``trust``, the command line's ``--trust``). Returns False if nothing was started.
        """
        return self.loader.open(path, custom_object_files, trust)

    def _propose_missing_mappings(self) -> None:
        info = self.state.model_info
        if info is None:
            return
        propose_missing(info, self.state.image, self.state.mappings)
        self.state.mapping_changed.emit(self.state.mappings)

    def set_mapping(self, input_name: str, mapping: InputMapping) -> None:
        """Change one input's mapping; it is remembered for this model."""
        self.state.set_mapping(input_name, mapping)
        if self.model_path:
            self.prefs.save_mappings(self.model_path, self.state.mappings)

    def set_output_kind(self, output_name: str, kind: str) -> None:
        """Read one output as ``kind`` (see :mod:`maskviewer.core.output_kinds`); it is
        remembered for this model."""
        self.state.kinds.choose(output_name, kind)
        if self.model_path:
            self.prefs.save_kinds(self.model_path, self.state.kinds.chosen())

    def load_labels(self, path: str | Path) -> bool:
        """Read class labels (text or JSON) for the predictions; errors are reported."""
        try:
            labels = read_labels(str(path))
        except (OSError, ValueError) as exc:
            self.error.emit("Cannot read labels", f"{Path(path).name}: {exc}")
            return False
        self.state.set_labels(labels)
        self.status.emit(f"{len(labels)} labels from {Path(path).name}")
        return True

    # -- inference ------------------------------------------------------------------------------

    def schedule_prediction(self) -> None:
        """Ask for a new prediction soon; bursts of requests collapse into one."""
        if self.state.model_info is not None and self.state.image is not None:
            self._predict_timer.start()

    def stop_scheduled_prediction(self) -> None:
        self._predict_timer.stop()

    def build_inputs(self, masks: dict | None = None) -> Callable[[], tuple[dict, dict]]:
        """A closure computing the model inputs from a snapshot of the current state.

        It runs on the worker thread (resizing a large image is not GUI work). ``masks``
        (name -> array) replaces the painted masks, e.g. for the mask ablation.
        """
        from maskviewer.core.mask_feed import masks_needed

        info = self.state.model_info
        image = self.state.image
        mappings = {k: InputMapping.from_dict(v.to_dict()) for k, v in self.state.mappings.items()}
        if info is None or image is None:
            raise MaskviewerError("Open an image and a model first.")
        needed = masks_needed(mappings)
        if masks is None:
            masks = self.mask_provider(needed) if needed and self.mask_provider else {}
        return input_builder(info, image, mappings, dict(self._extra_images), masks)

    def run_prediction(self) -> int | None:
        """Submit a prediction for the current state now; returns its generation."""
        if self.loader.loading or self.state.model_info is None or self.state.image is None:
            return None
        build = self.build_inputs()

        def job(ctx: JobContext) -> Prediction:
            arrays, frames = build()
            ctx.check()
            t0 = time.perf_counter()
            outputs = ctx.host.predict(arrays)
            dt = time.perf_counter() - t0
            return Prediction(
                {k: v[0] for k, v in outputs.items()},
                {k: v[0] for k, v in arrays.items()},
                frames,
                dt,
            )

        return self.submit("predict", job)

    def cancel(self) -> None:
        self.worker.cancel()
        self.status.emit("Cancelled.")

    # -- worker plumbing ------------------------------------------------------------------------

    def submit(self, kind: str, fn: Callable[[JobContext], Any], exclusive: bool = False) -> int:
        """Queue ``fn`` on the worker as the newest job of ``kind``; returns its generation."""
        gen = self.worker.submit(kind, fn, exclusive=exclusive)
        self._latest[kind] = gen
        return gen

    def is_latest(self, kind: str, generation: int) -> bool:
        """Whether ``generation`` is the newest job of ``kind`` submitted (older ones are stale)."""
        return self._latest.get(kind) == generation

    def _job_started(self, kind: str, generation: int) -> None:
        if self.is_latest(kind, generation):
            self.busy_changed.emit(True, kind)

    def _job_progress(self, kind: str, generation: int, done: int, total: int) -> None:
        if self.is_latest(kind, generation):
            self.progress.emit(done, total)

    def _job_done(self) -> None:
        if not self.worker.busy():
            self.busy_changed.emit(False, "")

    def _job_finished(self, kind: str, generation: int, result: Any) -> None:
        self._job_done()
        if not self.is_latest(kind, generation):
            return  # a newer request of this kind is on its way
        if kind == "load":
            self.loader.loaded(*result)
        elif kind == "predict":
            self.last_prediction_error = ""
            self.state.set_prediction(result)

    def _job_failed(self, kind: str, generation: int, message: str, exc: Any) -> None:
        self._job_done()
        if not self.is_latest(kind, generation):
            return
        if kind == "load":
            self.loader.failed(message, exc)
        elif kind == "predict":
            self.last_prediction_error = message
            self.prediction_error.emit(message)
            self.status.emit("Inference failed: see the Predictions panel.")
        else:  # a tool's own job: the tool shows the error in its panel
            self.status.emit(f"{kind.capitalize()} failed: {message}")

    def _job_cancelled(self, kind: str, generation: int) -> None:
        self._job_done()
        if kind == "load" and self.is_latest(kind, generation):
            self.loader.loading = False

    # -- settings -------------------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        """Recently opened images and models, newest first."""
        return self.prefs.recent_files()

    def remember_file(self, path: str | Path) -> None:
        """Note an opened file: first in Open Recent, and its folder for the next picker."""
        self.recent_changed.emit(self.prefs.remember_recent(path))
        self.prefs.remember_dir(path)

    def last_dir(self) -> str:
        """The folder file pickers start in."""
        return self.prefs.last_dir()
