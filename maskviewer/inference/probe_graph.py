"""Walking a Keras model for the activation probe: layer paths, the graph walk and call wrapping.

Sequential and functional models (nested ones too) are run node by node with the real input
tensors, recording the requested layers' outputs; layers reached only through sub-classed
models have their ``call`` wrapped for the duration of a pass. Nothing is added to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Hook = Callable[[Any], Any]


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


def run_graph(graph: Any, flat_inputs: list[Any], prefix: str, cap: _Capture) -> Any:
    """Run a functional ``graph`` node by node on ``flat_inputs``, recording into ``cap``.

    A nested graph model holding a wanted layer is walked the same way (its inner layers are
    reconnected to the outer tensors), so its layers are captured in the same pass.
    """
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
                out = run_graph(inner, flat, path + "/", cap)
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
def wrapped_calls(paths: list[str], layer_at: Callable[[str], Any], cap: _Capture) -> Iterator[None]:
    """Wrap the ``call`` of layers reached only through sub-classed models; restore after."""
    saved = []
    try:
        for path in paths:
            layer = layer_at(path)
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
