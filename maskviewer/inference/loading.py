"""Loading models safely and describing them.

``.keras`` and legacy ``.h5`` files load through ``keras.saving.load_model`` with
``safe_mode`` passed explicitly on every call (Keras keeps that setting thread-local). Before
Keras sees a file, its configuration is read as plain JSON to find layers that carry Python
code, so a refused model can be explained without running anything. A SavedModel folder is a
program (its graph can hold any TF op): it loads only with consent, through
``keras.layers.TFSMLayer``, and can run but not be probed.

This module holds :func:`load_model` and is the place to import every loading name from; the
work is done in its siblings: :mod:`~maskviewer.inference.model_files` (format detection and
reading the configuration), :mod:`~maskviewer.inference.model_safety` (safe-mode checks and
custom objects) and :mod:`~maskviewer.inference.describe` (describing a loaded model).

A file is read once (:mod:`maskviewer.io.untrusted`): its safe-mode check, its hash for the
user's consent and what Keras loads (a private copy) are all the same bytes.
"""

from __future__ import annotations

import importlib.util
import io
import re
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any

from maskviewer.core.errors import ModelLoadError, UnsafeModelError
from maskviewer.core.model_info import ModelInfo, TensorInfo
from maskviewer.inference.describe import (
    LoadedModel,
    describe_model,
    layer_tree,
)
from maskviewer.inference.describe import _layer_output_shape as _layer_output_shape  # kept here
from maskviewer.inference.model_files import (
    MAX_CONFIG_BYTES,
    MODEL_SUFFIXES,
    SERVING_ENDPOINTS,
    file_sha256,
    is_savedmodel_dir,
    model_format,
    read_model_config,
    savedmodel_signatures,
    snapshot_model,
)
from maskviewer.inference.model_safety import (
    SAVEDMODEL_LIMITS,
    _safe_mode_scope,
    find_code_layers,
    load_custom_objects,
    savedmodel_message,
    unsafe_message,
)
from maskviewer.io.untrusted import (
    Snapshot,
    UntrustedFileError,
    discard_private,
    private_copy,
    private_folder,
    read_file,
    write_private,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MODEL_SUFFIXES",
    "SERVING_ENDPOINTS",
    "LoadedModel",
    "Snapshot",
    "describe_model",
    "file_sha256",
    "find_code_layers",
    "is_savedmodel_dir",
    "layer_tree",
    "load_custom_objects",
    "load_model",
    "model_format",
    "read_model_config",
    "savedmodel_info",
    "savedmodel_message",
    "savedmodel_signatures",
    "snapshot_model",
    "unsafe_message",
]


