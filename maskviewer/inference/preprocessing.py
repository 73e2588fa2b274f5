"""Reading the preprocessing a Keras model carries, and recognising keras.applications models.

From each model input the graph is walked to the first computing layer: Rescaling and
Normalization layers met on the way are recorded with their numbers, nested models are entered,
layers that do not change values at inference (padding, augmentation) are stepped over. When
the model carries no preprocessing, its name and layer names are matched against the
``keras.applications`` architectures whose ``preprocess_input`` runs outside the model. An
architecture that preprocesses inside but was built without those layers
(``include_preprocessing=False``) is fed what the layers would have made.

Only plain data comes out (:class:`~maskviewer.core.model_info.PreprocessingInfo`); what to
feed is decided in :func:`maskviewer.core.mapping.propose_mapping`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from maskviewer.core.model_info import PreprocessingInfo, PreprocessingStep

#: layers that leave values alone at inference: the walk steps over them
_TRANSPARENT = {
    "ZeroPadding2D", "Cropping2D", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation",
    "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness", "RandomCrop",
    "Dropout", "GaussianNoise", "Activation", "Identity", "InputLayer",
}
_MAX_STEPS = 32  # a preprocessing chain is short; stop walking a long chain of inert layers

#: (architecture, preprocess_input mode, model-name pattern) for keras.applications models
_BY_NAME = (
    ("ResNet50V2/101V2/152V2", "tf", r"^resnet\d+v2$"),
    ("ResNet50/101/152", "caffe", r"^resnet\d+$"),
    ("VGG16/19", "caffe", r"^vgg1[69]$"),
    ("MobileNetV2", "tf", r"^mobilenetv2_"),
    ("MobileNet", "tf", r"^mobilenet_\d"),
    ("Xception", "tf", r"^xception$"),
    ("InceptionV3", "tf", r"^inception_v3$"),
    ("InceptionResNetV2", "tf", r"^inception_resnet_v2$"),
    ("NASNet", "tf", r"^nasnet"),
    ("DenseNet121/169/201", "torch", r"^densenet\d+$"),
    ("EfficientNet/EfficientNetV2", "inside", r"^efficientnet"),
    ("ConvNeXt", "inside", r"^convnext_"),
    ("MobileNetV3", "inside", r"^mobilenetv3"),
    ("RegNet", "inside", r"^regnet"),
)


def read_preprocessing(model: Any, input_names: list[str]) -> dict[str, PreprocessingInfo]:
    """Per model input, the preprocessing the model carries and its recognised architecture.

    Parameters
    ----------
    model : keras.Model
        A functional or Sequential model (a sub-classed one has no graph: nothing is read).
    input_names : list of str
        The input names as :class:`~maskviewer.core.model_info.ModelInfo` lists them, in the
        order of ``model.inputs``.
    """
    inputs = _inputs(model)
    if not inputs or len(inputs) != len(input_names):
        return {}
    found = {}
    for name, tensor in zip(input_names, inputs, strict=True):
        steps, models = _walk(model, tensor, "")
        models.reverse()
        info = PreprocessingInfo(steps=steps)
        for m in [*models, model]:  # the innermost (a transfer model's base) first
            if _recognise(m, info):
                if info.convention == "inside" and not steps:
                    _built_without_its_layers(info, str(getattr(m, "name", "")).lower())
                break
        found[name] = info
    return found


def _inputs(model: Any) -> list:
    try:
        return list(getattr(model, "inputs", None) or [])
    except (AttributeError, ValueError):  # a sub-classed model never called
        return []


def _consumers(model: Any, producer: Any) -> list[Any]:
    """The layers of ``model`` fed by an output of ``producer`` (a layer), each once.

    Matched on layers, not on one node's tensors: a loaded Sequential holds several copies of
    its node chain (one per build), and any copy tells which layer follows which.
    """
    outputs = {id(t) for node in getattr(producer, "_inbound_nodes", []) for t in node.output_tensors}
    found = []
    for layer in getattr(model, "layers", []):
        if layer is producer:
            continue
        if any(id(t) in outputs for node in layer._inbound_nodes for t in node.input_tensors):
            found.append(layer)
    return found


def _walk(model: Any, tensor: Any, prefix: str) -> tuple[list[PreprocessingStep], list]:
    """The preprocessing steps after ``tensor``, and the nested models the walk entered."""
    import keras

    steps: list[PreprocessingStep] = []
    entered: list = []
    layer = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    for _ in range(_MAX_STEPS):
        consumers = _consumers(model, layer) if layer is not None else []
        if len(consumers) != 1:  # the input branches (or ends): no single chain to read
            break
        layer = consumers[0]
        if isinstance(layer, keras.Model):
            entered.append(layer)
            inner = _inputs(layer)
            if len(inner) == 1:
                more, deeper = _walk(layer, inner[0], f"{prefix}{layer.name}/")
                steps += more
                entered += deeper
            break
        step = _step(layer, f"{prefix}{layer.name}")
        if step is not None:
            steps.append(step)
        elif type(layer).__name__ not in _TRANSPARENT:
            break
    return steps, entered


def _numbers(value: Any) -> list[float]:
    if value is None:
        return []
    return [float(v) for v in np.ravel(np.asarray(value, dtype=np.float64))]


def _step(layer: Any, path: str) -> PreprocessingStep | None:
    kind = type(layer).__name__
    if kind == "Rescaling":
        cfg = layer.get_config()
        return PreprocessingStep(path, "rescaling", scale=_numbers(_plain(cfg.get("scale", 1.0))),
                                 offset=_numbers(_plain(cfg.get("offset", 0.0))))
    if kind == "Normalization":
        if getattr(layer, "invert", False):
            return None
        mean = getattr(layer, "mean", None)
        variance = getattr(layer, "variance", None)
        return PreprocessingStep(path, "normalization", mean=_numbers(_value(mean)),
                                 variance=_numbers(_value(variance)))
    return None


def _plain(value: Any) -> Any:
    """A Rescaling config value: a number, a list, or a serialised array."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("value", value.get("value"))
    return value


