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
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskviewer.core.errors import InferenceError
from maskviewer.core.model_info import ModelInfo

#: default byte cap for full activations kept between requests
DEFAULT_CACHE_BYTES = 256 * 2**20
#: reduction methods: maps for spatial layers ("full" returns the whole activation)
METHODS = ("mean", "max", "topk", "channel", "grid", "attention", "full")
#: the most channels a grid copies to the host (the top ones by score beyond that)
MAX_GRID_CHANNELS = 1024

Hook = Callable[[Any], Any]


class ProbeError(InferenceError):
    """A layer cannot be probed; the message says why and what to do."""


@dataclass(frozen=True)
class Reduction:
    """What to compute from a layer's output before it leaves the device.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`: ``"mean"``/``"max"`` over channels, ``"topk"`` (the ``k``
        channels with the highest score, their mean as the map), ``"channel"`` (channel
        ``channel``), ``"grid"`` (every channel, map = channel ``channel``), ``"attention"``
        (the single channel of an attention layer), ``"full"`` (the whole output).
    k : int
        Channels for ``"topk"``.
    channel : int
        The chosen channel.
    """

    method: str = "mean"
    k: int = 5
    channel: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown reduction {self.method!r}; choose one of {', '.join(METHODS)}.")


@dataclass
class LayerMaps:
    """One layer's reduced output as numpy (batch item 0).

    Attributes
    ----------
    path : str
        The layer's path (``"backbone/conv"``).
    shape : tuple
        The layer output's shape without the batch axis.
    spatial : bool
        ``(H, W, C)`` output; otherwise ``vector`` holds a 1-D summary.
    method : str
        The reduction that made it.
    map : ndarray or None
        ``(H, W)``: the map to draw over the image.
    maps : ndarray or None
        ``(N, H, W)``: tiles (grid: every channel; top-k: the k channels, best first).
    channels : ndarray or None
        The channel index of each tile in ``maps``.
    channel_means : ndarray or None
        ``(C,)``: every channel's mean over the whole map.
    rank_scores : ndarray or None
        ``(C,)``: what channels were ranked by (the means, or the means inside a mask).
    value_range : tuple of float
        The layer's min and max over all channels (for shared normalisation).
    vector : ndarray or None
        Non-spatial layers: the output (``(N,)``), or its mean over all axes but the last.
    full : ndarray or None
        ``"full"``: the whole output ``(H, W, C)`` (or any shape).
    notes : list of str
        Things the user should know (e.g. several outputs, only the first shown).
    """

    path: str
    shape: tuple
    spatial: bool
    method: str
    map: np.ndarray | None = None
    maps: np.ndarray | None = None
    channels: np.ndarray | None = None
    channel_means: np.ndarray | None = None
    rank_scores: np.ndarray | None = None
    value_range: tuple[float, float] = (0.0, 0.0)
    vector: np.ndarray | None = None
    full: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reductions (keras.ops: on the device, traceable)


