"""The activation probe: every requested layer's output from ONE forward pass, reduced on the device.

How layer outputs are captured depends on the model:

* Sequential and functional models (one or several inputs, list or dict, several outputs)
  are run by walking their graph node by node with the real input tensors, recording the
  output of each requested layer. A nested Sequential/functional model is walked the same
  way (its inner layers are reconnected to the outer tensors), so its layers are captured in
  the same pass. Nothing is added to the model: no new nodes, no changed activations.
* Sub-classed models (and sub-classed models nested in a graph) have no graph: their
  requested layers' ``call`` is wrapped during the call and restored afterwards.

Reductions (mean or max over channels, top-k channels by mean, one channel, the grid) are
computed with ``keras.ops`` on the device before anything is converted to numpy, so only
what is displayed is copied. Full activations kept between requests live in a byte-capped
cache. Everything here runs on the inference thread.

This module holds :class:`ActivationProbe` and the layer list and is the place to import every
probe name from; the work is done in its siblings: :mod:`~maskviewer.inference.probe_graph`
(walking models), :mod:`~maskviewer.inference.reduce` (the reductions) and
:mod:`~maskviewer.inference.activation_cache` (the activation cache).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskviewer.core.model_info import ModelInfo
from maskviewer.inference.activation_cache import (
    DEFAULT_CACHE_BYTES,
    ActivationCache,
    input_key,
    tensor_nbytes,
)
from maskviewer.inference.probe_graph import (
    Hook,
    _Capture,
    _graph_of,
    iter_layer_paths,
    run_graph,
    wrapped_calls,
)
from maskviewer.inference.probe_tokens import TokenGrids, input_hw, to_grid
from maskviewer.inference.reduce import (
    MAX_GRID_CHANNELS,
    METHODS,
    LayerMaps,
    ProbeError,
    Reduction,
    _check_reduction,
    reduce_batch,
    reduce_tensor,
    to_layer_maps,
)

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "MAX_GRID_CHANNELS",
    "METHODS",
    "ActivationCache",
    "ActivationProbe",
    "Hook",
    "LayerEntry",
    "LayerMaps",
    "ProbeError",
    "Reduction",
    "compile_function",
    "describe_layers",
    "get_probe",
    "input_key",
    "is_attention_layer",
    "iter_layer_paths",
    "reduce_batch",
    "reduce_tensor",
    "tensor_nbytes",
    "to_layer_maps",
]


class ActivationProbe:
    """Layer outputs of one Keras model in one forward pass.

    Parameters
    ----------
    model : keras.Model
        Sequential, functional (nested models included) or sub-classed.
    max_cache_bytes : int
        Cap on full activations kept between requests (:meth:`activations`).
    """

    def __init__(self, model: Any, max_cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        import keras

        if not isinstance(model, keras.Model):
            raise ProbeError(
                f"A {type(model).__name__} has no layers to probe (SavedModels loaded for "
                "inference only). Save the model as .keras to see its layers."
            )
        self.model = model
        self.graph = _graph_of(model)
        self._layers: dict[str, tuple[Any, list[Any]]] = {
            path: (layer, chain) for path, layer, chain in iter_layer_paths(model)
        }
        self._compiled: dict[tuple, Callable] = {}
        self.cache = ActivationCache(max_cache_bytes)
        #: token layers' grids (and the user's override of them)
        self.tokens = TokenGrids(model)
        #: how many tensors each layer returned in the last pass (the first is captured)
        self.last_counts: dict[str, int] = {}

    @property
    def kind(self) -> str:
        return "graph" if self.graph is not None else "subclassed"

    def paths(self) -> list[str]:
        """Every layer path, in model order (nested layers after their model)."""
        return list(self._layers)

    def layer(self, path: str) -> Any:
        """The Keras layer at ``path``; raises :class:`ProbeError` if there is none."""
        try:
            return self._layers[path][0]
        except KeyError:
            raise ProbeError(f"The model has no layer {path!r}; pick one from the layer list.") from None

    # -- token layers ---------------------------------------------------------------------------

    def token_grid(self, path: str, shape: tuple | None = None, inputs: Any = None, *, strict: bool = True) -> Any:
        """The :class:`~maskviewer.core.tokens.TokenGrid` of a ``(B, N, C)`` layer, or None.

        ``shape`` is the layer's output shape (its static one by default); ``inputs`` tell the
        image size when the model's is free; ``strict``: a user's grid that does not fit raises.
        """
        shape = shape if shape is not None else self._static_shape(path)
        return self.tokens.grid_for(shape, input_hw(inputs) if inputs is not None else None, strict=strict)

    def grid_view(self, path: str, tensor: Any, inputs: Any = None) -> Any:
        """A token layer's output reshaped to ``(B, grid_h, grid_w, C)``; others unchanged."""
        if len(tensor.shape) != 3:
            return tensor
        grid = self.token_grid(path, tuple(tensor.shape), inputs)
        return tensor if grid is None else to_grid(tensor, grid)

    def map_shape(self, path: str) -> tuple | None:
        """The layer's static output shape, as a grid for token layers."""
        shape = self._static_shape(path)
        grid = self.token_grid(path, shape)
        return shape if grid is None else (shape[0], grid.grid_h, grid.grid_w, shape[2])

    # -- the forward pass ---------------------------------------------------------------------

    def forward(
        self,
        inputs: Any,
        paths: list[str] | tuple[str, ...],
        hooks: dict[str, Hook] | None = None,
        *,
        require_all: bool = True,
    ) -> tuple[dict[str, Any], Any]:
        """Run the model once (eagerly, or inside a traced function) capturing ``paths``.

        Parameters
        ----------
        inputs : array, list or dict
            Batched model inputs, packed as the model's call expects them.
        paths : sequence of str
            Layers whose outputs to capture.
        hooks : dict of str to callable, optional
            ``f(tensor) -> tensor`` applied to a layer's output; what it returns flows on
            through the model (Grad-CAM watches or perturbs the layer output with it).
        require_all : bool
            Raise :class:`ProbeError` when a path did not run (otherwise it is left out).

        Returns
        -------
        captured : dict of str to tensor
            Each path's output (its first tensor if the layer has several).
        outputs
            The model's own outputs, structured as ``model(inputs)`` returns them.
        """
        for p in paths:
            self.layer(p)
        cap = _Capture(set(paths), hooks)
        wrap = [p for p in set(paths) | set(cap.hooks) if not self._graph_reachable(p)]
        with wrapped_calls(wrap, self.layer, cap):
            if self.graph is not None:
                flat = self.graph._standardize_inputs(inputs)
                outs = run_graph(self.graph, flat, "", cap)
                outputs = outs[0] if isinstance(outs, list) and len(outs) == 1 else outs
            else:
                outputs = self.model(inputs, training=False)
        missing = [p for p in paths if p not in cap.tensors]
        if missing and require_all:
            raise ProbeError(
                f"Layer {missing[0]} did not run when the model ran on this input, so it has "
                "no output to show (it is not connected to the model's outputs, or the model's "
                "call skips it). Pick another layer."
            )
        self.last_counts = dict(cap.counts)
        return cap.tensors, outputs

    def _graph_reachable(self, path: str) -> bool:
        """True when every model ``path`` sits in is walked as a graph (no wrapping needed)."""
        _layer, chain = self._layers[path]
        return all(_graph_of(m) is not None for m in chain)

    # -- reduced outputs ----------------------------------------------------------------------

    def run(
        self,
        inputs: Any,
        paths: list[str] | tuple[str, ...],
        reduction: Reduction | None = None,
        *,
        compiled: bool = True,
    ) -> dict[str, Any]:
        """One pass returning each path's output, reduced on the device when ``reduction`` is given.

        With ``compiled`` the pass (and the reductions) run as one traced function, cached per
        (layer set, reduction) and retraced only for new input shapes.

        Returns
        -------
        dict
            path -> the full tensor (no reduction) or :func:`reduce_tensor`'s dict, on the device.
        """
        paths = tuple(paths)
        for p in paths:
            self.layer(p)

        def fn(x: Any) -> dict[str, Any]:
            captured, _ = self.forward(x, paths)
            if reduction is None:
                return dict(captured)
            return {p: reduce_tensor(self.grid_view(p, captured[p], x), reduction) for p in paths}

        if not compiled:
            return fn(inputs)
        key = (paths, reduction)
        if key not in self._compiled:
            self._compiled[key] = compile_function(fn)
        return self._compiled[key](inputs)

    def reduce_all(
        self, inputs: Any, paths: list[str] | tuple[str, ...], reduction: Reduction, *, compiled: bool = True
    ) -> dict[str, LayerMaps]:
        """Reduce many layers in one pass and copy only the reductions to the host."""
        for p in paths:
            _check_reduction(p, self.map_shape(p) or (), reduction)
        reduced = self.run(inputs, paths, reduction, compiled=compiled)
        out = {p: to_layer_maps(p, self.map_shape(p), reduction.method, reduced[p]) for p in paths}
        for p, lm in out.items():
            lm.tokens = self.token_grid(p, inputs=inputs)
        return out

    def _static_shape(self, path: str) -> tuple | None:
        from maskviewer.inference.describe import _layer_output_shape

        shape = _layer_output_shape(self.layer(path))
        return None if shape is None or (shape and isinstance(shape[0], tuple)) else shape

    def activations(self, inputs: Any, paths: list[str] | tuple[str, ...]) -> dict[str, Any]:
        """Full outputs (on the device) of ``paths`` for ``inputs``, through the byte-capped cache.

        Paths not cached are computed together in one eager pass.
        """
        key = input_key(inputs)
        found = {p: self.cache.get((key, p)) for p in paths}
        missing = [p for p, t in found.items() if t is None]
        if missing:
            captured, _ = self.forward(inputs, missing)
            for p in missing:
                found[p] = captured[p]
                self.cache.put((key, p), captured[p])
        return found

    def reduce(
        self,
        inputs: Any,
        path: str,
        reduction: Reduction,
        weights: np.ndarray | Callable[[int, int], np.ndarray | None] | None = None,
    ) -> LayerMaps:
        """One layer, reduced on the device and copied to the host (the GUI's request).

        Parameters
        ----------
        weights : array or callable, optional
            ``(H, W)`` mask weights on the layer grid to rank channels by, or a function
            ``(H, W) -> weights`` called once the layer's size is known.
        """
        act = self.activations(inputs, [path])[path]
        grid = self.token_grid(path, tuple(act.shape), inputs) if len(act.shape) == 3 else None
        if grid is not None:
            act = to_grid(act, grid)
        shape = tuple(int(d) for d in act.shape)
        _check_reduction(path, shape, reduction)
        notes = []
        if self.last_counts.get(path, 1) > 1:
            notes.append(f"Layer {path} has {self.last_counts[path]} outputs; the first is shown.")
        w = weights(shape[1], shape[2]) if callable(weights) and len(shape) == 4 else weights
        if callable(w):
            w = None
        if w is not None and float(np.sum(w)) <= 0:
            notes.append("The mask does not cover this layer's map: channels ranked over the whole map.")
            w = None
        lm = to_layer_maps(path, shape, reduction.method, reduce_tensor(act, reduction, w))
        lm.tokens = grid
        if grid is not None:
            notes.insert(0, f"Tokens shown as a {grid.describe()}.")
        lm.notes = notes
        return lm

    def layer_shapes(self, inputs: Any) -> dict[str, tuple]:
        """Every layer's output shape (batch axis included) from one pass on ``inputs``.

        Sub-classed models only tell their layers' shapes when run.
        """
        captured, _ = self.forward(inputs, [p for p in self.paths() if self._runs(p)])
        return {p: tuple(int(d) for d in t.shape) for p, t in captured.items()}

    def measure(self, inputs: Any) -> tuple[dict[str, tuple], Any]:
        """``(shapes, outputs)``: the output shape of every layer that ran in one pass on
        ``inputs`` (batch axis included), and the model's outputs of that pass."""
        captured, outputs = self.forward(inputs, [p for p in self.paths() if self._runs(p)], require_all=False)
        return {p: tuple(int(d) for d in t.shape) for p, t in captured.items()}, outputs

    def _runs(self, path: str) -> bool:
        # input layers of a graph are not called, their output is the input itself
        return type(self.layer(path)).__name__ != "InputLayer"