def _value(v: Any) -> Any:
    if v is None:
        return None
    try:
        import keras

        return keras.ops.convert_to_numpy(v)
    except Exception:  # an unbuilt layer: nothing to read
        return np.asarray(v) if not hasattr(v, "shape") else None


def _recognise(model: Any, info: PreprocessingInfo) -> bool:
    """Fill ``info``'s architecture from ``model``'s name, else its layer names."""
    name = str(getattr(model, "name", "")).lower()
    for arch, mode, pattern in _BY_NAME:
        if re.search(pattern, name):
            info.architecture, info.convention = arch, mode
            info.recognised_by, info.confidence = f"model name {name!r}", "high"
            return True
    match = _by_layer_names({str(layer.name) for layer in getattr(model, "layers", [])})
    if match is not None:
        info.architecture, info.convention = match
        info.recognised_by, info.confidence = "layer names", "medium"
        return True
    return False


def _built_without_its_layers(info: PreprocessingInfo, name: str) -> None:
    """An "inside" architecture built with ``include_preprocessing=False``: feed it what the
    layers it left out would have made (0..255 would be fed unscaled to its first convolution)."""
    if info.architecture == "MobileNetV3":
        mode = "tf"  # Rescaling 1/127.5 offset -1
    elif info.architecture in ("ConvNeXt", "RegNet"):
        mode = "torch"  # Normalization with the ImageNet mean/std (ConvNeXt's in 0..255 units)
    elif re.search(r"^efficientnetv2-b", name):
        mode = "torch"  # Rescaling 1/255, then Normalization with the ImageNet mean/std
    elif re.search(r"^efficientnetv2-", name):
        mode = "tf"  # S/M/L: Rescaling 1/128 offset -1, within 0.4 % of -1..1
    else:
        return  # EfficientNet (V1) always carries its layers: nothing known to feed instead
    info.architecture = f"{info.architecture} built without its preprocessing layers"
    info.convention = mode


def _by_layer_names(names: set[str]) -> tuple[str, str] | None:
    """The architecture whose characteristic layer names ``names`` holds (renamed models)."""
    if {"conv2_block1_preact_bn", "post_bn"} <= names:
        return "ResNet50V2/101V2/152V2", "tf"
    if {"conv1_conv", "conv2_block1_0_conv", "conv2_block1_add"} <= names:
        return "ResNet50/101/152", "caffe"
    if {"pool2_conv", "conv2_block1_0_bn", "conv2_block1_concat"} <= names:
        return "DenseNet121/169/201", "torch"
    if {"Conv1", "expanded_conv_project", "block_1_expand"} <= names:
        return "MobileNetV2", "tf"
    if {"conv_dw_1", "conv_pw_1"} <= names:
        return "MobileNet", "tf"
    if {"block2_sepconv1", "block14_sepconv2"} <= names:
        return "Xception", "tf"
    if {"mixed0", "mixed10"} <= names:
        return "InceptionV3", "tf"
    # its blocks are named by their layers ("block35_1_mixed"), no layer is "block35_1" itself
    if {"block35_1_mixed", "block17_1_mixed", "mixed_5b"} <= names:
        return "InceptionResNetV2", "tf"
    if {"stem_conv1", "reduction_concat_stem_1", "normal_concat_0"} <= names:
        return "NASNet", "tf"
    if {"block1_conv1", "block5_pool"} <= names and not any("sepconv" in n for n in names):
        return "VGG16/19", "caffe"
    return None
