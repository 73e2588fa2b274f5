"""What the app remembers between runs: recent files, last folder, trusted code, mappings, layout.

:class:`AppSettings` wraps a ``QSettings`` but needs only its ``value``/``setValue``/``sync``
methods, so it imports no Qt and a plain dict-backed store stands in for it in tests.
QSettings hands back a lone string for a one-item list read from an INI file; the readers
here undo that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any, Protocol

from maskviewer.core.mapping import InputMapping
from maskviewer.io.untrusted import create_secret, read_secret

#: how many files File → Open Recent lists
MAX_RECENT = 10
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SettingsStore(Protocol):
    """The part of ``QSettings`` used here."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...  # noqa: N802


def model_key(path: str | Path) -> str:
    """A short stable key for a model file (its resolved path hashed), for per-model settings."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def trust_key_path(store: Any) -> Path | None:
    """Where the trust list's signing key lives: beside the settings file (``<name>-trust.key``),
    or None for a store without a file (tests' dict stores: a key per run then)."""
    file_name = getattr(store, "fileName", None)
    name = file_name() if callable(file_name) else None
    return Path(name).with_name(f"{Path(name).stem}-trust.key") if name else None


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in (value or [])]


class AppSettings:
    """Typed access to the app's remembered settings.

    Parameters
    ----------
    store
        A ``QSettings`` (or anything with its ``value``/``setValue``).
    """

    def __init__(self, store: SettingsStore, trust_key: Path | None = None) -> None:
        self.store = store
        self._key_path = trust_key or trust_key_path(store)
        self._key: bytes | None = None

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
    # Each entry is "sha256:hmac", signed with a random per-user key kept in its own 0600 file
    # beside the settings (never in them), so a hash list written into the settings file by
    # anything else (another program, a synced copy, a model file that could write files) is
    # not trust. The limit, honestly: code that already runs as this user after consent can
    # read the key and sign what it likes; this guards the list, not a compromised account.

    def trusted(self) -> list[str]:
        """SHA-256 hashes of files the user agreed to run code from (signed entries only)."""
        entries = _as_list(self.store.value("trusted_sha256", []))
        return list(dict.fromkeys(e.partition(":")[0] for e in entries if self._verified(e)))

    def trust(self, sha: str) -> None:
        """Remember the user's yes for the file whose bytes hash to ``sha``."""
        if not _SHA256.fullmatch(sha):
            raise ValueError(f"not a SHA-256 hex digest: {sha!r}")
        if sha not in self.trusted():
            signed = [e for e in _as_list(self.store.value("trusted_sha256", []))
                      if self._verified(e)]
            self.store.setValue("trusted_sha256", signed + [f"{sha}:{self._sign(sha)}"])

    def _verified(self, entry: str) -> bool:
        sha, _, mac = entry.partition(":")
        return bool(_SHA256.fullmatch(sha)) and hmac.compare_digest(mac, self._sign(sha))

    def _sign(self, sha: str) -> str:
        return hmac.new(self._trust_key(), b"maskviewer-trust-v1:" + sha.encode(),
                        hashlib.sha256).hexdigest()

    def _trust_key(self) -> bytes:
        """The signing key: read from (or first made in) its file; without a usable file, a key
        for this run only (trust given now lasts until the app closes)."""
        if self._key is None:
            key = None
            if self._key_path is not None:
                key = read_secret(self._key_path)
                if key is None and not self._key_path.exists():
                    try:
                        create_secret(self._key_path, secrets.token_hex(32).encode())
                    except OSError:
                        pass
                    key = read_secret(self._key_path)
            self._key = key if key and len(key) >= 32 else secrets.token_bytes(32)
        return self._key

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

    # -- per-model output kinds ------------------------------------------------------------

    def saved_kinds(self, model_path: str | Path) -> dict[str, str]:
        """The output kinds the user chose for this model (output name -> kind; empty when none
        or unreadable)."""
        from maskviewer.core.output_kinds import KINDS
        from maskviewer.core.schema import Map, SchemaError, Str, parse_json

        raw = self.store.value(f"output_kinds/{model_key(model_path)}")
        if not raw or not isinstance(raw, (str, bytes)):
            return {}
        try:
            data = Map(Str(max_len=64), 10_000, what="output name -> kind").check(parse_json(raw), "kinds")
        except SchemaError:
            return {}
        return {k: v for k, v in data.items() if v in KINDS}

    def save_kinds(self, model_path: str | Path, kinds: dict[str, str]) -> None:
        self.store.setValue(f"output_kinds/{model_key(model_path)}", json.dumps(kinds))

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