def compile_function(fn: Callable) -> Callable:
    """Trace ``fn`` into one compiled function on the current backend.

    TensorFlow traces without AutoGraph: the functions traced here have no data-dependent
    Python control flow, and converting their source (and everything they call) cost about a
    second on the first call.
    """
    from maskviewer.inference.backend import backend_name

    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True, autograph=False)
    if name == "jax":
        import jax

        return jax.jit(fn)
    return fn



# ---------------------------------------------------------------------------------------------
# The probe of the loaded model, and what the layer list needs

_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_probe(host: Any) -> ActivationProbe:
    """The (cached) probe of the model ``host`` holds; :class:`ProbeError` when none can be made."""
    info: ModelInfo | None = host.info
    if info is None or host.model is None:
        raise ProbeError("No model is loaded: open a model first.")
    if not info.probe_supported:
        raise ProbeError(info.note or "This model's layers cannot be probed.")
    probe = _PROBES.get(host.model)
    if probe is None:
        probe = ActivationProbe(host.model)
        _PROBES[host.model] = probe
    return probe


@dataclass
class LayerEntry:
    """One row of the layer list."""

    path: str
    class_name: str
    shape: tuple | None  # with the batch axis
    spatial: bool
    attention: bool = False
    #: a token layer's grid (:class:`~maskviewer.core.tokens.TokenGrid`), drawn as a map
    tokens: Any = None
    #: a MultiHeadAttention layer (per-head attention weights can be captured)
    heads: int = 0