def reduce_batch(x: Any, reduction: Reduction, weights: Any = None) -> dict[str, Any]:
    """Reduce a batched layer output for every batch item, on its device.

    Parameters
    ----------
    x : tensor
        ``(B, H, W, C)`` for spatial layers; anything else is summarised as a vector per item.
    reduction : Reduction
    weights : tensor, optional
        ``(H, W)`` weights in [0, 1] (a mask on the layer grid): channels are then ranked by
        their weighted mean instead of their mean.

    Returns
    -------
    dict of str to tensor
        Keys as the fields of :class:`LayerMaps` (``min``/``max`` for the value range), each
        with a leading batch axis.
    """
    from keras import ops

    rank = len(x.shape)
    if rank != 4:
        if rank == 1:
            return {"vector": ops.reshape(x, (-1, 1))}
        if rank == 2:
            return {"vector": x}
        return {"vector": ops.mean(x, axis=tuple(range(1, rank - 1)))}
    out: dict[str, Any] = {"min": ops.min(x, axis=(1, 2, 3)), "max": ops.max(x, axis=(1, 2, 3))}
    means = ops.mean(x, axis=(1, 2))  # (B, C)
    out["channel_means"] = means
    scores = means
    if weights is not None:
        w = ops.cast(ops.convert_to_tensor(weights), x.dtype)
        total = ops.maximum(ops.sum(w), ops.cast(1e-12, x.dtype))
        scores = ops.sum(x * w[None, :, :, None], axis=(1, 2)) / total
    out["rank_scores"] = scores
    method = reduction.method
    c = int(x.shape[-1])

    def pick(idx: Any) -> Any:
        """``(B, k, H, W)``: the channels ``idx`` (B, k) of each item."""
        xt = ops.transpose(x, (0, 3, 1, 2))
        shape = ops.shape(xt)
        full = ops.broadcast_to(idx[:, :, None, None], (shape[0], idx.shape[1], shape[2], shape[3]))
        return ops.take_along_axis(xt, full, axis=1)

    if method == "mean":
        out["map"] = ops.mean(x, axis=-1)
    elif method == "max":
        out["map"] = ops.max(x, axis=-1)
    elif method == "topk":
        k = max(1, min(int(reduction.k), c))
        _, idx = ops.top_k(scores, k)
        chosen = pick(idx)
        out["map"] = ops.mean(chosen, axis=1)
        out["maps"] = chosen
        out["channels"] = idx
    elif method in ("channel", "attention"):
        out["map"] = x[:, :, :, reduction.channel if method == "channel" else 0]
    elif method == "grid":
        out["map"] = x[:, :, :, reduction.channel]
        if c > MAX_GRID_CHANNELS:
            _, idx = ops.top_k(scores, MAX_GRID_CHANNELS)
            out["maps"] = pick(idx)
            out["channels"] = idx
        else:
            out["maps"] = ops.transpose(x, (0, 3, 1, 2))
    elif method == "full":
        out["full"] = x
    return out


def reduce_tensor(x: Any, reduction: Reduction, weights: Any = None) -> dict[str, Any]:
    """Reduce batch item 0 of a layer output on its device (see :func:`reduce_batch`)."""
    return {key: value[0] for key, value in reduce_batch(x[:1], reduction, weights).items()}


def _check_reduction(path: str, shape: tuple, reduction: Reduction) -> None:
    if len(shape) != 4:
        return
    c = shape[-1]
    if reduction.method in ("channel", "grid") and c is not None and not 0 <= reduction.channel < c:
        raise ProbeError(
            f"Layer {path} has {c} channels (0 to {c - 1}); channel {reduction.channel} does "
            "not exist. Pick a channel in that range."
        )
    if reduction.method == "attention" and c not in (None, 1):
        raise ProbeError(
            f"Layer {path} has {c} channels; an attention map needs a single-channel layer "
            "(e.g. a 1x1 sigmoid convolution). Choose another method or layer."
        )


def to_layer_maps(path: str, shape: tuple | None, method: str, reduced: dict[str, Any]) -> LayerMaps:
    """Copy a :func:`reduce_tensor` result to the host as a :class:`LayerMaps`.

    ``shape`` is the layer output's shape with the batch axis; when unknown (None, or None
    dims) it is read off the reduced arrays.
    """
    from keras import ops

    host = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in reduced.items()}
    spatial = "vector" not in host
    lm = LayerMaps(path=path, shape=(), spatial=spatial, method=method)
    for key in ("map", "maps", "channel_means", "rank_scores", "vector", "full"):
        if key in host:
            setattr(lm, key, host[key].astype(np.float32, copy=False))
    if "channels" in host:
        lm.channels = host["channels"].astype(np.int64)
    elif "maps" in host:
        lm.channels = np.arange(host["maps"].shape[0])
    if "min" in host:
        lm.value_range = (float(host["min"]), float(host["max"]))
    if shape is not None and all(d is not None for d in shape[1:]):
        lm.shape = tuple(int(d) for d in shape[1:])
    elif lm.full is not None:
        lm.shape = tuple(lm.full.shape)
    elif lm.map is not None and lm.channel_means is not None:
        lm.shape = (*lm.map.shape, len(lm.channel_means))
    elif lm.vector is not None:
        lm.shape = tuple(lm.vector.shape)
    return lm


# ---------------------------------------------------------------------------------------------
# Walking models


