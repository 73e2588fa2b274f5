"""Which model outputs each layer feeds, read from the graph of a functional or Sequential model.

A CAM explains one output through a layer's map, so the layer must be on a path to that
output: on a two-output model the last spatial layer often feeds only the other one. The
graph is walked backwards from every output tensor (into nested models too), so the answer
is exact for graph models; sub-classed models have no graph and are left unknown (``None``).
"""

from __future__ import annotations

from typing import Any

from maskviewer.core.model_info import ModelInfo


def output_dependencies(model: Any, output_names: list[str]) -> dict[str, set[str]] | None:
    """Layer path -> the names of the model outputs computed from that layer's output.

    Parameters
    ----------
    model : keras.Model
        Functional or Sequential (nested models are looked into).
    output_names : list of str
        The outputs' names in the order of ``model.outputs`` (dict outputs: the struct's keys).

    Returns
    -------
    dict or None
        None when the model has no graph to walk (sub-classed) or it cannot be matched to the
        output names.
    """
    from maskviewer.inference.probe_graph import _graph_of

    graph = _graph_of(model)
    if graph is None:
        return None
    struct = getattr(graph, "_outputs_struct", None)
    if isinstance(struct, dict) and set(struct) == set(output_names):
        pairs = [(name, struct[name]) for name in output_names]
    else:
        outputs = list(getattr(graph, "outputs", None) or [])
        if len(outputs) != len(output_names):
            return None
        pairs = list(zip(output_names, outputs, strict=True))
    deps: dict[str, set[str]] = {}
    for name, tensor in pairs:
        _walk_back(tensor, name, deps)
    return deps


def _walk_back(tensor: Any, output: str, deps: dict[str, set[str]]) -> None:
    """Mark every layer ``tensor`` is computed from as feeding ``output``."""
    from maskviewer.inference.probe_graph import _graph_of

    stack = [(tensor, "")]
    seen: set[tuple[int, str]] = set()
    while stack:
        t, prefix = stack.pop()
        history = getattr(t, "_keras_history", None)
        if history is None or (id(t), prefix) in seen:
            continue
        seen.add((id(t), prefix))
        op, node_index, tensor_index = history[0], history[1], history[2]
        path = prefix + str(op.name)
        deps.setdefault(path, set()).add(output)
        inner = _graph_of(op)
        if inner is not None:  # a nested model: into the inner output this tensor is
            inner_outputs = list(getattr(inner, "outputs", None) or [])
            if tensor_index < len(inner_outputs):
                stack.append((inner_outputs[tensor_index], path + "/"))
        nodes = getattr(op, "_inbound_nodes", None) or []
        if node_index < len(nodes):
            stack.extend((x, prefix) for x in nodes[node_index].input_tensors)


def annotate_feeds(model: Any, info: ModelInfo) -> None:
    """Fill every layer's ``feeds`` (the outputs it is on a path to) where the graph tells."""
    try:
        deps = output_dependencies(model, [t.name for t in info.outputs])
    except (AttributeError, IndexError, TypeError, ValueError):  # an unusual graph: unknown
        deps = None
    if deps is None:
        return
    for layer in info.iter_layers():
        layer.feeds = tuple(sorted(deps.get(layer.path, ())))