def load_model(
    source: str | Path | Snapshot,
    *,
    safe_mode: bool = True,
    custom_objects: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a model file or SavedModel folder and describe it.

    The file (or folder) is read once; safe mode is decided on those bytes and Keras loads a
    private copy of them, so a file swapped in at the path meanwhile never runs.

    Parameters
    ----------
    source : str, Path or Snapshot
        A ``.keras`` or ``.h5`` file, or a SavedModel folder; or what
        :func:`snapshot_model` read of one (its ``sha256`` is what consent was given for).
    safe_mode : bool
        Refuse models that carry code (Python in Lambda layers; any SavedModel graph). Passed
        to Keras explicitly on this thread.
    custom_objects : dict, optional
        Classes and functions from :func:`load_custom_objects`.

    Raises
    ------
    UnsafeModelError
        The model carries code and ``safe_mode`` is on; its ``sha256`` and ``path`` say which
        bytes were refused, so consent can be given for exactly those.
    ModelLoadError
        Anything else; the message says what was wrong and what to do.
    """
    snap = source if isinstance(source, Snapshot) else snapshot_model(source)
    path = snap.path
    fmt = "savedmodel" if snap.is_tree else model_format(path)
    try:
        if fmt == "savedmodel":
            if safe_mode:  # a graph can hold any TF op: nothing of it is touched before consent
                raise UnsafeModelError(savedmodel_message(path), [f"{path.name} (SavedModel graph)"])
            loaded = _load_savedmodel(snap)
        else:
            loaded = _load_keras(snap, fmt, safe_mode, custom_objects)
    except UnsafeModelError as exc:
        exc.sha256 = snap.sha256  # type: ignore[attr-defined]
        exc.path = str(path)  # type: ignore[attr-defined]
        raise
    loaded.sha256 = snap.sha256
    return loaded


def _load_keras(
    snap: Snapshot, fmt: str, safe_mode: bool, custom_objects: dict[str, Any] | None
) -> LoadedModel:
    path = snap.path
    config = read_model_config(snap)
    if safe_mode and config is not None:
        code_layers = find_code_layers(config)
        if code_layers:
            raise UnsafeModelError(unsafe_message(path, code_layers), code_layers)

    import keras

    # the package's own layers (MaskedConv2D) register themselves with Keras on import
    import maskviewer.inference.masked_conv  # noqa: F401

    try:
        # Keras lets a thread-wide enable_unsafe_deserialization() override the argument when
        # it reads a .keras file, so set this thread's setting for the call as well
        with _safe_mode_scope(safe_mode), private_copy(snap) as copy:
            model = keras.saving.load_model(
                str(copy), custom_objects=custom_objects or None, compile=False, safe_mode=safe_mode
            )
    except Exception as exc:
        raise _explain_load_error(snap, fmt, exc) from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path.name}: holds a {type(model).__name__}, not a Keras model.")
    return describe_model(model, path)


def _explain_load_error(snap: Snapshot, fmt: str, exc: Exception) -> ModelLoadError:
    path = snap.path
    text = str(exc)
    if "safe_mode" in text or "unsafe" in text.lower() and "deserializ" in text.lower():
        layers = ["TFSMLayer"] if "TFSMLayer" in text else []
        return UnsafeModelError(unsafe_message(path, layers), layers)
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text) or re.search(
        r"Unknown (?:layer|object)[^'\"]*['\"]([^'\"]+)['\"]", text
    )
    if missing:
        return ModelLoadError(
            f"{path.name} uses '{missing.group(1)}', a custom layer or function that is not "
            "defined here. Use Model → Load Custom Objects… (or --custom-objects FILE.py) to "
            "point to the Python file that defines it."
        )
    if fmt == "h5" and ("node" in text.lower() or "index" in text.lower()):
        return ModelLoadError(_legacy_h5_message(snap, text))
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ModelLoadError(f"{path.name}: could not be loaded as a Keras model: {first[:400]}")


def _legacy_h5_message(snap: Snapshot, text: str) -> str:
    """Explain a legacy .h5 whose layer graph Keras 3 cannot rebuild (keep Keras's dump out)."""
    path = snap.path
    saved_by = ""
    try:
        import h5py

        with h5py.File(io.BytesIO(snap.data), "r") as f:
            version = f.attrs.get("keras_version")
        if isinstance(version, bytes):
            version = version.decode("utf-8", "replace")
        if version:
            saved_by = f" (saved by Keras {version})"
    except Exception:  # the version is a courtesy; the explanation stands without it
        pass
    detail = re.split(
        r"(?<=\.)\s", text.strip().splitlines()[0] if text.strip() else "", maxsplit=1
    )[0]
    fallback = (
        " The tf_keras package is installed here: tf_keras.models.load_model() can read it."
        if importlib.util.find_spec("tf_keras") is not None
        else ""
    )
    return (
        f"{path.name}: Keras 3 cannot rebuild the layer graph of this legacy .h5 model"
        f"{saved_by}: {detail[:160]} Files saved by Keras 2 (TensorFlow 2.15 and older) with a "
        "model nested inside another often fail this way, because Keras 2 numbered the inner "
        "model's calls differently. Open it with the Keras 2 that saved it, save its weights "
        "(model.save_weights), rebuild the model in Keras 3 and save it as .keras."
        f"{fallback}"
    )


def _load_savedmodel(snap: Snapshot) -> LoadedModel:
    """Load a private copy of a SavedModel (only after consent: restoring it runs its graph's
    init ops). The copy lives as long as the model: a graph may read its assets lazily."""
    import keras

    path = snap.path
    base = private_folder()
    last_error: Exception | None = None
    layer = None
    try:
        copy = write_private(snap, base)
        for endpoint in SERVING_ENDPOINTS:
            try:
                layer = keras.layers.TFSMLayer(str(copy), call_endpoint=endpoint)
                break
            except Exception as exc:  # try the next endpoint name
                last_error = exc
    finally:
        if layer is None:
            discard_private(base)
    if layer is None:
        detail = str(last_error).strip().splitlines()[0][:300] if str(last_error).strip() else (
            type(last_error).__name__)
        raise ModelLoadError(
            f"{path.name}: the SavedModel could not be loaded ({detail}). It needs a "
            "'serve' or 'serving_default' signature; `maskviewer info` lists the ones it has."
        )
    fn = layer.call_endpoint_fn
    inputs: list[TensorInfo] = []
    sig = getattr(fn, "structured_input_signature", None)
    if sig is None and getattr(fn, "input_signature", None) is not None:
        sig = (tuple(fn.input_signature), {})
    keys: list[str] = []
    structure = "single"
    if sig is not None:
        args, kwargs = sig
        if kwargs:
            structure = "dict"
            for key, spec in kwargs.items():
                keys.append(key)
                inputs.append(TensorInfo(key, tuple(spec.shape.as_list()), spec.dtype.name))
        else:
            for i, spec in enumerate(args):
                name = getattr(spec, "name", None) or f"input_{i}"
                inputs.append(TensorInfo(name, tuple(spec.shape.as_list()), spec.dtype.name))
            structure = "single" if len(args) == 1 else "list"
    info = ModelInfo(
        name=path.name,
        path=str(path),
        kind="savedmodel",
        inputs=inputs,
        outputs=[],
        layers=[],
        probe_supported=False,
        note=f"{SAVEDMODEL_LIMITS} Save the model as .keras to see them.",
    )
    loaded = LoadedModel(layer, info, structure, keys)
    weakref.finalize(loaded, discard_private, base)
    return loaded


def savedmodel_info(path: str | Path) -> tuple[ModelInfo, dict[str, Any]]:
    """Describe a SavedModel folder from its ``saved_model.pb`` alone, without loading it.

    Nothing of the graph is built or run (that needs consent): the serving signature's inputs
    and outputs are read with TensorFlow's protobuf classes. Returns the description (of the
    ``serve`` or ``serving_default`` signature, else the first) and every signature as
    ``{name: {"inputs": [...], "outputs": [...]}}``.

    Raises
    ------
    ModelLoadError
        Not a SavedModel folder, or its ``saved_model.pb`` cannot be read or parsed.
    """
    path = Path(path)
    if model_format(path) != "savedmodel":
        raise ModelLoadError(f"{path.name}: not a SavedModel folder.")
    try:
        raw = read_file(path / "saved_model.pb", follow=False)
    except OSError as exc:
        raise ModelLoadError(f"{path.name}/{exc}" if isinstance(exc, UntrustedFileError)
                             else f"{path.name}/saved_model.pb: cannot be read ({exc}).") from exc
    signatures = savedmodel_signatures(raw, path.name)
    if not signatures:
        raise ModelLoadError(f"{path.name}: the SavedModel has no signature to call.")
    chosen = next((s for s in SERVING_ENDPOINTS if s in signatures), next(iter(signatures)))
    inputs, outputs = signatures[chosen]
    info = ModelInfo(
        name=path.name, path=str(path), kind="savedmodel", inputs=inputs, outputs=outputs,
        layers=[], probe_supported=False,
        note=(f"not loaded: a SavedModel is a TensorFlow program; add --trust to load it (this "
              f"runs its graph). Signature shown: {chosen!r}. {SAVEDMODEL_LIMITS}"),
    )
    listing = {k: {"inputs": [asdict(t) for t in i], "outputs": [asdict(t) for t in o]}
               for k, (i, o) in signatures.items()}
    return info, listing