def _graph_of(model: Any) -> Any:
    """The functional graph that runs ``model``, or None (sub-classed, unbuilt Sequential)."""
    import keras

    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_inputs_struct"):
        return model
    return None


def _children(layer: Any) -> list[Any]:
    import keras

    if isinstance(layer, keras.Model):
        return list(getattr(layer, "layers", None) or [])
    return []


def iter_layer_paths(model: Any, prefix: str = "") -> Iterator[tuple[str, Any, list[Any]]]:
    """``(path, layer, containers)`` for every layer, as :func:`~maskviewer.inference.loading.layer_tree` names them.

    ``containers`` are the nested models the layer sits in, outermost first.
    """

    def walk(layers: list[Any], pre: str, chain: list[Any]) -> Iterator[tuple[str, Any, list[Any]]]:
        for layer in layers:
            path = f"{pre}{layer.name}"
            yield path, layer, chain
            kids = _children(layer)
            if kids:
                yield from walk(kids, f"{path}/", chain + [layer])

    yield from walk(_children(model), prefix, [model])


def _call_layer(layer: Any, args: tuple, kwargs: dict) -> Any:
    # what Functional.call does for each node: pass training only to layers that take it
    if "training" in getattr(layer, "_call_context_args", ()):
        kwargs = {**kwargs, "training": False}
    return layer(*args, **kwargs)


def _first(value: Any) -> tuple[Any, int]:
    """A single tensor for a layer output that may be a structure; and how many there were."""
    import keras

    flat = keras.tree.flatten(value)
    return (flat[0] if flat else None), len(flat)


class _Capture:
    """The state of one forward pass: what to record, what was recorded, and the hooks."""

    def __init__(self, wanted: set[str], hooks: dict[str, Hook] | None) -> None:
        self.wanted = set(wanted)
        self.hooks = dict(hooks or {})
        self.tensors: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def needs_inside(self, path: str) -> bool:
        pre = path + "/"
        return any(p.startswith(pre) for p in self.wanted | set(self.hooks))

    def record(self, path: str, out: Any, *, prefer: bool = False) -> Any:
        """Record (and hook) a layer's output; returns what flows downstream."""
        if path not in self.wanted and path not in self.hooks:
            return out
        if path in self.tensors and not prefer:
            return out  # a shared layer: the first call is the one layer.output names
        tensor, n = _first(out)
        if path in self.hooks and n == 1:
            tensor = self.hooks[path](tensor)
            out = tensor
        if path in self.wanted:
            self.tensors[path] = tensor
            self.counts[path] = n
        return out


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

    # -- the forward pass ---------------------------------------------------------------------

    def forward(
        self, inputs: Any, paths: list[str] | tuple[str, ...], hooks: dict[str, Hook] | None = None
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
        with self._wrapped(wrap, cap):
            if self.graph is not None:
                flat = self.graph._standardize_inputs(inputs)
                outs = self._run_graph(self.graph, flat, "", cap)
                outputs = outs[0] if isinstance(outs, list) and len(outs) == 1 else outs
            else:
                outputs = self.model(inputs, training=False)
        missing = [p for p in paths if p not in cap.tensors]
        if missing:
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

    def _run_graph(self, graph: Any, flat_inputs: list[Any], prefix: str, cap: _Capture) -> Any:
        import keras

        tensors = {id(x): y for x, y in zip(graph.inputs, flat_inputs, strict=True)}
        by_depth = graph._nodes_by_depth
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                layer = node.operation
                if layer is None or node.is_input:
                    continue
                if any(id(x) not in tensors for x in node.input_tensors):
                    continue  # not computable from these inputs (as Functional skips it)
                args, kwargs = node.arguments.fill_in(tensors)
                path = prefix + layer.name
                inner = _graph_of(layer) if cap.needs_inside(path) else None
                if inner is not None:
                    flat = inner._standardize_inputs(args[0])
                    out = self._run_graph(inner, flat, path + "/", cap)
                    out = out[0] if isinstance(out, list) and len(out) == 1 else out
                else:
                    out = _call_layer(layer, args, kwargs)
                nodes = getattr(layer, "_inbound_nodes", [])
                out = cap.record(path, out, prefer=bool(nodes) and node is nodes[0])
                for x, y in zip(node.outputs, keras.tree.flatten(out), strict=False):
                    tensors[id(x)] = y
        outs = [tensors[id(x)] for x in graph.outputs]
        return keras.tree.pack_sequence_as(graph._outputs_struct, outs)

    @contextmanager
    def _wrapped(self, paths: list[str], cap: _Capture):
        """Wrap the ``call`` of layers reached only through sub-classed models; restore after."""
        saved = []
        try:
            for path in paths:
                layer = self.layer(path)
                own = layer.__dict__.get("call")
                original = layer.call

                def call(*args, __orig=original, __path=path, **kwargs):
                    return cap.record(__path, __orig(*args, **kwargs))

                object.__setattr__(layer, "call", call)
                saved.append((layer, own))
            yield
        finally:
            for layer, own in reversed(saved):
                if own is None:
                    object.__delattr__(layer, "call")
                else:
                    object.__setattr__(layer, "call", own)

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
            return {p: reduce_tensor(captured[p], reduction) for p in paths}

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
            _check_reduction(p, self._static_shape(p) or (), reduction)
        reduced = self.run(inputs, paths, reduction, compiled=compiled)
        return {p: to_layer_maps(p, self._static_shape(p), reduction.method, reduced[p]) for p in paths}

    def _static_shape(self, path: str) -> tuple | None:
        from maskviewer.inference.loading import _layer_output_shape

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
        lm.notes = notes
        return lm

    def layer_shapes(self, inputs: Any) -> dict[str, tuple]:
        """Every layer's output shape (batch axis included) from one pass on ``inputs``.

        Sub-classed models only tell their layers' shapes when run.
        """
        captured, _ = self.forward(inputs, [p for p in self.paths() if self._runs(p)])
        return {p: tuple(int(d) for d in t.shape) for p, t in captured.items()}

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


def input_key(inputs: Any) -> str:
    """A fingerprint of model inputs (shapes, dtypes and bytes) for the activation cache."""
    import keras

    h = hashlib.sha1()
    for a in keras.tree.flatten(inputs):
        arr = np.ascontiguousarray(np.asarray(a))
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.data)
    return h.hexdigest()


