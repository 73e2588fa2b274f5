"""A plain description of a loaded model: inputs, outputs and the layer tree.

Built on the inference thread from the Keras model and handed to the GUI, which never
touches Keras objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TensorInfo:
    """One model input or output."""

    name: str
    shape: tuple  # with the batch axis, None for unknown dims
    dtype: str = "float32"
    #: outputs: the last layer's activation ("softmax", "sigmoid", "linear"...), "" when unknown
    activation: str = ""
    #: outputs: the class of the layer that makes it ("Dense"), "" when unknown
    layer_class: str = ""

    def shape_text(self) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"


@dataclass
class LayerInfo:
    """One layer; nested models carry their own layers as ``children``.

    ``path`` is unique in the model: the layer's name, prefixed by the names of the models it
    is nested in (``"encoder/conv1"``).
    """

    name: str
    path: str
    class_name: str
    output_shape: tuple | None
    params: int = 0
    trainable_params: int = 0
    children: list[LayerInfo] = field(default_factory=list)
    #: the model outputs computed from this layer's output; None when unknown (no graph)
    feeds: tuple[str, ...] | None = None

    def shape_text(self) -> str:
        if self.output_shape is None:
            return "?"
        if self.output_shape and isinstance(self.output_shape[0], tuple):
            return ", ".join(_fmt(s) for s in self.output_shape)
        return _fmt(self.output_shape)

    @property
    def is_spatial(self) -> bool:
        """A 4-D output ``(B, H, W, C)``: something that can be drawn over an image."""
        s = self.output_shape
        return s is not None and len(s) == 4 and not isinstance(s[0], tuple)


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


@dataclass
class PreprocessingStep:
    """One preprocessing layer found between a model input and its first computing layer.

    ``kind`` is ``"rescaling"`` (``y = x * scale + offset``) or ``"normalization"``
    (``y = (x - mean) / sqrt(variance)``); the numbers are per channel (one value: all channels).
    """

    layer: str  # the layer's path in the model ("base/rescaling")
    kind: str
    scale: list[float] = field(default_factory=list)
    offset: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)


@dataclass
class PreprocessingInfo:
    """What the model tells about the input it expects, read on the inference thread.

    Attributes
    ----------
    steps : list of PreprocessingStep
        The Rescaling / Normalization layers right after the input (nested models included).
    architecture : str
        A recognised ``keras.applications`` architecture (``"ResNet50"``), or ``""``.
    convention : str
        That architecture's ``preprocess_input`` mode: ``"caffe"``, ``"tf"``, ``"torch"``, or
        ``"inside"`` (the model preprocesses 0..255 itself); ``""`` when not recognised.
    recognised_by : str
        How the architecture was recognised (``"model name 'resnet50'"``, ``"layer names"``).
    confidence : str
        ``"high"`` (model name), ``"medium"`` (layer names) or ``""``.
    """

    steps: list[PreprocessingStep] = field(default_factory=list)
    architecture: str = ""
    convention: str = ""
    recognised_by: str = ""
    confidence: str = ""


@dataclass
class ModelInfo:
    """What the model panel shows, and what the controller needs to map inputs.

    Attributes
    ----------
    kind : str
        ``"sequential"``, ``"functional"``, ``"subclassed"`` or ``"savedmodel"``.
    probe_supported : bool
        False for SavedModels loaded through ``TFSMLayer``: there are no layers to look into.
    expects_0_255 : bool
        The first layer rescales by 1/255, so the input should be in 0..255.
    note : str
        Shown under the model name (e.g. why layers cannot be probed).
    preprocessing : dict of str to PreprocessingInfo
        Per input name: the preprocessing read from the model (see
        :func:`maskviewer.core.mapping.propose_mapping`).
    """

    name: str
    path: str
    kind: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    layers: list[LayerInfo]
    total_params: int = 0
    probe_supported: bool = True
    expects_0_255: bool = False
    note: str = ""
    preprocessing: dict[str, PreprocessingInfo] = field(default_factory=dict)

    def iter_layers(self):
        """All layers, depth first, nested ones after their model."""
        stack = list(reversed(self.layers))
        while stack:
            layer = stack.pop()
            yield layer
            stack.extend(reversed(layer.children))

    def find_layer(self, path: str) -> LayerInfo | None:
        return next((layer for layer in self.iter_layers() if layer.path == path), None)
