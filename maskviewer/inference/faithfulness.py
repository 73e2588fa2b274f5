"""Faithfulness of a map: deletion and insertion curves scored by the model (RISE).

The step inputs are made by :mod:`maskviewer.core.faithfulness` a batch at a time; each batch
goes through the model once (:func:`~maskviewer.inference.traced_call.call_traced`), and the
score is the explained class's output, as the attribution methods score it (the output's value
for that class, summed over space for maps; probabilities when the model ends in a softmax).
Other inputs of a multi-input model are held fixed.

:func:`method_maps` is the one way this package and the sanity check compute a map: through
:func:`maskviewer.inference.attribution.attribution_function` when it is there, else
Grad-CAM / Grad-CAM++ (:mod:`maskviewer.inference.cam`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.faithfulness import (
    DEFAULT_BASELINES,
    DEFAULT_BATCH,
    DEFAULT_STEPS,
    MODES,
    Curve,
    curve,
    sobel_magnitude,
)

#: a reference "method" that reads only the input (never the model): it must fail the sanity check
EDGES = "edges"
EDGES_LABEL = "Edges (reference)"  # Sobel on the input: no model involved


@dataclass
class MapBatch:
    """Maps of a batch: ``maps (B, h, w)``, ``classes (B,)``, ``scores (B,)``, ``space``."""

    maps: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    space: str


def method_names() -> tuple[str, ...]:
    """The attribution methods available (the attribution module's, else the CAMs)."""
    try:
        from maskviewer.inference.attribution import METHOD_NAMES
    except ImportError:
        return ("gradcam", "gradcam++")
    return tuple(METHOD_NAMES)


def method_labels() -> dict[str, str]:
    """Method name -> the label users see."""
    try:
        from maskviewer.inference.attribution import METHOD_LABELS
    except ImportError:
        METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}  # noqa: N806
    return {**dict(METHOD_LABELS), EDGES: EDGES_LABEL}


def method_maps(
    model: Any, method: str, layer: str | None, *, output: str | None = None,
    output_keys: list[str] | None = None, options: Any = None, image_index: int = 0,
) -> Callable[[Any, int | None], MapBatch]:
    """``fn(packed_inputs, class_index, check=None) -> MapBatch`` for one method on one model.

    ``check``, when given, is called between the passes of the methods with many (Score-CAM,
    SmoothGrad, IG); it raises to stop them (a cancelled job).

    On TensorFlow the traced function reads the model's variables at every call, so it follows
    a copy's weights as they are changed; a jitted JAX function keeps the values it was traced
    with (the sanity check makes a new one per step there).

    Parameters
    ----------
    model
        A Keras model (the loaded one or a copy), or an ``ActivationProbe`` of one.
    method : str
        An attribution method name, or :data:`EDGES`.
    layer : str, optional
        The layer of layer-space methods (CAMs).
    image_index : int
        For :data:`EDGES`: which of the packed inputs is the image.
    """
    if method == EDGES:
        return _edges_fn(image_index)
    try:
        from maskviewer.inference.attribution import attribution_function
    except ImportError:
        attribution_function = None
    if attribution_function is not None:
        fn = attribution_function(model, method, layer=layer, output=output, options=options, output_keys=output_keys)

        def run(inputs: Any, class_index: int | None = None, check: Callable | None = None) -> MapBatch:
            b = fn(inputs, class_index, check) if check is not None else fn(inputs, class_index)
            return MapBatch(np.asarray(b.maps, np.float32), np.asarray(b.classes), np.asarray(b.scores), b.space)

        return run
    return _cam_fn(model, method, layer, output, output_keys)


def _cam_fn(model: Any, method: str, layer: str | None, output: str | None, keys: list[str] | None) -> Callable:
    from maskviewer.inference.cam import CAM_METHODS, cam_function
    from maskviewer.inference.probe import ActivationProbe

    if method not in CAM_METHODS:
        raise MaskviewerError(f"Unknown method {method!r}; choose one of {', '.join(CAM_METHODS)}.")
    if layer is None:
        raise MaskviewerError(f"{method} needs a spatial layer.")
    probe = model if isinstance(model, ActivationProbe) else ActivationProbe(model)
    fn = cam_function(probe, layer, output_keys=keys, output=output, plus=method == "gradcam++")

    def run(inputs: Any, class_index: int | None = None, check: Callable | None = None) -> MapBatch:
        b = fn(inputs, class_index)
        return MapBatch(b.heatmaps, b.classes, b.scores, "layer")

    return run