def tensor_nbytes(t: Any) -> int:
    """Bytes held by a tensor (shape times item size)."""
    import keras

    n = 1
    for d in t.shape:
        n *= int(d)
    return n * np.dtype(keras.backend.standardize_dtype(t.dtype)).itemsize


class ActivationCache:
    """Least-recently-used device tensors, capped in bytes.

    A tensor larger than the cap is not kept (it is used once and dropped), so what the cache
    holds never exceeds ``max_bytes``.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self.peak_bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, tensor: Any) -> bool:
        """Keep ``tensor`` (evicting the oldest as needed); False if it alone exceeds the cap."""
        size = tensor_nbytes(tensor)
        if key in self._items:
            self.nbytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return False
        while self._items and self.nbytes + size > self.max_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self.nbytes -= old
            self.evictions += 1
        self._items[key] = (tensor, size)
        self.nbytes += size
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        return True

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0


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


def describe_layers(host: Any, inputs: Any | None = None) -> list[LayerEntry]:
    """The layer list: shapes (measured by a run for sub-classed models), spatial, attention.

    Parameters
    ----------
    inputs : packed inputs, optional
        What to run the model on to measure shapes; zeros of the input shapes otherwise.
    """
    from maskviewer.inference.loading import _layer_output_shape

    probe = get_probe(host)
    info: ModelInfo = host.info
    shapes: dict[str, tuple] = {}
    if probe.kind == "subclassed" or any(
        layer.output_shape is None for layer in info.iter_layers()
    ):
        if inputs is None:
            arrays = {
                t.name: np.zeros([1] + [32 if d is None else int(d) for d in t.shape[1:]], np.float32)
                for t in info.inputs
            }
            inputs = host.pack_inputs(arrays)
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
        spatial = shape is not None and len(shape) == 4
        entries.append(
            LayerEntry(
                path=layer_info.path,
                class_name=layer_info.class_name,
                shape=shape,
                spatial=spatial,
                attention=spatial and is_attention_layer(layer, shape),
            )
        )
    return entries
