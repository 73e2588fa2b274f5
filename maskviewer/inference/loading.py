"""Loading models safely and describing them.

``.keras`` and legacy ``.h5`` files load through ``keras.saving.load_model`` with
``safe_mode`` passed explicitly on every call (Keras keeps that setting thread-local). Before
Keras sees a file, its configuration is read as plain JSON to find layers that carry Python
code, so a refused model can be explained without running anything. SavedModel folders load
through ``keras.layers.TFSMLayer`` and can run but not be probed.

This module holds :func:`load_model` and is the place to import every loading name from; the
work is done in its siblings: :mod:`~maskviewer.inference.model_files` (format detection and
reading the configuration), :mod:`~maskviewer.inference.model_safety` (safe-mode checks and
custom objects) and :mod:`~maskviewer.inference.describe` (describing a loaded model).
"""

from __future__ import annotations

import importlib.util
import re
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
    file_sha256,
    is_savedmodel_dir,
    model_format,
    read_model_config,
)
from maskviewer.inference.model_safety import (
    _safe_mode_scope,
    find_code_layers,
    load_custom_objects,
    unsafe_message,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MODEL_SUFFIXES",
    "LoadedModel",
    "describe_model",
    "file_sha256",
    "find_code_layers",
    "is_savedmodel_dir",
    "layer_tree",
    "load_custom_objects",
    "load_model",
    "model_format",
    "read_model_config",
    "unsafe_message",
]


def load_model(
    path: str | Path,
    *,
    safe_mode: bool = True,
    custom_objects: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load a model file or SavedModel folder and describe it.

    Parameters
    ----------
    path : str or Path
        A ``.keras`` or ``.h5`` file, or a SavedModel folder.
    safe_mode : bool
        Refuse models that carry Python code. Passed to Keras explicitly on this thread.
    custom_objects : dict, optional
        Classes and functions from :func:`load_custom_objects`.

    Raises
    ------
    UnsafeModelError
        The model carries code and ``safe_mode`` is on.
    ModelLoadError
        Anything else; the message says what was wrong and what to do.
    """
    path = Path(path)
    fmt = model_format(path)
    if fmt == "savedmodel":
        return _load_savedmodel(path)

    config = read_model_config(path)
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
        with _safe_mode_scope(safe_mode):
            model = keras.saving.load_model(
                str(path), custom_objects=custom_objects or None, compile=False, safe_mode=safe_mode
            )
    except Exception as exc:
        raise _explain_load_error(path, fmt, exc) from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path.name}: holds a {type(model).__name__}, not a Keras model.")
    return describe_model(model, path)


def _explain_load_error(path: Path, fmt: str, exc: Exception) -> ModelLoadError:
    text = str(exc)
    if "safe_mode" in text or "unsafe" in text.lower() and "deserializ" in text.lower():
        return UnsafeModelError(unsafe_message(path, []), [])
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
        return ModelLoadError(_legacy_h5_message(path, text))
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ModelLoadError(f"{path.name}: could not be loaded as a Keras model: {first[:400]}")


def _legacy_h5_message(path: Path, text: str) -> str:
    """Explain a legacy .h5 whose layer graph Keras 3 cannot rebuild (keep Keras's dump out)."""
    saved_by = ""
    try:
        import h5py

        with h5py.File(path, "r") as f:
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


def _load_savedmodel(path: Path) -> LoadedModel:
    import keras

    last_error: Exception | None = None
    layer = None
    for endpoint in ("serve", "serving_default"):
        try:
            layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
            break
        except Exception as exc:  # try the next endpoint name
            last_error = exc
    if layer is None:
        raise ModelLoadError(
            f"{path.name}: the SavedModel could not be loaded ({last_error}). It needs a "
            "'serve' or 'serving_default' signature."
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
        note=(
            "SavedModel loaded for inference only (TFSMLayer): its layers cannot be probed, so "
            "activations and Grad-CAM are not available. Save the model as .keras to see them."
        ),
    )
    return LoadedModel(layer, info, structure, keys)
