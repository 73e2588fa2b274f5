"""Safe mode and consent: code found in a model configuration, and custom objects run on request.

A configuration is searched for layers that carry Python code without running anything, so a
refused model can be explained; custom object files are imported (run) only with the user's
consent. Import these names from :mod:`maskviewer.inference.loading`, which re-exports them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from maskviewer.core.errors import ModelLoadError


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


def _safe_mode_scope(safe_mode: bool) -> Any:
    """A context setting Keras's thread-local safe mode to ``safe_mode`` for its duration."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a Keras without it: the explicit argument is all there is
        return contextlib.nullcontext()
    return SafeModeScope(safe_mode)


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
