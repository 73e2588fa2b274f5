"""Loading models safely and describing them.

``.keras`` and legacy ``.h5`` files load through ``keras.saving.load_model`` with
``safe_mode`` passed explicitly on every call (Keras keeps that setting thread-local). Before
Keras sees a file, its configuration is read as plain JSON to find layers that carry Python
code, so a refused model can be explained without running anything. SavedModel folders load
through ``keras.layers.TFSMLayer`` and can run but not be probed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskviewer.core.errors import ModelLoadError, UnsafeModelError
from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo

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


# ---------------------------------------------------------------------------------------------
# Finding code in a model file without running it


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


def find_code_layers(config: Any) -> list[str]:
    """Layers in a model config that carry Python code (Lambda layers, serialised lambdas)."""
    found: list[str] = []
    # depth-first with an explicit stack: a crafted file cannot exhaust Python's recursion
    stack: list[tuple[Any, Any]] = [(config, None)]
    while stack:
        node, owner = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
            name = cfg.get("name", owner) if cfg else owner
            if cls == "Lambda":
                found.append(f"{name} (Lambda)")
            elif (cls == "__lambda__" or cls == "function" and "code" in cfg) and not any(
                f.startswith(f"{owner} (") for f in found
            ):
                found.append(f"{owner} (Python function)")
            child_owner = name if cls not in (None, "__lambda__") else owner
            stack.extend((value, child_owner) for value in reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend((value, owner) for value in reversed(node))
    return list(dict.fromkeys(found))


def unsafe_message(path: str | Path, layers: list[str]) -> str:
    listed = ", ".join(layers) if layers else "(layers not named in the file)"
    return (
        f"{Path(path).name} contains Python code: {listed}. Loading it would run that code "
        "with your permissions, so it was not loaded (safe mode). Load it only if you trust "
        "where the file comes from."
    )


# ---------------------------------------------------------------------------------------------
# Custom objects


def load_custom_objects(files: list[str | Path]) -> dict[str, Any]:
    """Import Python files (this RUNS them) and collect the Keras classes and functions they define.

    Only call this with the user's consent.
    """
    import keras

    objects: dict[str, Any] = {}
    for file in files:
        file = Path(file)
        if not file.is_file():
            raise ModelLoadError(f"{file}: custom objects file not found.")
        mod_name = f"maskviewer_custom_{hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"{file.name}: cannot be imported as a Python file.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ModelLoadError(
                f"{file.name}: running the custom objects file failed: {type(exc).__name__}: {exc}"
            ) from exc
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, type) and issubclass(
                value, keras.layers.Layer | keras.losses.Loss | keras.metrics.Metric
            ):
                objects[attr] = value
                objects[keras.saving.get_registered_name(value)] = value
            elif callable(value) and getattr(value, "__module__", None) == mod_name:
                objects[attr] = value
    return objects


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedModel:
    """A model on the inference thread and what the GUI may know about it."""

    model: Any
    info: ModelInfo
    input_structure: str  # "single", "list" or "dict"
    input_keys: list[str] = field(default_factory=list)
    output_keys: list[str] = field(default_factory=list)


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


def _safe_mode_scope(safe_mode: bool) -> Any:
    """A context setting Keras's thread-local safe mode to ``safe_mode`` for its duration."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a Keras without it: the explicit argument is all there is
        return contextlib.nullcontext()
    return SafeModeScope(safe_mode)


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


def _shape(tensor_or_shape: Any) -> tuple | None:
    shape = getattr(tensor_or_shape, "shape", tensor_or_shape)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        return None


def _layer_output_shape(layer: Any) -> tuple | None:
    try:
        out = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(out, list | tuple):
        shapes = [_shape(o) for o in out]
        return tuple(shapes) if all(s is not None for s in shapes) else None
    if isinstance(out, dict):
        shapes = [_shape(o) for o in out.values()]
        return tuple(shapes) if all(s is not None for s in shapes) else None
    return _shape(out)


def _producer_name(tensor: Any) -> str:
    """The name of the layer that produced a symbolic tensor (its own name otherwise)."""
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None) or (history[0] if history else None)
    return str(getattr(op, "name", None) or tensor.name)


def _count(layer: Any, trainable: bool | None = None) -> int:
    try:
        weights = (
            layer.weights
            if trainable is None
            else (layer.trainable_weights if trainable else layer.non_trainable_weights)
        )
        total = 0
        for w in weights:
            n = 1
            for d in w.shape:
                n *= int(d)
            total += n
        return total
    except Exception:  # an unbuilt layer has no weights to count
        return 0


