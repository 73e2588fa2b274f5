"""Kernel masks: multiply a Conv2D kernel by an NxN pattern in a copy of the loaded model.

The loaded model and its file are never changed: the model is cloned
(``keras.models.clone_model`` + ``set_weights``), the copy's kernel is masked, and the model
host runs the copy until :func:`reset_kernel_mask`. Everything here runs on the inference
thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.inference.runner import ModelHost

_STATE_ATTR = "_maskviewer_kernel_mask"
CONV_CLASSES = ("Conv2D", "MaskedConv2D")


@dataclasses.dataclass
class KernelMaskState:
    """What the host ran before a kernel mask was applied, and what is applied."""

    original: Any  # the LoadedModel as loaded
    masked: Any  # the LoadedModel running the copy
    layer_path: str
    mask: np.ndarray


def find_layer(model: Any, path: str) -> Any:
    """The layer at ``path`` (``"outer/inner/conv"`` for nested models)."""
    layer = model
    for part in path.split("/"):
        try:
            layer = layer.get_layer(part)
        except (ValueError, AttributeError) as exc:
            raise MaskviewerError(f"The model has no layer {path!r}.") from exc
    return layer


def conv_layer_paths(model: Any, prefix: str = "") -> list[str]:
    """Paths of the Conv2D layers, nested models included, in model order."""
    import keras

    out = []
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        if type(layer).__name__ in CONV_CLASSES:
            out.append(path)
        elif isinstance(layer, keras.Model):
            out.extend(conv_layer_paths(layer, f"{path}/"))
    return out


def kernel_weights(model: Any, path: str) -> np.ndarray:
    """The kernel of the Conv2D at ``path``: ``(kh, kw, in_channels, out_channels)``."""
    layer = find_layer(model, path)
    if type(layer).__name__ not in CONV_CLASSES:
        raise MaskviewerError(
            f"Layer {path!r} is a {type(layer).__name__}; kernel masks apply to Conv2D layers."
        )
    return np.asarray(layer.kernel.numpy() if hasattr(layer.kernel, "numpy") else layer.kernel)


def _check_mask(kernel: np.ndarray, mask: np.ndarray, path: str) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != kernel.shape[:2]:
        raise MaskviewerError(
            f"The kernel mask is {mask.shape[0]}×{mask.shape[1]} but layer {path!r} has "
            f"{kernel.shape[0]}×{kernel.shape[1]} kernels."
        )
    return mask


def masked_copy(model: Any, path: str, mask: np.ndarray) -> Any:
    """A copy of ``model`` whose Conv2D at ``path`` has its kernel multiplied by ``mask``.

    Raises
    ------
    MaskviewerError
        For sub-classed models (they cannot be cloned from their configuration), a missing
        layer, a layer that is not a Conv2D, or a mask of the wrong size.
    """
    import keras

    kernel = kernel_weights(model, path)
    mask = _check_mask(kernel, mask, path)
    try:
        copy = keras.models.clone_model(model)
    except Exception as exc:
        raise MaskviewerError(
            "Kernel masks need a copy of the model, and this model cannot be cloned "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Sub-classed models cannot; save the model as a functional or Sequential model."
        ) from exc
    copy.set_weights(model.get_weights())
    layer = find_layer(copy, path)
    layer.kernel.assign(kernel * mask[:, :, None, None])
    return copy


def _state(host: ModelHost) -> KernelMaskState | None:
    state = getattr(host, _STATE_ATTR, None)
    if state is not None and host.loaded is not state.masked:
        state = None  # another model was loaded since: nothing of ours is running
        setattr(host, _STATE_ATTR, None)
    return state


def apply_kernel_mask(host: ModelHost, path: str, mask: np.ndarray) -> np.ndarray:
    """Run a copy of the host's model with the kernel at ``path`` masked; returns that kernel.

    A mask applied earlier is replaced (the copy is made from the model as loaded).
    """
    if host.loaded is None:
        raise MaskviewerError("Open a model first.")
    if host.loaded.info.kind in ("savedmodel", "subclassed"):
        raise MaskviewerError(
            f"Kernel masks need a functional or Sequential Keras model; this one is "
            f"{host.loaded.info.kind}."
        )
    state = _state(host)
    original = state.original if state is not None else host.loaded
    copy = masked_copy(original.model, path, mask)
    masked = dataclasses.replace(original, model=copy)
    host.loaded = masked
    setattr(host, _STATE_ATTR, KernelMaskState(original, masked, path, np.asarray(mask, np.float32)))
    return kernel_weights(copy, path)


def reset_kernel_mask(host: ModelHost) -> bool:
    """Run the model as loaded again; False when no kernel mask was applied."""
    state = _state(host)
    if state is None:
        return False
    host.loaded = state.original
    setattr(host, _STATE_ATTR, None)
    return True


def applied_kernel_mask(host: ModelHost) -> tuple[str, np.ndarray] | None:
    """``(layer path, mask)`` of the kernel mask the host runs now, if any."""
    state = _state(host)
    return None if state is None else (state.layer_path, state.mask)
