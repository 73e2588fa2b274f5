"""Warming a loaded model up: sample inputs of a size the model accepts, and what a first run tells.

A model whose input has no fixed height or width (``(None, None, 3)``) accepts only sizes its
strides and VALID kernels leave at least one pixel of (InceptionV3: 75). The smallest such size
is found on symbolic tensors (no computation, milliseconds) before anything runs, so a model
is never refused because a warm-up input was too small. A warm-up that fails anyway is skipped:
the outputs are then learned on the first real call.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.model_info import TensorInfo

log = logging.getLogger(__name__)

#: the size tried first for a ``None`` spatial dim (cheap, and enough for most models)
FIRST_SIZE = 32
#: no model input is searched beyond this side
MAX_SIZE = 4096
_DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint8")


def _shape(spec: TensorInfo, size: int) -> list[int]:
    """The batch-1 shape of ``spec`` with every unknown dim set to ``size``."""
    return [1] + [size if d is None else int(d) for d in spec.shape[1:]]


def _has_free_dims(loaded: Any) -> bool:
    return any(d is None for spec in loaded.info.inputs for d in spec.shape[1:])


def _accepts(loaded: Any, pack: Any, size: int) -> bool:
    """Whether the model's symbolic call accepts inputs with unknown dims set to ``size``."""
    import keras

    specs = {
        spec.name: keras.KerasTensor(_shape(spec, size), dtype=_dtype(spec)) for spec in loaded.info.inputs
    }
    try:
        loaded.model.compute_output_spec(pack(specs, loaded))
    except Exception:  # noqa: BLE001 - any failure of the symbolic call means "too small"
        return False
    return True


def smallest_size(loaded: Any, pack: Any) -> int:
    """The size used for unknown input dims: :data:`FIRST_SIZE` when the model accepts it,
    otherwise the smallest larger size it accepts (doubling, then bisection).

    Parameters
    ----------
    loaded : LoadedModel
    pack : callable
        ``pack(arrays, loaded)``: arranges named inputs as the model's call expects them.

    Returns
    -------
    int
        :data:`FIRST_SIZE` also when no size up to :data:`MAX_SIZE` is accepted symbolically
        (e.g. a model that cannot be traced): the warm-up then decides.
    """
    if not _has_free_dims(loaded) or not hasattr(loaded.model, "compute_output_spec"):
        return FIRST_SIZE
    if loaded.info.kind == "savedmodel" or _accepts(loaded, pack, FIRST_SIZE):
        return FIRST_SIZE
    lo, hi = FIRST_SIZE, FIRST_SIZE * 2
    while not _accepts(loaded, pack, hi):
        lo, hi = hi, hi * 2
        if hi > MAX_SIZE:
            return FIRST_SIZE
    while hi - lo > 1:  # lo is refused, hi accepted
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _accepts(loaded, pack, mid) else (mid, hi)
    return hi


def _dtype(spec: TensorInfo) -> str:
    return spec.dtype if spec.dtype in _DTYPES else "float32"


def sample_inputs(loaded: Any, pack: Any) -> dict[str, np.ndarray]:
    """Zeros for every model input, unknown dims at :func:`smallest_size`."""
    size = smallest_size(loaded, pack)
    return {spec.name: np.zeros(_shape(spec, size), dtype=_dtype(spec)) for spec in loaded.info.inputs}


def learn_outputs(loaded: Any, outputs: dict[str, np.ndarray]) -> None:
    """Record the outputs a run returned when the model did not declare them (sub-classed
    models and SavedModels tell their outputs only when run)."""
    if loaded.info.outputs and len(loaded.info.outputs) == len(outputs):
        return
    loaded.info.outputs = [
        TensorInfo(k, tuple(None if i == 0 else d for i, d in enumerate(v.shape))) for k, v in outputs.items()
    ]
    loaded.output_keys = list(outputs)


def warm_up(host: Any, loaded: Any) -> None:
    """Run ``loaded`` once on zeros of a size it accepts; learn its outputs and, for a
    sub-classed model, its layers' shapes. A failure is logged, never raised: the model
    stays loaded and the first real call reports what is wrong with the input."""
    arrays = sample_inputs(loaded, host.pack_inputs)
    try:
        if loaded.info.kind == "subclassed":
            outputs = _run_measuring(host, loaded, arrays)
        else:
            outputs = host._call(loaded, arrays)
    except MaskviewerError as exc:
        log.info("warm-up of %s skipped: %s", loaded.info.name, exc)
        return
    learn_outputs(loaded, outputs)


def _run_measuring(host: Any, loaded: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a sub-classed model once, filling its layers' unknown output shapes from the run."""
    from maskviewer.inference.probe import ActivationProbe, ProbeError

    try:
        probe = ActivationProbe(loaded.model)
        shapes, result = probe.measure(host.pack_inputs(arrays, loaded))
    except (ProbeError, ValueError, TypeError, RuntimeError) as exc:
        log.info("layer shapes of %s not measured: %s", loaded.info.name, exc)
        return host._call(loaded, arrays)
    for layer in loaded.info.iter_layers():
        measured = shapes.get(layer.path)
        if layer.output_shape is None and measured is not None:
            layer.output_shape = (None, *measured[1:])
    return host.unpack_outputs(result, loaded)
