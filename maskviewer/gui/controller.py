"""The controller: wires the session state, the inference worker, settings and the window.

It owns no widgets. The window (or a test) connects to its signals and provides ``confirm``
for questions that need the user's consent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from maskviewer.core.errors import MaskviewerError, UnsafeModelError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, is_image_input, prepare_input, propose_mapping
from maskviewer.core.model_info import ModelInfo
from maskviewer.core.predictions import read_labels
from maskviewer.core.state import AppState, Prediction
from maskviewer.gui.worker import InferenceWorker, JobContext
from maskviewer.io.images import load_image

MAX_RECENT = 10


def _key(path: str | Path) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


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

    def __init__(
        self,
        settings: QSettings,
        worker: InferenceWorker | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = AppState()
        self.settings = settings
        self.worker = worker or InferenceWorker(self)
        self.confirm: Callable[[str, str], bool] = lambda title, text: False
        self.model_path: str | None = None
        self.model_sha256: str | None = None
        self._custom_files: list[str] = []
        self._loading_model = False
        self._latest: dict[str, int] = {}
        self._extra_images: dict[str, ImageData] = {}
        self.last_prediction_error = ""
        self._predict_timer = QTimer(self)
        self._predict_timer.setSingleShot(True)
        self._predict_timer.setInterval(30)  # coalesce bursts of edits into one request
        self._predict_timer.timeout.connect(self.run_prediction)
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
        self.state.mapping_changed.connect(lambda _m: self.schedule_prediction())

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
        self.state.set_image(image)
        self._remember_recent(str(path))
        self._remember_dir(path)
        self._propose_missing_mappings()
        self.status.emit(f"Opened {Path(path).name}: {image.describe()}")
        self.schedule_prediction()
        return True

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
        path = str(path)
        files = list(custom_object_files or [])
        for f in files:
            if not trust and not self._consent_to_code(
                f,
                "Run custom objects code?",
                f"Loading custom layers runs the Python file\n\n{f}\n\nwith your permissions. "
                "Run it only if you trust it.",
            ):
                self.status.emit("Custom objects not loaded.")
                return False
        self._custom_files = files
        trusted = set(self._trusted())
        self._loading_model = True
        self._predict_timer.stop()
        self.model_loading.emit(path)
        self.status.emit(f"Loading {Path(path).name}…")

        def job(ctx: JobContext) -> tuple[ModelInfo, str]:
            from maskviewer.inference.loading import file_sha256, load_custom_objects

            sha = file_sha256(path)
            custom = load_custom_objects(files) if files else None
            ctx.check()
            safe = not (trust or sha in trusted)
            try:
                info = ctx.host.load(path, safe_mode=safe, custom_objects=custom)
            except UnsafeModelError as exc:
                exc.sha256 = sha  # type: ignore[attr-defined]
                exc.path = path  # type: ignore[attr-defined]
                raise
            return info, sha

        self.submit("load", job, exclusive=True)
        return True

    def _consent_to_code(self, path: str, title: str, text: str) -> bool:
        from maskviewer.inference.loading import file_sha256

        try:
            sha = file_sha256(path)
        except OSError as exc:
            self.error.emit(title, f"{path}: {exc}")
            return False
        if sha in self._trusted():
            return True
        if self.confirm(title, text):
            self._trust(sha)
            return True
        return False

    def _trusted(self) -> list[str]:
        value = self.settings.value("trusted_sha256", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _trust(self, sha: str) -> None:
        trusted = self._trusted()
        if sha not in trusted:
            self.settings.setValue("trusted_sha256", trusted + [sha])

    def _model_loaded(self, info: ModelInfo, sha: str) -> None:
        self._loading_model = False
        self.model_path = info.path
        self.model_sha256 = sha
        mappings = self._saved_mappings(info.path)
        for spec in info.inputs:
            if spec.name not in mappings and is_image_input(spec.shape):
                mappings[spec.name] = propose_mapping(spec.shape, self.state.image, info.expects_0_255)
        self.state.set_model(info, mappings)
        self._remember_recent(info.path)
        self._remember_dir(info.path)
        self.status.emit(f"Loaded {info.name} ({info.kind}, {info.total_params:,} parameters)")
        self.schedule_prediction()

    def _propose_missing_mappings(self) -> None:
        info = self.state.model_info
        if info is None:
            return
        for spec in info.inputs:
            if not is_image_input(spec.shape):
                continue
            current = self.state.mappings.get(spec.name)
            proposed = propose_mapping(spec.shape, self.state.image, info.expects_0_255)
            # an .npy of the exact input shape is fed as is; otherwise keep the user's choice
            if current is None or (proposed.scale == "raw") != (current.scale == "raw"):
                if current is None or current.source == "image":
                    self.state.mappings[spec.name] = proposed
        self.state.mapping_changed.emit(self.state.mappings)

    def set_mapping(self, input_name: str, mapping: InputMapping) -> None:
        self.state.set_mapping(input_name, mapping)
        if self.model_path:
            data = {k: m.to_dict() for k, m in self.state.mappings.items()}
            self.settings.setValue(f"mappings/{_key(self.model_path)}", json.dumps(data))

    def _saved_mappings(self, model_path: str) -> dict[str, InputMapping]:
        raw = self.settings.value(f"mappings/{_key(model_path)}")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
            return {k: InputMapping.from_dict(v) for k, v in data.items()}
        except (ValueError, TypeError, AttributeError):
            return {}

    def load_labels(self, path: str | Path) -> bool:
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

    #: Set by the masks tool: ``names -> {name: (H, W) float32 mask}``, copies taken on the
    #: GUI thread, for mapping sources that feed a mask (see ``maskviewer.core.mask_feed``).
    mask_provider: Callable[[set[str]], dict] | None = None

    def build_inputs(self, masks: dict | None = None) -> Callable[[], tuple[dict, dict]]:
        """A closure computing the model inputs from a snapshot of the current state.

        It runs on the worker thread (resizing a large image is not GUI work). ``masks``
        (name -> array) replaces the painted masks, e.g. for the mask ablation.
        """
        from maskviewer.core.mask_feed import is_mask_source, masks_needed, prepare_masked_input

        info = self.state.model_info
        image = self.state.image
        mappings = {k: InputMapping.from_dict(v.to_dict()) for k, v in self.state.mappings.items()}
        extra = dict(self._extra_images)
        if info is None or image is None:
            raise MaskviewerError("Open an image and a model first.")
        needed = masks_needed(mappings)
        if masks is None:
            masks = self.mask_provider(needed) if needed and self.mask_provider else {}

        def build() -> tuple[dict, dict]:
            arrays, frames = {}, {}
            for spec in info.inputs:
                m = mappings.get(spec.name) or propose_mapping(spec.shape, image, info.expects_0_255)
                src = image
                if m.source.startswith("file:"):
                    src = extra.get(m.source[5:]) or load_image(m.source[5:])
                elif is_mask_source(m.source):
                    x, frame = prepare_masked_input(image, m, spec.shape, masks)
                    arrays[spec.name] = x[None]
                    frames[spec.name] = frame
                    continue
                elif m.source != "image":
                    raise MaskviewerError(
                        f"Input {spec.name!r}: the source {m.source!r} is not available."
                    )
                x, frame = prepare_input(src, m, spec.shape)
                arrays[spec.name] = x[None]
                frames[spec.name] = frame
            return arrays, frames

        return build

    def run_prediction(self) -> int | None:
        """Submit a prediction for the current state now; returns its generation."""
        if self._loading_model or self.state.model_info is None or self.state.image is None:
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
        gen = self.worker.submit(kind, fn, exclusive=exclusive)
        self._latest[kind] = gen
        return gen

    def is_latest(self, kind: str, generation: int) -> bool:
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
            self._model_loaded(*result)
        elif kind == "predict":
            self.last_prediction_error = ""
            self.state.set_prediction(result)

    def _job_failed(self, kind: str, generation: int, message: str, exc: Any) -> None:
        self._job_done()
        if not self.is_latest(kind, generation):
            return
        if kind == "load":
            self._loading_model = False
            if isinstance(exc, UnsafeModelError):
                self._offer_unsafe_load(exc)
                return
            self.error.emit("Cannot open model", message)
            self.status.emit("The model was not loaded; the previous one stays.")
        elif kind == "predict":
            self.last_prediction_error = message
            self.prediction_error.emit(message)
            self.status.emit("Inference failed: see the Predictions panel.")
        else:  # a tool's own job: the tool shows the error in its panel
            self.status.emit(f"{kind.capitalize()} failed: {message}")

    def _offer_unsafe_load(self, exc: UnsafeModelError) -> None:
        path = getattr(exc, "path", None)
        question = (
            f"{exc}\n\nLoad it anyway? This runs the code in the file. Your answer is "
            "remembered for this exact file (by its SHA-256)."
        )
        if path and self.confirm("Model contains code", question):
            sha = getattr(exc, "sha256", None)
            if sha:
                # trust the hash, not the path: the reload checks the file's hash again, so a
                # file changed while the question was open is asked about anew
                self._trust(sha)
            self.open_model(path, self._custom_files, trust=not sha)
        else:
            self.error.emit("Model not loaded", str(exc))

    def _job_cancelled(self, kind: str, generation: int) -> None:
        self._job_done()
        if kind == "load" and self.is_latest(kind, generation):
            self._loading_model = False

    # -- settings -------------------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else [str(v) for v in (value or [])]

    def _remember_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self.recent_files() if p != path]
        recent.insert(0, path)
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self.recent_changed.emit(recent[:MAX_RECENT])

    def _remember_dir(self, path: str | Path) -> None:
        self.settings.setValue("last_dir", str(Path(path).resolve().parent))

    def last_dir(self) -> str:
        return str(self.settings.value("last_dir", str(Path.home())))