def layer_tree(layers: list[Any], prefix: str = "") -> list[LayerInfo]:
    """Describe ``layers`` (nested models recursively) as :class:`LayerInfo` nodes."""
    import keras

    nodes = []
    for layer in layers:
        path = f"{prefix}{layer.name}"
        children = []
        if isinstance(layer, keras.Model) and getattr(layer, "layers", None):
            children = layer_tree(layer.layers, prefix=f"{path}/")
        nodes.append(
            LayerInfo(
                name=layer.name,
                path=path,
                class_name=type(layer).__name__,
                output_shape=_layer_output_shape(layer),
                params=_count(layer),
                trainable_params=_count(layer, True),
                children=children,
            )
        )
    return nodes


def describe_model(model: Any, path: str | Path) -> LoadedModel:
    """Build the :class:`LoadedModel` for a Keras model (functional, Sequential or sub-classed)."""
    import keras

    path = Path(path)
    if isinstance(model, keras.Sequential):
        kind = "sequential"
    elif hasattr(model, "_inputs_struct") and getattr(model, "_is_graph_network", True) and (
        type(model).__name__ == "Functional" or getattr(model, "inputs", None)
    ):
        kind = "functional"
    else:
        kind = "subclassed"

    structure, keys, inputs = "single", [], []
    model_inputs = getattr(model, "inputs", None) if kind != "subclassed" else None
    if model_inputs:
        struct = getattr(model, "_inputs_struct", None)
        if isinstance(struct, dict):
            structure = "dict"
            keys = list(struct.keys())
            inputs = [TensorInfo(k, _shape(struct[k]), str(struct[k].dtype)) for k in keys]
        else:
            structure = "single" if len(model_inputs) == 1 else "list"
            keys = [t.name for t in model_inputs]
            inputs = [TensorInfo(t.name, _shape(t), str(t.dtype)) for t in model_inputs]
    else:
        build = model.get_build_config() if hasattr(model, "get_build_config") else None
        shape = (build or {}).get("input_shape")
        if shape is None:
            raise ModelLoadError(
                f"{path.name}: a sub-classed model without a recorded input shape; build it "
                "(call it once) before saving so its input shape is known."
            )
        def unbatched(s: Any) -> tuple:  # recorded with the batch it was built on
            return (None, *tuple(s)[1:])

        if isinstance(shape, dict):
            structure, keys = "dict", list(shape)
            inputs = [TensorInfo(k, unbatched(shape[k])) for k in keys]
        elif shape and isinstance(shape[0], list | tuple):
            structure = "list"
            keys = [f"input_{i}" for i in range(len(shape))]
            inputs = [TensorInfo(k, unbatched(s)) for k, s in zip(keys, shape, strict=True)]
        else:
            keys = ["input"]
            inputs = [TensorInfo("input", unbatched(shape))]

    outputs: list[TensorInfo] = []
    out_keys: list[str] = []
    model_outputs = getattr(model, "outputs", None) if kind != "subclassed" else None
    if model_outputs:
        out_struct = getattr(model, "_outputs_struct", None)
        if isinstance(out_struct, dict):
            out_keys = list(out_struct.keys())
            outputs = [TensorInfo(k, _shape(out_struct[k])) for k in out_keys]
        else:
            names = list(getattr(model, "output_names", None) or [])
            if len(names) != len(model_outputs) or any(n.startswith("keras_tensor") for n in names):
                names = [_producer_name(t) for t in model_outputs]
            out_keys = names
            outputs = [TensorInfo(n, _shape(t)) for n, t in zip(names, model_outputs, strict=True)]

    first = model.layers[0] if getattr(model, "layers", None) else None
    expects_0_255 = False
    if first is not None and type(first).__name__ == "Rescaling":
        scale = first.get_config().get("scale")
        expects_0_255 = isinstance(scale, float) and abs(scale - 1 / 255) < 1e-6

    info = ModelInfo(
        name=path.name,
        path=str(path),
        kind=kind,
        inputs=inputs,
        outputs=outputs,
        layers=layer_tree(getattr(model, "layers", [])),
        total_params=_count(model),
        expects_0_255=expects_0_255,
        note=(
            "Sub-classed model: layer outputs are captured during an eager call."
            if kind == "subclassed"
            else ""
        ),
    )
    return LoadedModel(model, info, structure, keys, out_keys)
