"""Safe mode and consent: code found in a model configuration, and custom objects run on request.

A configuration is searched for layers that carry Python code without running anything, so a
refused model can be explained; custom object files are imported (run) only with the user's
consent. Import these names from :mod:`maskviewer.inference.loading`, which re-exports them.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import types
from pathlib import Path
from typing import Any

from maskviewer.core.errors import ModelLoadError
from maskviewer.io.untrusted import MAX_SOURCE_BYTES, read_file


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
            elif cls == "TFSMLayer":
                found.append(f"{name} (TFSMLayer: a SavedModel graph)")
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
    """Why a model holding code was not loaded, naming the layers where the file names them."""
    name = Path(path).name
    if any("TFSMLayer" in layer for layer in layers):
        return (
            f"{name} wraps a SavedModel ({', '.join(layers)}): a TensorFlow graph that can run "
            "any operation, reading and writing files with your permissions, so it was not "
            f"loaded (safe mode). Load it only if you trust where the file comes from. "
            f"{SAVEDMODEL_LIMITS}"
        )
    listed = (
        f"contains Python code: {', '.join(layers)}"
        if layers
        else "holds code that Keras will not load in safe mode"
    )
    return (
        f"{name} {listed}. Loading it would run that code with your permissions, so it was "
        "not loaded (safe mode). Load it only if you trust where the file comes from."
    )


#: what a SavedModel can and cannot do here, said wherever one is refused or loaded
SAVEDMODEL_LIMITS = (
    "SavedModels run for inference only: their layers cannot be probed, so activations and "
    "Grad-CAM are not available for them."
)


def savedmodel_message(path: str | Path) -> str:
    """Why a SavedModel folder is not loaded without consent."""
    return (
        f"{Path(path).name} is a SavedModel: a TensorFlow program whose graph can run any "
        "operation, reading and writing files with your permissions, so it was not loaded. "
        f"Load it only if you trust where it comes from. {SAVEDMODEL_LIMITS}"
    )


def _safe_mode_scope(safe_mode: bool) -> Any:
    """A context setting Keras's thread-local safe mode to ``safe_mode`` for its duration."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a Keras without it: the explicit argument is all there is
        return contextlib.nullcontext()
    return SafeModeScope(safe_mode)


# ---------------------------------------------------------------------------------------------
# Custom objects


def load_custom_objects(
    files: list[str | Path], expected_sha256: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run Python files and collect the Keras classes and functions they define.

    Each file is read once and the bytes read are what runs (compiled into a fresh module), so
    a file changed after the user agreed cannot slip in. Only call this with the user's consent.

    Parameters
    ----------
    files : list of str or Path
        The custom-objects files.
    expected_sha256 : dict, optional
        ``{str(file): sha256}`` the user agreed to; a file whose bytes hash otherwise is
        refused unrun. None (``--trust``) runs what is there.

    Raises
    ------
    ModelLoadError
        A file is missing, changed since consent, not Python, or failed while running.
    """
    import keras

    objects: dict[str, Any] = {}
    for file in files:
        file = Path(file)
        try:
            data = read_file(file, MAX_SOURCE_BYTES)
        except OSError as exc:
            raise ModelLoadError(f"{file}: custom objects file cannot be read: {exc}") from exc
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256.get(str(file)) != sha:
            raise ModelLoadError(
                f"{file.name}: the custom objects file changed after you agreed to run it, so it "
                "was not run. Open the model again to be asked about the file as it is now."
            )
        module = _run_source(file, data, sha)
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, type) and issubclass(
                value, keras.layers.Layer | keras.losses.Loss | keras.metrics.Metric
            ):
                objects[attr] = value
                objects[keras.saving.get_registered_name(value)] = value
            elif callable(value) and getattr(value, "__module__", None) == module.__name__:
                objects[attr] = value
    return objects


def _run_source(file: Path, data: bytes, sha: str) -> types.ModuleType:
    """Compile and run ``data`` (the bytes hashed) as a fresh module named after its hash."""
    mod_name = f"maskviewer_custom_{sha[:16]}"
    module = types.ModuleType(mod_name)
    module.__file__ = str(file)
    # registered while it runs: decorators and dataclasses look their module up by name
    sys.modules[mod_name] = module
    try:
        code = compile(data, str(file), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the user agreed to run exactly these bytes
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise ModelLoadError(
            f"{file.name}: running the custom objects file failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module
