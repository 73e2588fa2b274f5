"""Model inputs from the session state: proposed mappings and the builder the worker runs.

Qt-free: the controller calls these on the GUI thread with its state, and the closure
returned by :func:`input_builder` runs on the inference thread on a snapshot of that state.
"""

from __future__ import annotations

from collections.abc import Callable

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.image import ImageData
from maskviewer.core.mapping import InputMapping, is_image_input, prepare_input, propose_mapping
from maskviewer.core.model_info import ModelInfo, TensorInfo
from maskviewer.io.images import load_image


def _propose(info: ModelInfo, spec: TensorInfo, image: ImageData | None) -> InputMapping:
    """The mapping proposed for ``spec`` from the preprocessing read from the model."""
    return propose_mapping(spec.shape, image, info.expects_0_255, info.preprocessing.get(spec.name))


def initial_mappings(
    info: ModelInfo, image: ImageData | None, saved: dict[str, InputMapping]
) -> dict[str, InputMapping]:
    """The mappings for a model just loaded: the saved ones, proposals for the other image inputs."""
    mappings = dict(saved)
    for spec in info.inputs:
        if spec.name not in mappings and is_image_input(spec.shape):
            mappings[spec.name] = _propose(info, spec, image)
    return mappings


def propose_missing(
    info: ModelInfo, image: ImageData | None, mappings: dict[str, InputMapping]
) -> None:
    """Update ``mappings`` in place for a newly opened ``image``.

    An input without a mapping gets a proposal; an input fed from the image gets a new one
    when the image switches between raw (an ``.npy`` of the exact input shape, fed as is) and
    scaled. Any other choice of the user's is kept.
    """
    for spec in info.inputs:
        if not is_image_input(spec.shape):
            continue
        current = mappings.get(spec.name)
        proposed = _propose(info, spec, image)
        if current is None or (proposed.scale == "raw") != (current.scale == "raw"):
            if current is None or current.source == "image":
                mappings[spec.name] = proposed


def input_builder(
    info: ModelInfo,
    image: ImageData,
    mappings: dict[str, InputMapping],
    extra_images: dict[str, ImageData],
    masks: dict,
) -> Callable[[], tuple[dict, dict]]:
    """A closure computing ``(arrays, frames)`` per model input (batch axis added).

    The arguments must be snapshots: the closure runs later, on the worker thread.
    """
    from maskviewer.core.mask_feed import is_mask_source, prepare_masked_input

    def build() -> tuple[dict, dict]:
        arrays, frames = {}, {}
        for spec in info.inputs:
            m = mappings.get(spec.name) or _propose(info, spec, image)
            if is_mask_source(m.source):
                x, frame = prepare_masked_input(image, m, spec.shape, masks)
            else:
                x, frame = prepare_input(_source_image(spec.name, m, image, extra_images), m, spec.shape)
            arrays[spec.name] = x[None]
            frames[spec.name] = frame
        return arrays, frames

    return build


def _source_image(
    name: str, mapping: InputMapping, image: ImageData, extra: dict[str, ImageData]
) -> ImageData:
    if mapping.source.startswith("file:"):
        return extra.get(mapping.source[5:]) or load_image(mapping.source[5:])
    if mapping.source != "image":
        raise MaskviewerError(f"Input {name!r}: the source {mapping.source!r} is not available.")
    return image
