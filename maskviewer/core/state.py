"""The session state: what the user has open and chosen, independent of any widget.

Widgets read from it and subscribe to its events; the controller changes it. It lives on the
GUI thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import Frame, InputMapping
from maskviewer.core.model_info import ModelInfo
from maskviewer.core.output_kinds import OutputKinds


@dataclass
class Prediction:
    """One forward pass's result, batch axis removed.

    ``inputs`` are the exact arrays fed (so tests and exports can replay them) and ``frames``
    where each input's frame lies on its source image.
    """

    outputs: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    frames: dict[str, Frame] = field(default_factory=dict)
    seconds: float = 0.0


class AppState:
    """Image, model, input mappings and the latest prediction, with change events."""

    def __init__(self) -> None:
        self.image: ImageData | None = None
        self.model_info: ModelInfo | None = None
        self.mappings: dict[str, InputMapping] = {}
        self.labels: list[str] | None = None
        self.prediction: Prediction | None = None
        self.device: str = ""
        #: how each output is read (class scores, labels, values, maps); see core.output_kinds
        self.kinds = OutputKinds()
        self.image_changed = Event()
        self.model_changed = Event()
        self.mapping_changed = Event()
        self.prediction_changed = Event()
        self.labels_changed = Event()

    def set_image(self, image: ImageData | None) -> None:
        self.image = image
        self.prediction = None
        self.image_changed.emit(image)

    def set_model(
        self, info: ModelInfo | None, mappings: dict[str, InputMapping], kinds: dict[str, str] | None = None
    ) -> None:
        """A new model with its input mappings; ``kinds``: output kinds the user chose before."""
        self.model_info = info
        self.kinds.set_model(info, kinds)
        self.mappings = dict(mappings)
        self.prediction = None
        self.model_changed.emit(info)
        self.mapping_changed.emit(self.mappings)

    def set_mapping(self, input_name: str, mapping: InputMapping) -> None:
        self.mappings[input_name] = mapping
        self.mapping_changed.emit(self.mappings)

    def set_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.prediction_changed.emit(prediction)

    def set_labels(self, labels: list[str] | None) -> None:
        self.labels = labels
        self.labels_changed.emit(labels)
