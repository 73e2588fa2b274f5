"""What the app remembers between runs: recent files, last folder, trusted code, mappings, layout.

:class:`AppSettings` wraps a ``QSettings`` but needs only its ``value``/``setValue``/``sync``
methods, so it imports no Qt and a plain dict-backed store stands in for it in tests.
QSettings hands back a lone string for a one-item list read from an INI file; the readers
here undo that.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from maskviewer.core.mapping import InputMapping

#: how many files File → Open Recent lists
MAX_RECENT = 10


class SettingsStore(Protocol):
    """The part of ``QSettings`` used here."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...  # noqa: N802


def model_key(path: str | Path) -> str:
    """A short stable key for a model file (its resolved path hashed), for per-model settings."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in (value or [])]


class AppSettings:
    """Typed access to the app's remembered settings.

    Parameters
    ----------
    store
        A ``QSettings`` (or anything with its ``value``/``setValue``).
    """

    def __init__(self, store: SettingsStore) -> None:
        self.store = store

    # -- files -----------------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        """Recently opened images and models, newest first."""
        return _as_list(self.store.value("recent", []))

    def remember_recent(self, path: str | Path) -> list[str]:
        """Put ``path`` first in the recent files; returns the new list."""
        path = str(Path(path).resolve())
        recent = [p for p in self.recent_files() if p != path]
        recent.insert(0, path)
        recent = recent[:MAX_RECENT]
        self.store.setValue("recent", recent)
        return recent

    def last_dir(self) -> str:
        """The folder file pickers start in (the last opened file's; home at first)."""
        return str(self.store.value("last_dir", str(Path.home())))

    def remember_dir(self, path: str | Path) -> None:
        self.store.setValue("last_dir", str(Path(path).resolve().parent))

    # -- trusted code ----------------------------------------------------------------------

    def trusted(self) -> list[str]:
        """SHA-256 hashes of files the user agreed to run code from."""
        return _as_list(self.store.value("trusted_sha256", []))

    def trust(self, sha: str) -> None:
        trusted = self.trusted()
        if sha not in trusted:
            self.store.setValue("trusted_sha256", trusted + [sha])

    # -- per-model input mappings ----------------------------------------------------------

    def saved_mappings(self, model_path: str | Path) -> dict[str, InputMapping]:
        """The mappings last chosen for this model (empty when none or unreadable)."""
        from maskviewer.core.schema import SchemaError, parse_json
        from maskviewer.io.session_schema import MAPPINGS

        raw = self.store.value(f"mappings/{model_key(model_path)}")
        if not raw or not isinstance(raw, (str, bytes)):
            return {}
        try:  # an edited or damaged settings file: forget the mappings, propose new ones
            data = MAPPINGS.check(parse_json(raw), "mappings")
        except SchemaError:
            return {}
        return {k: InputMapping.from_dict(v) for k, v in data.items()}

    def save_mappings(self, model_path: str | Path, mappings: dict[str, InputMapping]) -> None:
        data = {k: m.to_dict() for k, m in mappings.items()}
        self.store.setValue(f"mappings/{model_key(model_path)}", json.dumps(data))

    # -- window layout ---------------------------------------------------------------------

    def window_layout(self) -> tuple[Any, Any]:
        """The saved ``(geometry, dock state)`` blobs, each None when absent."""
        return self.store.value("window/geometry"), self.store.value("window/state")

    def save_window_layout(self, geometry: Any, state: Any) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)
        sync = getattr(self.store, "sync", None)
        if sync is not None:
            sync()
