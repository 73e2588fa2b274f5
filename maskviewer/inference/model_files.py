"""Model files on disk: which format a path holds, its fingerprint, and its configuration as JSON.

Everything here reads files without Keras, so a model can be recognised (and its configuration
checked for code) before anything in it runs. Import these names from
:mod:`maskviewer.inference.loading`, which re-exports them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from maskviewer.core.errors import ModelLoadError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: A model's architecture JSON larger than this is refused unread (a zip bomb in config.json).
MAX_CONFIG_BYTES = 64 * 2**20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (a folder: of its files' names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def is_savedmodel_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "saved_model.pb").exists()


def model_format(path: str | Path) -> str:
    """``"keras"``, ``"h5"`` or ``"savedmodel"``; raises :class:`ModelLoadError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder.")
    if path.is_dir():
        if is_savedmodel_dir(path):
            return "savedmodel"
        raise ModelLoadError(
            f"{path.name}: this folder is not a SavedModel (no saved_model.pb inside)."
        )
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelLoadError(
                f"{path.name}: not a Keras model file (a .keras file is a zip archive, this "
                "one is not; it may be corrupt or truncated)."
            )
        return "keras"
    if suffix in (".h5", ".hdf5"):
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
        except OSError as exc:
            raise ModelLoadError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from exc
        if head != b"\x89HDF\r\n\x1a\n":
            raise ModelLoadError(f"{path.name}: not an HDF5 file; it may be corrupt or not a model.")
        return "h5"
    raise ModelLoadError(
        f"{path.name}: not a model file. Open a .keras or .h5 file, or a SavedModel folder."
    )


def read_model_config(path: str | Path) -> dict | None:
    """The model's architecture as plain JSON, read without Keras (None if absent)."""
    fmt = model_format(path)
    name = Path(path).name
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as zf:
                with zf.open("config.json") as fh:
                    # read no more than the limit, whatever the archive claims the size is
                    raw = fh.read(MAX_CONFIG_BYTES + 1)
        elif fmt == "h5":
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
        else:
            return None
        if raw is None:
            return None
        if not isinstance(raw, bytes | str):
            raise ValueError(f"the configuration is stored as {type(raw).__name__}, not text")
        if len(raw) > MAX_CONFIG_BYTES:
            raise ModelLoadError(
                f"{name}: the model configuration is larger than {MAX_CONFIG_BYTES >> 20} MiB; "
                "this is not a model file this viewer opens."
            )
        return json.loads(raw)
    except ModelLoadError:
        raise
    except Exception as exc:  # zip, HDF5, text and JSON errors (incl. too deep nesting) alike
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"{name}: the model configuration cannot be read ({detail}). The file may be "
            "corrupt or not a Keras model."
        ) from exc