def is_attention_layer(layer: Any, shape: tuple | None) -> bool:
    """A single-channel spatial output squashed by a sigmoid: a spatial attention map.

    Recognised: any layer with ``activation="sigmoid"`` (a 1x1 ``Conv2D`` attention head), and
    ``Activation("sigmoid")`` layers.
    """
    if shape is None or len(shape) != 4 or shape[-1] != 1:
        return False
    act = getattr(layer, "activation", None)
    if act is None:
        return False
    name = getattr(act, "__name__", None) or str(act)
    return name == "sigmoid"


def class_name_is_mha(layer: Any) -> bool:
    """A Keras ``MultiHeadAttention`` layer (or a subclass)."""
    return any(c.__name__ == "MultiHeadAttention" for c in type(layer).__mro__)


def describe_layers(host: Any, inputs: Any | None = None) -> list[LayerEntry]:
    """The layer list: shapes (measured by a run for sub-classed models), spatial, attention.

    Parameters
    ----------
    inputs : packed inputs, optional
        What to run the model on to measure shapes; zeros of the input shapes otherwise.
    """
    from maskviewer.inference.describe import _layer_output_shape

    probe = get_probe(host)
    info: ModelInfo = host.info
    shapes: dict[str, tuple] = {}
    if probe.kind == "subclassed" or any(
        layer.output_shape is None for layer in info.iter_layers()
    ):
        if inputs is None:
            from maskviewer.inference.warm_up import sample_inputs

            inputs = host.pack_inputs(sample_inputs(host.loaded, host.pack_inputs))
        try:
            shapes = probe.layer_shapes(inputs)
        except ProbeError:
            shapes = {}
    entries = []
    for layer_info in info.iter_layers():
        layer = probe.layer(layer_info.path)
        shape = layer_info.output_shape
        if shape is None or isinstance(shape[0], tuple):
            measured = shapes.get(layer_info.path)
            shape = (None, *measured[1:]) if measured else _layer_output_shape(layer)
        if shape is not None and shape and isinstance(shape[0], tuple):
            shape = shape[0]
        grid = probe.token_grid(layer_info.path, shape, strict=False) if shape is not None and len(shape) == 3 else None
        spatial = shape is not None and (len(shape) == 4 or grid is not None)
        entries.append(
            LayerEntry(
                path=layer_info.path,
                class_name=layer_info.class_name,
                shape=shape,
                spatial=spatial,
                attention=spatial and is_attention_layer(layer, shape),
                tokens=grid,
                heads=int(getattr(layer, "num_heads", 0) or 0) if class_name_is_mha(layer) else 0,
            )
        )
    return entries
