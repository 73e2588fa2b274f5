"""Describing a loaded Keras model: its inputs, outputs and layer tree, as the GUI sees them.

Import these names from :mod:`maskviewer.inference.loading`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskviewer.core.errors import ModelLoadError
from maskviewer.core.mapping import read_scale
from maskviewer.core.model_info import LayerInfo, ModelInfo, TensorInfo
from maskviewer.inference.graph_info import annotate_feeds
from maskviewer.inference.preprocessing import read_preprocessing


@dataclass
class LoadedModel:
    """A model on the inference thread and what the GUI may know about it."""

    model: Any
    info: ModelInfo
    input_structure: str  # "single", "list" or "dict"
    input_keys: list[str] = field(default_factory=list)
    output_keys: list[str] = field(default_factory=list)
    #: SHA-256 of the bytes loaded (see ``maskviewer.io.untrusted.digest``)
    sha256: str = ""



def _shape(tensor_or_shape: Any) -> tuple | None:
    shape = getattr(tensor_or_shape, "shape", tensor_or_shape)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        return None


def _layer_output_shape(layer: Any) -> tuple | None:
    try:
        out = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(out, list | tuple):
        shapes = [_shape(o) for o in out]
        return tuple(shapes) if all(s is not None for s in shapes) else None
    if isinstance(out, dict):
        shapes = [_shape(o) for o in out.values()]
        return tuple(shapes) if all(s is not None for s in shapes) else None
    return _shape(out)


def _producer_name(tensor: Any) -> str:
    """The name of the layer that produced a symbolic tensor (its own name otherwise)."""
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None) or (history[0] if history else None)
    return str(getattr(op, "name", None) or tensor.name)


def _count(layer: Any, trainable: bool | None = None) -> int:
    try:
        weights = (
            layer.weights
            if trainable is None
            else (layer.trainable_weights if trainable else layer.non_trainable_weights)
        )
        total = 0
        for w in weights:
            n = 1
            for d in w.shape:
                n *= int(d)
            total += n
        return total
    except Exception:  # an unbuilt layer has no weights to count
        return 0


def layer_tree(layers: list[Any], prefix: str = "") -> list[LayerInfo]:
    """Describe ``layers`` (nested models recursively) as :class:`LayerInfo` nodes."""
    import keras

    nodes = []
    for layer in layers:
        path = f"{prefix}{layer.name}"
        children = []
        if isinstance(layer, keras.Model) and getattr(layer, "layers", None):
            children = layer_tree(layer.layers, prefix=f"{path}/")
        nodes.append(
            LayerInfo(
                name=layer.name,
                path=path,
                class_name=type(layer).__name__,
                output_shape=_layer_output_shape(layer),
                params=_count(layer),
                trainable_params=_count(layer, True),
                children=children,
            )
        )
    return nodes


def describe_model(model: Any, path: str | Path) -> LoadedModel:
    """Build the :class:`LoadedModel` for a Keras model (functional, Sequential or sub-classed)."""
    path = Path(path)
    kind = _model_kind(model)
    model_inputs = getattr(model, "inputs", None) if kind != "subclassed" else None
    if model_inputs:
        structure, keys, inputs = _graph_inputs(model, model_inputs)
    else:
        structure, keys, inputs = _recorded_inputs(model, path)
    out_keys, outputs = _outputs(model, kind)

    # What each input expects is read from the graph (model.layers[0] of a functional model
    # is its InputLayer, never the Rescaling after it); the decision is core.mapping's.
    preprocessing = read_preprocessing(model, [t.name for t in inputs]) if model_inputs else {}
    proposals = [read_scale(p) for p in preprocessing.values()]
    expects_0_255 = any(p is not None and p.scale == "0..255" for p in proposals)

    info = ModelInfo(
        name=path.name,
        path=str(path),
        kind=kind,
        inputs=inputs,
        outputs=outputs,
        layers=layer_tree(getattr(model, "layers", [])),
        total_params=_count(model),
        expects_0_255=expects_0_255,
        preprocessing=preprocessing,
        note=(
            "Sub-classed model: layer outputs are captured during an eager call."
            if kind == "subclassed"
            else ""
        ),
    )
    annotate_feeds(model, info)  # which outputs each layer feeds (the CAM layer's default)
    return LoadedModel(model, info, structure, keys, out_keys)


def _model_kind(model: Any) -> str:
    """``"sequential"``, ``"functional"`` or ``"subclassed"``."""
    import keras

    if isinstance(model, keras.Sequential):
        return "sequential"
    if hasattr(model, "_inputs_struct") and getattr(model, "_is_graph_network", True) and (
        type(model).__name__ == "Functional" or getattr(model, "inputs", None)
    ):
        return "functional"
    return "subclassed"


def _graph_inputs(model: Any, model_inputs: list[Any]) -> tuple[str, list[str], list[TensorInfo]]:
    """Input structure, keys and tensors of a model with symbolic inputs."""
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        keys = list(struct.keys())
        return "dict", keys, [TensorInfo(k, _shape(struct[k]), str(struct[k].dtype)) for k in keys]
    structure = "single" if len(model_inputs) == 1 else "list"
    keys = [t.name for t in model_inputs]
    return structure, keys, [TensorInfo(t.name, _shape(t), str(t.dtype)) for t in model_inputs]


def _recorded_inputs(model: Any, path: Path) -> tuple[str, list[str], list[TensorInfo]]:
    """Inputs of a sub-classed model, from the input shape recorded when it was built."""
    build = model.get_build_config() if hasattr(model, "get_build_config") else None
    shape = (build or {}).get("input_shape")
    if shape is None:
        raise ModelLoadError(
            f"{path.name}: a sub-classed model without a recorded input shape; build it "
            "(call it once) before saving so its input shape is known."
        )
    def unbatched(s: Any) -> tuple:  # recorded with the batch it was built on
        return (None, *tuple(s)[1:])

    if isinstance(shape, dict):
        keys = list(shape)
        return "dict", keys, [TensorInfo(k, unbatched(shape[k])) for k in keys]
    if shape and isinstance(shape[0], list | tuple):
        keys = [f"input_{i}" for i in range(len(shape))]
        return "list", keys, [TensorInfo(k, unbatched(s)) for k, s in zip(keys, shape, strict=True)]
    return "single", ["input"], [TensorInfo("input", unbatched(shape))]


def _outputs(model: Any, kind: str) -> tuple[list[str], list[TensorInfo]]:
    """Output keys and tensors (none known for a sub-classed model until it runs)."""
    model_outputs = getattr(model, "outputs", None) if kind != "subclassed" else None
    if not model_outputs:
        return [], []
    out_struct = getattr(model, "_outputs_struct", None)
    if isinstance(out_struct, dict):
        out_keys = list(out_struct.keys())
        return out_keys, [_output_info(k, out_struct[k]) for k in out_keys]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model_outputs) or any(n.startswith("keras_tensor") for n in names):
        names = [_producer_name(t) for t in model_outputs]
    return names, [_output_info(n, t) for n, t in zip(names, model_outputs, strict=True)]


#: layers that are an activation themselves, by class name
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu",
                      "PReLU": "prelu"}


def _output_info(name: str, tensor: Any) -> TensorInfo:
    """An output's shape with the activation and class of the layer that makes it (what the
    output kind is proposed from; see :mod:`maskviewer.core.output_kinds`)."""
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None) or (history[0] if history else None)
    layer_class = type(op).__name__ if op is not None else ""
    activation = _ACTIVATION_LAYERS.get(layer_class, "")
    fn = getattr(op, "activation", None)
    if not activation and callable(fn):
        activation = str(getattr(fn, "__name__", "") or "")
    if layer_class in ("Lambda", "TFSMLayer") or activation == "<lambda>":
        activation = ""  # Python code: its outputs are read from their values
    return TensorInfo(name, _shape(tensor), activation=activation, layer_class=layer_class)
