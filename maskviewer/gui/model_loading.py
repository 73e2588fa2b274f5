"""Loading a model on the inference thread, and the user's consent before any code runs.

Custom-object files, models whose config holds code (Lambda layers…) and SavedModels (graphs
that can hold any TF op) run code with the user's permissions: they load only after the user
says yes (``controller.confirm``), or with ``--trust``. A yes is remembered by the SHA-256 of
the file's bytes (signed in the settings), never its path, and the worker runs only bytes that
hash the same, so a file changed or swapped since is asked about anew.
"""

from __future__ import annotations

import hashlib
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
             trust: bool = False, consented: str | None = None) -> bool:
        """Start loading ``path``; False when the user refused to run custom-object code.

        ``consented`` is the SHA-256 of model bytes the user just agreed to run: the load runs
        them with safe mode off only if the bytes read on the worker hash the same.
        """
        c = self.controller
        path = str(path)
        files = list(custom_object_files or [])
        expected: dict[str, str] | None = None  # --trust: whatever the files hold
        if not trust:
            expected = {}
            for f in files:
                sha = self._consent_to_custom_objects(f)
                if sha is None:
                    c.status.emit("Custom objects not loaded.")
                    return False
                expected[f] = sha
        self.custom_files = files
        trusted = set(c.prefs.trusted()) | ({consented} if consented else set())
        job = load_job(path, files, trust, trusted, expected)
        self.loading = True
        c.stop_scheduled_prediction()
        c.model_loading.emit(path)
        c.status.emit(f"Loading {Path(path).name}…")
        c.submit("load", job, exclusive=True)
        return True

    def _consent_to_custom_objects(self, path: str) -> str | None:
        return self.consent_to_code(
            path,
            "Run custom objects code?",
            f"Loading custom layers runs the Python file\n\n{path}\n\nwith your permissions. "
            "Run it only if you trust it.",
        )

    def consent_to_code(self, path: str, title: str, text: str) -> str | None:
        """The SHA-256 of ``path``'s bytes when trusted already or the user agrees now (then
        trusted); None on no. The worker runs the file only if its bytes still hash so."""
        from maskviewer.io.untrusted import MAX_SOURCE_BYTES, read_file

        c = self.controller
        try:
            sha = hashlib.sha256(read_file(path, MAX_SOURCE_BYTES)).hexdigest()
        except OSError as exc:
            c.error.emit(title, str(exc))
            return None
        if sha in c.prefs.trusted():
            return sha
        if c.confirm(title, text):
            c.prefs.trust(sha)
            return sha
        return None

    # -- outcomes --------------------------------------------------------------------------

    def loaded(self, info: ModelInfo, sha: str) -> None:
        """The load job finished: the model becomes current with its saved or proposed mappings."""
        c = self.controller
        self.loading = False
        self.path = info.path
        self.sha256 = sha
        mappings = initial_mappings(info, c.state.image, c.prefs.saved_mappings(info.path))
        c.state.set_model(info, mappings, c.prefs.saved_kinds(info.path))
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
        sha = getattr(exc, "sha256", None)
        if path and sha and c.confirm("Model contains code", question):
            # trust the hash, not the path: the reload reads the file once more and runs it
            # only if those bytes hash the same, so a file changed while the question was open
            # (or swapped in later) is asked about anew
            c.prefs.trust(sha)
            self.open(path, self.custom_files, consented=sha)
        else:
            c.error.emit("Model not loaded", str(exc))


def load_job(path: str, files: list[str], trust: bool, trusted: set[str],
             expected: dict[str, str] | None = None):
    """The worker job loading ``path``: safe mode unless trusted; returns ``(info, sha256)``.

    The model is read once here and its hash decides safe mode for exactly the bytes that load;
    custom-objects files run only if their bytes hash as when the user agreed (``expected``;
    None with ``trust``, the command line's ``--trust``).
    """

    def job(ctx: JobContext) -> tuple[ModelInfo, str]:
        from maskviewer.inference.loading import load_custom_objects, snapshot_model

        snap = snapshot_model(path)
        custom = load_custom_objects(files, None if trust else expected) if files else None
        ctx.check()
        safe = not (trust or snap.sha256 in trusted)
        info = ctx.host.load(snap, safe_mode=safe, custom_objects=custom)
        return info, snap.sha256

    return job