def _edges_fn(image_index: int) -> Callable:
    def run(inputs: Any, class_index: int | None = None, check: Callable | None = None) -> MapBatch:
        x = _nth_input(inputs, image_index)
        maps = np.stack([sobel_magnitude(np.asarray(xi)) for xi in np.asarray(x)])
        n = maps.shape[0]
        return MapBatch(maps, np.full(n, -1 if class_index is None else class_index), np.zeros(n, np.float32), "input")

    return run


def _nth_input(inputs: Any, n: int) -> Any:
    if isinstance(inputs, dict):
        return list(inputs.values())[n]
    if isinstance(inputs, list | tuple):
        return inputs[n]
    return inputs


class ClassScore:
    """The explained class's score of whole batches: the model's output for that class."""

    def __init__(self, model: Any, output_keys: list[str] | None = None, output: str | None = None) -> None:
        self.model, self.keys, self.output = model, list(output_keys or []), output

    def __call__(self, packed: Any, class_index: int) -> np.ndarray:
        """``(B,)`` float64 scores of class ``class_index`` (summed over space for maps)."""
        from maskviewer.inference.cam import select_output
        from maskviewer.inference.runner import to_numpy
        from maskviewer.inference.traced_call import call_traced

        _name, y = select_output(call_traced(self.model, packed), self.keys, self.output)
        y = to_numpy(y).astype(np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if not 0 <= class_index < y.shape[-1]:
            raise MaskviewerError(f"Class {class_index} does not exist: the output has {y.shape[-1]} classes.")
        return y[..., class_index].reshape(y.shape[0], -1).sum(axis=1)


def faithfulness_curves(
    model: Any, pack: Callable[[dict[str, np.ndarray]], Any], arrays: dict[str, np.ndarray], input_name: str,
    saliency: np.ndarray, class_index: int, *, output: str | None = None, output_keys: list[str] | None = None,
    steps: int = DEFAULT_STEPS, baselines: dict[str, str] | None = None, batch: int = DEFAULT_BATCH,
    modes: tuple[str, ...] = MODES, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Curve]:
    """The deletion and insertion curves of one map over one image.

    Parameters
    ----------
    model
        The Keras model.
    pack : callable
        Named arrays -> what the model's call takes (``ModelHost.pack_inputs``).
    arrays : dict
        The image's model inputs, each with a batch axis of 1.
    input_name : str
        The input whose pixels are removed or inserted; the others are repeated unchanged.
    saliency : ndarray
        The map ``(h, w)`` (layer grid or input resolution).
    class_index : int
        The class whose score is followed.
    steps, batch : int
        Steps over all pixels; step inputs per model call.
    baselines : dict, optional
        Mode -> baseline (:data:`~maskviewer.core.faithfulness.BASELINES`), RISE's by default.
    progress : callable, optional
        ``progress(done, total)`` over both curves' steps; may raise to stop.
    """
    if input_name not in arrays:
        raise MaskviewerError(f"The model has no input {input_name!r}.")
    x = np.asarray(arrays[input_name])[0]
    if x.ndim not in (2, 3):
        raise MaskviewerError(f"Input {input_name} is not an image (shape {x.shape}); nothing to delete pixels of.")
    scorer = ClassScore(model, output_keys, output)
    chosen = {**DEFAULT_BASELINES, **(baselines or {})}
    total = (steps + 1) * len(modes)

    def score(batch_x: np.ndarray) -> np.ndarray:
        n = batch_x.shape[0]
        feed = {k: (batch_x.astype(v.dtype, copy=False) if k == input_name else np.repeat(v, n, axis=0))
                for k, v in arrays.items()}
        return scorer(pack(feed), class_index)

    out: dict[str, Curve] = {}
    for k, mode in enumerate(modes):
        def step_progress(done: int, _total: int, k: int = k) -> None:
            if progress is not None:
                progress(k * (steps + 1) + done, total)

        out[mode] = curve(score, x, saliency, mode, chosen[mode], steps, batch, progress=step_progress)
    return out
