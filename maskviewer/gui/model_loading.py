"""Loading a model on the inference thread, and the user's consent before any code runs.

Custom-object files and models whose config holds code (Lambda layers…) run Python with the
user's permissions: they load only after the user says yes (``controller.confirm``), or with
``--trust``. A yes is remembered by the file's SHA-256, never its path, so a file changed
since is asked about anew.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from maskviewer.core.errors import UnsafeModelError
from maskviewer.core.model_info import ModelInfo
from maskviewer.gui.inputs import initial_mappings
from maskviewer.gui.worker import JobContext

if TYPE_CHECKING:
    from maskviewer.gui.controller import Controller


class ModelLoader:
    """The controller's model loading: what is loaded, what is loading, and consent.

    Parameters
    ----------
    controller
        Gives the state, settings, signals, ``confirm`` and ``submit``.
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.path: str | None = None  # the loaded model's
        self.sha256: str | None = None
        self.custom_files: list[str] = []  # for the model loading or loaded
        self.loading = False

    # -- requests --------------------------------------------------------------------------

    def open(self, path: str | Path, custom_object_files: list[str] | None = None,
             trust: bool = False) -> bool:
        """Start loading ``path``; False when the user refused to run custom-object code."""
        c = self.controller
        path = str(path)
        files = list(custom_object_files or [])
        if not trust and not all(self._consent_to_custom_objects(f) for f in files):
            c.status.emit("Custom objects not loaded.")
            return False
        self.custom_files = files
        job = load_job(path, files, trust, set(c.prefs.trusted()))
        self.loading = True
        c.stop_scheduled_prediction()
        c.model_loading.emit(path)
        c.status.emit(f"Loading {Path(path).name}…")
        c.submit("load", job, exclusive=True)
        return True

    def _consent_to_custom_objects(self, path: str) -> bool:
        return self.consent_to_code(
            path,
            "Run custom objects code?",
            f"Loading custom layers runs the Python file\n\n{path}\n\nwith your permissions. "
            "Run it only if you trust it.",
        )

    def consent_to_code(self, path: str, title: str, text: str) -> bool:
        """True when ``path``'s hash is trusted already or the user agrees now (then trusted)."""
        from maskviewer.inference.loading import file_sha256

        c = self.controller
        try:
            sha = file_sha256(path)
        except OSError as exc:
            c.error.emit(title, f"{path}: {exc}")
            return False
        if sha in c.prefs.trusted():
            return True
        if c.confirm(title, text):
            c.prefs.trust(sha)
            return True
        return False

    # -- outcomes --------------------------------------------------------------------------

    def loaded(self, info: ModelInfo, sha: str) -> None:
        """The load job finished: the model becomes current with its saved or proposed mappings."""
        c = self.controller
        self.loading = False
        self.path = info.path
        self.sha256 = sha
        mappings = initial_mappings(info, c.state.image, c.prefs.saved_mappings(info.path))
        c.state.set_model(info, mappings)
        c.remember_file(info.path)
        c.status.emit(f"Loaded {info.name} ({info.kind}, {info.total_params:,} parameters)")
        c.schedule_prediction()

    def failed(self, message: str, exc: object) -> None:
        """The load job failed: the previous model stays; code in the model is asked about."""
        c = self.controller
        self.loading = False
        if isinstance(exc, UnsafeModelError):
            self.offer_unsafe_load(exc)
            return
        c.error.emit("Cannot open model", message)
        c.status.emit("The model was not loaded; the previous one stays.")

    def offer_unsafe_load(self, exc: UnsafeModelError) -> None:
        """Ask whether to load a model that holds code anyway; reload it on yes."""
        c = self.controller
        path = getattr(exc, "path", None)
        question = (
            f"{exc}\n\nLoad it anyway? This runs the code in the file. Your answer is "
            "remembered for this exact file (by its SHA-256)."
        )
        if path and c.confirm("Model contains code", question):
            sha = getattr(exc, "sha256", None)
            if sha:
                # trust the hash, not the path: the reload checks the file's hash again, so a
                # file changed while the question was open is asked about anew
                c.prefs.trust(sha)
            self.open(path, self.custom_files, trust=not sha)
        else:
            c.error.emit("Model not loaded", str(exc))


def load_job(path: str, files: list[str], trust: bool, trusted: set[str]):
    """The worker job loading ``path``: safe mode unless trusted; returns ``(info, sha256)``."""

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

    return job
