"""The sanity check of a saliency method: cascading randomisation (Adebayo et al. 2018).

On a *copy* of the model (``keras.models.clone_model``, nested models cloned too, then
``set_weights``; the loaded model is never touched) the layers with weights are re-initialised
from the top (the output) down, one more layer each step, and the map is computed again with
the same method. A method that explains the model changes as the model loses what it learned;
one that does not (an edge detector reads the input only) keeps its map. Each step reports the
Spearman rank correlation and the SSIM with the original map; the method passes when the rank
correlation falls below :data:`PASS_BELOW` once the model is randomised.

Re-initialisation draws each weight from its layer's own initializer (``kernel_initializer``,
``bias_initializer``, ``gamma_initializer``...) with a fixed seed, and from a normal
distribution with the weight's own spread when the layer has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.similarity import spearman, ssim

#: a method passes when the rank correlation with the original map falls below this
PASS_BELOW = 0.5


@dataclass
class SanityStep:
    """One step of the cascade: the layers randomised so far (``layer`` the newest)."""

    layer: str
    randomised: int
    spearman: float
    ssim: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "randomised": self.randomised, "spearman": _num(self.spearman),
                "ssim": _num(self.ssim)}


@dataclass
class SanityResult:
    """The cascade's steps and the verdict.

    Attributes
    ----------
    passed : bool
        The map changed: the Spearman correlation fell below :data:`PASS_BELOW` (a map made
        constant by the randomisation counts as changed).
    final_spearman : float
        The rank correlation after every layer with weights was randomised.
    first_change : str or None
        The top-most layer whose randomisation first took the correlation below the threshold.
    """

    method: str
    steps: list[SanityStep] = field(default_factory=list)
    passed: bool = False
    final_spearman: float = float("nan")
    first_change: str | None = None
    layers_total: int = 0

    def to_dict(self) -> dict:
        return {"method": self.method, "passed": self.passed, "final_spearman": _num(self.final_spearman),
                "first_change": self.first_change, "layers_total": self.layers_total,
                "threshold": PASS_BELOW, "steps": [s.to_dict() for s in self.steps]}


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def weighted_layers(model: Any) -> list[Any]:
    """Layers with weights, nested models walked into, from the top (output) down."""
    found: list[Any] = []

    def walk(m: Any) -> None:
        for layer in m.layers:
            if hasattr(layer, "layers") and layer.layers:
                walk(layer)
            elif layer.weights:
                found.append(layer)

    walk(model)
    return found[::-1]


def copy_model(model: Any) -> Any:
    """A copy with its own weights (nested models cloned as well), equal to ``model``."""
    import keras

    try:
        clone = keras.models.clone_model(model, recursive=True)
    except Exception as exc:  # sub-classed models without a config cannot be cloned
        raise MaskviewerError(
            f"The sanity check needs a copy of the model, and this model cannot be copied "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})."
        ) from exc
    clone.set_weights(model.get_weights())
    shared = {id(v) for v in model.weights} & {id(v) for v in clone.weights}
    if shared:  # never randomise a weight the loaded model holds
        raise MaskviewerError("The model's copy shares weights with it; the sanity check cannot run on it.")
    return clone


def randomise_layer(layer: Any, seed: int) -> None:
    """Re-initialise every weight of ``layer`` (its initializers, seeded)."""
    import keras

    rng = np.random.default_rng(seed)
    for i, var in enumerate(layer.weights):
        shape, dtype = tuple(var.shape), var.dtype
        short = var.path.rsplit("/", 1)[-1] if hasattr(var, "path") else var.name
        init = getattr(layer, f"{short}_initializer", None)
        value = None
        if init is not None:
            try:
                cfg = keras.initializers.serialize(init)
                if isinstance(cfg, dict) and "seed" in cfg.get("config", {}):
                    cfg["config"]["seed"] = seed * 1009 + i
                value = np.asarray(keras.ops.convert_to_numpy(keras.initializers.deserialize(cfg)(shape, dtype)))
            except Exception:
                value = None
        if value is None:
            current = np.asarray(keras.ops.convert_to_numpy(var))
            scale = float(current.std()) or 0.05
            value = rng.normal(0.0, scale, shape)
        var.assign(value.astype(np.dtype(str(dtype)) if not isinstance(dtype, np.dtype) else dtype))


def cascade_depths(n_layers: int, max_steps: int | None) -> list[int]:
    """How many layers are randomised at each step: 1..n, or ``max_steps`` of them evenly
    spread (always the first and the last)."""
    if n_layers < 1:
        return []
    if max_steps is None or max_steps >= n_layers:
        return list(range(1, n_layers + 1))
    k = max(2, int(max_steps))
    return sorted({int(round(v)) for v in np.linspace(1, n_layers, k)})


def sanity_check(
    model: Any, packed: Any, make_maps: Callable[[Any], Callable[[Any, int | None], Any]],
    class_index: int | None = None, *, method: str = "", max_steps: int | None = None, seed: int = 0,
    progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None,
) -> SanityResult:
    """Cascading randomisation of a copy of ``model``, the map recomputed at each step.

    Parameters
    ----------
    model
        The Keras model; it is copied and the copy alone is changed.
    packed
        The model inputs of one image (batch of 1), as the model's call takes them.
    make_maps : callable
        ``make_maps(model) -> fn(packed, class_index) -> MapBatch`` (see
        :func:`maskviewer.inference.faithfulness.method_maps`); ``model`` is the model, its
        copy, or (on JAX, once per step) an ``ActivationProbe`` of the copy.
    class_index : int, optional
        The class explained; the original model's top class by default, kept for every step.
    max_steps : int, optional
        Compute at most this many steps (evenly spread over the cascade); every layer by default.
    progress : callable, optional
        ``progress(done, total)`` after each step; may raise to stop.
    check : callable, optional
        Passed to the map functions, which call it between their passes (it raises to stop).
    """
    extra = {} if check is None else {"check": check}
    original = make_maps(model)(packed, class_index, **extra)
    reference = np.asarray(original.maps[0], np.float64)
    if class_index is None:
        class_index = int(original.classes[0]) if int(original.classes[0]) >= 0 else None
    from maskviewer.inference.backend import backend_name
    from maskviewer.inference.probe import ActivationProbe

    clone = copy_model(model)
    layers = weighted_layers(clone)
    names = [layer.path if hasattr(layer, "path") else layer.name for layer in layers]
    result = SanityResult(method=method, layers_total=len(layers))
    # a traced TensorFlow function reads the copy's variables on every call; a jitted JAX
    # function holds the values it was traced with, so there each step gets a new probe (and
    # with it a new trace)
    retrace = backend_name() == "jax"
    fn = None
    depths = cascade_depths(len(layers), max_steps)
    done = 0
    for step, depth in enumerate(depths):
        while done < depth:
            randomise_layer(layers[done], seed + done)
            done += 1
        if fn is None or retrace:
            fn = make_maps(ActivationProbe(clone) if retrace else clone)
        got = np.asarray(fn(packed, class_index, **extra).maps[0], np.float64)
        result.steps.append(SanityStep(names[depth - 1], depth, spearman(reference, got), _safe_ssim(reference, got)))
        if progress is not None:
            progress(step + 1, len(depths))
    return judge(result)


def _safe_ssim(a: np.ndarray, b: np.ndarray) -> float:
    try:
        return ssim(a, b)
    except ValueError:
        return float("nan")


def judge(result: SanityResult) -> SanityResult:
    """Set the verdict: NaN (a map made constant) counts as changed."""
    changed = [not (s.spearman >= PASS_BELOW) for s in result.steps]
    result.first_change = next((s.layer for s, c in zip(result.steps, changed, strict=True) if c), None)
    result.final_spearman = result.steps[-1].spearman if result.steps else float("nan")
    result.passed = bool(result.steps) and changed[-1]
    return result
