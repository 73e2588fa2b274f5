"""One input of a model's packed inputs: found, replaced, or the others transformed.

Packed inputs are what the model's call takes: one array, a list (or tuple) or a dict of
arrays, batch axis first. The input-space attribution methods differentiate with respect to
one of them (and Score-CAM masks one); the others ride along, repeated to the batch's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maskviewer.inference.reduce import ProbeError

#: ``skip`` of :func:`map_parts` when every part is transformed
EVERY = object()


def input_part(inputs: Any, wanted: str | int | None = None) -> tuple[Any, Any]:
    """``(key, tensor)``: the input named (dict key) or numbered (list index) ``wanted``, else
    the first of rank 4 (an image), else the first; ``key`` is None for a single array."""
    if isinstance(inputs, dict):
        keys = list(inputs)
    elif isinstance(inputs, list | tuple):
        keys = list(range(len(inputs)))
    else:
        if wanted not in (None, 0):
            raise ProbeError(f"The model has one input; there is no input {wanted!r}.")
        return None, inputs
    if wanted is not None:
        if wanted not in keys:
            names = ", ".join(str(k) for k in keys)
            raise ProbeError(f"The model has no input {wanted!r}; its inputs are {names}.")
        return wanted, inputs[wanted]
    images = [k for k in keys if len(getattr(inputs[k], "shape", ())) == 4]
    key = images[0] if images else keys[0]
    return key, inputs[key]


def replace_part(inputs: Any, key: Any, value: Any) -> Any:
    """``inputs`` with the part at ``key`` (None: the single array) replaced by ``value``."""
    if key is None and not isinstance(inputs, dict | list | tuple):
        return value
    if isinstance(inputs, dict):
        return {k: (value if k == key else v) for k, v in inputs.items()}
    out = [value if i == key else v for i, v in enumerate(inputs)]
    return tuple(out) if isinstance(inputs, tuple) else out


def map_parts(inputs: Any, fn: Callable[[Any], Any], skip: Any = EVERY) -> Any:
    """``fn`` applied to every part but the one at ``skip`` (every part by default)."""
    if isinstance(inputs, dict):
        return {k: (v if k == skip else fn(v)) for k, v in inputs.items()}
    if isinstance(inputs, list | tuple):
        out = [v if i == skip else fn(v) for i, v in enumerate(inputs)]
        return tuple(out) if isinstance(inputs, tuple) else out
    return inputs if skip is None else fn(inputs)


def packed_key(loaded: Any, name: str | None) -> Any:
    """The key of model input ``name`` in what ``ModelHost.pack_inputs`` makes (a dict key or a
    list index), or None (a single array, or no such input: the first image input is used)."""
    names = [t.name for t in loaded.info.inputs]
    if name not in names or loaded.input_structure not in ("dict", "list"):
        return None
    i = names.index(name)
    return loaded.input_keys[i] if loaded.input_structure == "dict" else i
