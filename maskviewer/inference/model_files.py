"""Model files on disk: which format a path holds, its fingerprint, and its configuration as JSON.

Everything here reads files without Keras, so a model can be recognised (and its configuration
checked for code) before anything in it runs. Import these names from
:mod:`maskviewer.inference.loading`, which re-exports them.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from maskviewer.core.errors import ModelLoadError
from maskviewer.core.model_info import TensorInfo
from maskviewer.io.untrusted import Snapshot, UntrustedFileError, snapshot_file, snapshot_tree

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: A model's architecture JSON larger than this is refused unread (a zip bomb in config.json).
MAX_CONFIG_BYTES = 64 * 2**20


def snapshot_model(path: str | Path) -> Snapshot:
    """Read a model file or SavedModel folder once (see :mod:`maskviewer.io.untrusted`).

    What is decided about the model (its format, its configuration, its hash for consent) is
    decided on these bytes, and these bytes are what is loaded.

    Raises
    ------
    ModelLoadError
        Not a model, not a regular file, too large, or unreadable.
    """
    fmt = model_format(path)
    try:
        snap = snapshot_tree(path) if fmt == "savedmodel" else snapshot_file(path)
    except OSError as exc:
        raise ModelLoadError(str(exc) if isinstance(exc, UntrustedFileError) else
                             f"{Path(path).name}: cannot be read ({exc.strerror or exc}).") from exc
    if fmt != "savedmodel":
        _check_magic(Path(path).name, fmt, snap.data)
    elif snap.get("saved_model.pb") is None:
        raise ModelLoadError(f"{Path(path).name}: saved_model.pb is not a regular file.")
    return snap


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a model file (a SavedModel folder: of its sorted relative paths and bytes)."""
    path = Path(path)
    try:
        snap = snapshot_tree(path) if path.is_dir() else snapshot_file(path)
    except UntrustedFileError as exc:
        raise ModelLoadError(str(exc)) from exc
    return snap.sha256


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
        return "keras"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    raise ModelLoadError(
        f"{path.name}: not a model file. Open a .keras or .h5 file, or a SavedModel folder."
    )


def _check_magic(name: str, fmt: str, data: bytes) -> None:
    if fmt == "keras" and not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelLoadError(
            f"{name}: not a Keras model file (a .keras file is a zip archive, this "
            "one is not; it may be corrupt or truncated)."
        )
    if fmt == "h5" and data[:8] != b"\x89HDF\r\n\x1a\n":
        raise ModelLoadError(f"{name}: not an HDF5 file; it may be corrupt or not a model.")


def read_model_config(source: str | Path | Snapshot) -> dict | None:
    """The model's architecture as plain JSON, read without Keras (None if absent).

    ``source`` is a path or, to decide on the bytes that will be loaded, a :class:`Snapshot`.
    """
    snap = source if isinstance(source, Snapshot) else snapshot_model(source)
    fmt = model_format(snap.path) if not snap.is_tree else "savedmodel"
    name = snap.path.name
    try:
        if fmt == "keras":
            with zipfile.ZipFile(io.BytesIO(snap.data)) as zf:
                with zf.open("config.json") as fh:
                    # read no more than the limit, whatever the archive claims the size is
                    raw = fh.read(MAX_CONFIG_BYTES + 1)
        elif fmt == "h5":
            from maskviewer.inference.h5_check import read_h5_config

            # in a child process: HDF5 can crash the process on a malformed file
            raw = read_h5_config(snap.data, name)
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


# ---------------------------------------------------------------------------------------------
# SavedModel signatures, read from saved_model.pb without loading or running the graph

#: the signature a SavedModel is run through, in order of preference (as TFSMLayer is called)
SERVING_ENDPOINTS = ("serve", "serving_default")


def savedmodel_signatures(
    raw: bytes | None, name: str
) -> dict[str, tuple[list[TensorInfo], list[TensorInfo]]]:
    """The signatures of a SavedModel as ``{name: (inputs, outputs)}``, parsed from the bytes
    of its ``saved_model.pb`` with TensorFlow's protobuf classes only: no graph is built or run.

    Raises
    ------
    ModelLoadError
        ``saved_model.pb`` is not a SavedModel protobuf (truncated, garbage) or has no graph.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        if raw is None:
            raise DecodeError("missing")
        proto.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{name}: saved_model.pb cannot be read as a SavedModel ({str(exc)[:120] or 'corrupt'}); "
            "the folder may be truncated or not a SavedModel."
        ) from exc
    if not proto.meta_graphs:
        raise ModelLoadError(f"{name}: saved_model.pb holds no graph; it may be truncated.")
    graph = next((m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags),
                 proto.meta_graphs[0])
    signatures = {}
    for key, sig in sorted(graph.signature_def.items()):
        if key.startswith("__"):  # TF's own init op, not something to call
            continue
        signatures[key] = (_tensor_infos(sig.inputs), _tensor_infos(sig.outputs))
    return signatures


def _tensor_infos(tensors) -> list[TensorInfo]:
    from tensorflow.core.framework import types_pb2

    out = []
    for key, t in sorted(tensors.items()):
        dims = () if t.tensor_shape.unknown_rank else tuple(
            None if d.size < 0 else int(d.size) for d in t.tensor_shape.dim
        )
        try:
            dtype = types_pb2.DataType.Name(t.dtype)
        except ValueError:  # a number no TensorFlow type has: say so rather than fail
            dtype = f"DT_TYPE_{t.dtype}"
        dtype = _DTYPES.get(dtype, dtype.removeprefix("DT_").lower())
        out.append(TensorInfo(key, dims, dtype))
    return out


_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
           "DT_BFLOAT16": "bfloat16", "DT_STRING": "string", "DT_BOOL": "bool"}
