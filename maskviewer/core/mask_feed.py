"""How a painted mask feeds the model, and the mask ablation.

A mask reaches the model in one of four ways, recorded in the input mapping's ``source`` so it
is remembered per model with the rest of the mapping:

==============  ======================  ===============================================
mode            mapping source          what the input receives
==============  ======================  ===============================================
``none``        ``image``               the image only
``channel``     ``image+mask:NAME``     the image's C-1 channels, then the mask (0..1)
``multiply``    ``image*mask:NAME``     ``image * mask`` (in 0..1 pixel units), then scaled
``input``       ``mask:NAME``           the mask alone, as a grey image with values 0..1
==============  ======================  ===============================================

Resizing follows the image exactly (same resize mode, same frame). A mask with values other
than 0 and 1 (a soft or weighted mask) is resized bilinearly, like the image; a binary mask is
resized with nearest neighbour so the model sees a binary mask, as it was trained with.
The mask channel and the mask multiplied into the image are always in 0..1, whatever the image
scaling (a model rescaling its input by 1/255 sees the mask channel divided too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from maskviewer.core.errors import InputMappingError
from maskviewer.core.image import ImageData, resize_bilinear, resize_nearest
from maskviewer.core.mapping import (
    Frame,
    InputMapping,
    is_image_input,
    prepare_input,
    resize_to_input,
    spatial_shape,
)
from maskviewer.core.mask_values import as_float_mask
from maskviewer.core.model_info import ModelInfo

MASK_MODES = ("none", "channel", "multiply", "input")
MODE_LABELS = {
    "none": "Not fed to the model",
    "channel": "Extra channel after the image's",
    "multiply": "Multiplied into the image",
    "input": "Separate model input",
}
_PREFIX = {"channel": "image+mask:", "multiply": "image*mask:", "input": "mask:"}
#: Names that suggest a model input takes a mask.
MASK_INPUT_NAME = re.compile(r"mask|attention|attn|weight|roi|seg|prior|guide", re.IGNORECASE)


@dataclass(frozen=True)
class MaskFeed:
    """Where the mask goes: a mode, the model input it goes to, and which mask."""

    mode: str = "none"
    input_name: str | None = None
    mask_name: str | None = None

    @property
    def label(self) -> str:
        """``"none"``, ``"channel"``, ``"multiply"`` or ``"input:NAME"``."""
        return f"input:{self.input_name}" if self.mode == "input" else self.mode

    def describe(self) -> str:
        if self.mode == "none":
            return "The mask is not fed to the model."
        what = {"channel": "as an extra channel of", "multiply": "multiplied into",
                "input": "as"}[self.mode]
        return f"Mask {self.mask_name!r} is fed {what} input {self.input_name!r}."


def mask_source(mode: str, mask_name: str) -> str:
    """The mapping source string for ``mode`` (``"image"`` for ``"none"``)."""
    if mode == "none":
        return "image"
    if mode not in _PREFIX:
        raise ValueError(f"unknown mask mode {mode!r}")
    return _PREFIX[mode] + mask_name


def parse_source(source: str) -> tuple[str, str | None]:
    """``(mode, mask name)`` of a mapping source; ``("none", None)`` for other sources."""
    for mode, prefix in _PREFIX.items():
        if source.startswith(prefix):
            return mode, source[len(prefix):]
    return "none", None


def is_mask_source(source: str) -> bool:
    return parse_source(source)[0] != "none"


def current_feed(mappings: dict[str, InputMapping]) -> MaskFeed:
    """The feed the mappings describe (the first input that takes a mask)."""
    for name, m in mappings.items():
        mode, mask = parse_source(m.source)
        if mode != "none":
            return MaskFeed(mode, name, mask)
    return MaskFeed()


def masks_needed(mappings: dict[str, InputMapping]) -> set[str]:
    """Names of the masks the mappings feed to the model."""
    out = set()
    for m in mappings.values():
        mode, mask = parse_source(m.source)
        if mode != "none" and mask is not None:
            out.add(mask)
    return out


def _channels(shape: tuple) -> int | None:
    try:
        return spatial_shape(shape)[2]
    except InputMappingError:
        return None


def feed_options(info: ModelInfo) -> list[MaskFeed]:
    """Every feed that fits the model's inputs (mask name left unset)."""
    options = [MaskFeed()]
    for spec in info.inputs:
        if not is_image_input(spec.shape):
            continue
        c = _channels(spec.shape)
        if c is not None and c >= 2:
            options.append(MaskFeed("channel", spec.name))
        options.append(MaskFeed("multiply", spec.name))
        if (c in (1, None)) and len(info.inputs) > 1:
            options.append(MaskFeed("input", spec.name))
    return options


def propose_mask_mode(info: ModelInfo, image_channels: int | None = None) -> MaskFeed:
    """Propose how the mask feeds ``info``'s model, from its input shapes and names.

    - a 1-channel input named like mask/attention/weights/roi of a multi-input model: that input;
    - the only image input with one channel more than the image (4 for RGB, 2 for grey; without
      an image: 4 or 2): the mask as that extra channel;
    - two image inputs of the same size, one with 1 channel: that one as the mask input;
    - otherwise none (multiplying into the image stays a choice for the user).

    Parameters
    ----------
    info : ModelInfo
        The model's inputs.
    image_channels : int, optional
        Colour channels of the current image (1 grey, 3 RGB; alpha not counted).
    """
    images = [s for s in info.inputs if is_image_input(s.shape)]
    if len(images) > 1:
        for spec in images:
            if _channels(spec.shape) in (1, None) and MASK_INPUT_NAME.search(spec.name):
                return MaskFeed("input", spec.name)
    if len(images) == 1:
        c = _channels(images[0].shape)
        wanted = {image_channels + 1} if image_channels else {2, 4}
        if c in wanted:
            return MaskFeed("channel", images[0].name)
    if len(images) == 2:
        a, b = images
        same = tuple(a.shape[1:3]) == tuple(b.shape[1:3])
        ca, cb = _channels(a.shape), _channels(b.shape)
        if same and (ca in (1, None)) != (cb in (1, None)):
            return MaskFeed("input", a.name if ca in (1, None) else b.name)
    return MaskFeed()


def apply_feed(
    mappings: dict[str, InputMapping], feed: MaskFeed
) -> dict[str, InputMapping]:
    """New mappings with ``feed`` applied: mask sources elsewhere go back to the image."""
    out = {}
    for name, m in mappings.items():
        if is_mask_source(m.source):
            m = InputMapping.from_dict({**m.to_dict(), "source": "image"})
        out[name] = m
    if feed.mode != "none" and feed.input_name is not None:
        base = out.get(feed.input_name, InputMapping())
        d = {**base.to_dict(), "source": mask_source(feed.mode, feed.mask_name or "mask")}
        if feed.mode == "input":
            d["scale"] = "0..1"
        out[feed.input_name] = InputMapping.from_dict(d)
    return out


# ---------------------------------------------------------------------------------------------
# Turning a mask into (part of) a model input


def _is_binary(mask: np.ndarray) -> bool:
    return bool(np.all((mask == 0) | (mask == 1)))


def resize_like_image(
    mask: np.ndarray, resize: str, height: int, width: int, method: str = "auto"
) -> tuple[np.ndarray, Frame]:
    """Resize a ``(H, W)`` mask to ``(height, width)`` exactly as :func:`prepare_input` resizes images.

    Parameters
    ----------
    mask : ndarray
        ``(H, W)`` float values in 0..1.
    resize : str
        The mapping's resize mode (stretch, fit, crop, none).
    method : str
        ``"bilinear"``, ``"nearest"`` or ``"auto"`` (nearest for a binary mask).

    Returns
    -------
    ndarray
        ``(height, width)`` float32.
    Frame
        The same frame the image gets.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if method == "auto":
        method = "nearest" if _is_binary(mask) else "bilinear"
    if method == "nearest":
        def rs(a: np.ndarray, h: int, w: int) -> np.ndarray:
            return resize_nearest(a, h, w)
    else:
        def rs(a: np.ndarray, h: int, w: int) -> np.ndarray:
            return resize_bilinear(a, h, w)
    out, frame = resize_to_input(mask[:, :, None], resize, height, width, rs, what="mask")
    return np.ascontiguousarray(out[:, :, 0], dtype=np.float32), frame

def _lookup(masks: dict[str, np.ndarray], name: str | None, image: ImageData) -> np.ndarray:
    if name is None or name not in masks:
        have = ", ".join(repr(n) for n in masks) or "none"
        raise InputMappingError(
            f"The model input takes the mask {name!r}, which this image does not have (masks: "
            f"{have}). Pick the mask to feed in the Masks panel."
        )
    mask = np.asarray(masks[name])
    if mask.shape != (image.height, image.width):
        raise InputMappingError(
            f"The mask {name!r} is {mask.shape[1]}×{mask.shape[0]} but the image is "
            f"{image.width}×{image.height}."
        )
    return as_float_mask(mask)  # a compact mask (uint8 from a file) becomes 0..1 only here


def prepare_masked_input(
    image: ImageData,
    mapping: InputMapping,
    input_shape: tuple,
    masks: dict[str, np.ndarray],
) -> tuple[np.ndarray, Frame]:
    """Like :func:`prepare_input` for a mapping whose source involves a mask.

    Parameters
    ----------
    image : ImageData
        The current image.
    mapping : InputMapping
        Its ``source`` is ``image+mask:NAME``, ``image*mask:NAME`` or ``mask:NAME``.
    input_shape : tuple
        The model input's shape (with or without the batch axis).
    masks : dict
        Mask name to ``(H, W)`` float32 array of the image's size.

    Returns
    -------
    x : ndarray, float32
        The input without the batch axis.
    frame : Frame
        Where it lies on the image.

    Raises
    ------
    InputMappingError
        The mask is missing, or the input cannot take it (e.g. a mask input with 3 channels).
    """
    mode, name = parse_source(mapping.source)
    if mode == "none":
        return prepare_input(image, mapping, input_shape)
    mask = _lookup(masks, name, image)
    th, tw, tc = spatial_shape(input_shape)
    th = image.height if th is None else th
    tw = image.width if tw is None else tw
    plain = InputMapping.from_dict({**mapping.to_dict(), "source": "image"})

    if mode == "multiply":
        # multiply in pixel units, before scaling, so a masked-out pixel is black
        arr = image.array.astype(np.float32) * mask[:, :, None]
        masked = ImageData(arr, image.path, image.value_max, None)
        return prepare_input(masked, plain, input_shape)
    if mode == "channel":
        return _with_mask_channel(image, mask, mapping, plain, input_shape, (th, tw, tc))
    return _mask_alone(mask, mapping, input_shape, (th, tw, tc))


def _with_mask_channel(
    image: ImageData,
    mask: np.ndarray,
    mapping: InputMapping,
    plain: InputMapping,
    input_shape: tuple,
    target: tuple[int, int, int | None],
) -> tuple[np.ndarray, Frame]:
    """The image in the input's first C-1 channels, the mask (0..1, unscaled) in the last."""
    th, tw, tc = target
    if tc is None or tc < 2:
        raise InputMappingError(
            f"An input of shape {tuple(input_shape)} has no room for a mask channel (it "
            "needs the image's channels plus one)."
        )
    batch = (None,) if len(tuple(input_shape)) == 4 else ()
    x, frame = prepare_input(image, plain, (*batch, th, tw, tc - 1))
    m, _ = resize_like_image(mask, mapping.resize, th, tw)
    return np.ascontiguousarray(np.concatenate([x, m[:, :, None]], axis=2)), frame


def _mask_alone(
    mask: np.ndarray, mapping: InputMapping, input_shape: tuple, target: tuple[int, int, int | None]
) -> tuple[np.ndarray, Frame]:
    """A separate input: the mask alone, scaled like a grey image in 0..1."""
    th, tw, tc = target
    if tc not in (1, None):
        raise InputMappingError(
            f"Input of shape {tuple(input_shape)} has {tc} channels; a mask fills a 1-channel "
            "input. Feed it as an extra channel or multiply it into the image instead."
        )
    m, frame = resize_like_image(mask, mapping.resize, th, tw)
    scaled = _scale_unit(m, mapping)
    return (scaled[:, :, None] if tc == 1 else scaled), frame


def _scale_unit(m: np.ndarray, mapping: InputMapping) -> np.ndarray:
    """Scale 0..1 values as the mapping scales an image (raw: as they are)."""
    if mapping.scale == "0..255":
        return m * np.float32(255.0)
    if mapping.scale == "-1..1":
        return m * np.float32(2.0) - np.float32(1.0)
    if mapping.scale == "mean/std":
        mean = np.float32(mapping.mean[0] if mapping.mean else 0.0)
        std = np.float32(mapping.std[0] if mapping.std else 1.0)
        if std == 0:
            raise InputMappingError("A standard deviation of 0 in the input mapping: set std > 0.")
        return (m - mean) / std
    return m


# ---------------------------------------------------------------------------------------------
# Ablation

ABLATIONS = ("painted", "zeros", "ones", "random", "inverted")
ABLATION_LABELS = {
    "painted": "Painted",
    "zeros": "No mask (0)",
    "ones": "All ones",
    "random": "Random",
    "inverted": "Inverted",
}


def ablation_masks(mask: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The mask variants of the ablation, each float32 of ``mask``'s shape.

    ``random`` is a seeded random binary mask covering the same fraction of pixels as the
    painted one (values >= 0.5), or half of them when the painted mask is empty or full, so it
    tests *where* the mask is, not how much of it there is.
    """
    mask = np.asarray(mask, dtype=np.float32)
    frac = float(np.mean(mask >= 0.5)) if mask.size else 0.0
    if frac in (0.0, 1.0):
        frac = 0.5
    rng = np.random.default_rng(seed)
    return {
        "painted": mask.copy(),
        "zeros": np.zeros_like(mask),
        "ones": np.ones_like(mask),
        "random": (rng.random(mask.shape) < frac).astype(np.float32),
        "inverted": (np.float32(1.0) - mask).astype(np.float32),
    }


@dataclass
class AblationRow:
    """One line of the ablation table: an output entry across the variants."""

    output: str
    entry: str
    values: dict[str, float]

    def delta(self, variant: str, reference: str = "painted") -> float:
        return self.values[variant] - self.values[reference]


def ablation_rows(
    results: dict[str, dict[str, np.ndarray]],
    labels: list[str] | None = None,
    max_entries: int = 10,
) -> list[AblationRow]:
    """Rows comparing the variants' outputs (batch axis removed).

    A vector output gives one row per entry (the ``max_entries`` highest with the painted mask,
    in index order); any other output gives its mean and its mean absolute difference from the
    painted run.
    """
    variants = [v for v in ABLATIONS if v in results]
    if "painted" not in results:
        return []
    rows: list[AblationRow] = []
    for out_name, ref in results["painted"].items():
        ref = np.asarray(ref)
        if ref.ndim <= 1:
            vec = ref.reshape(-1)
            idx = np.sort(np.argsort(-vec, kind="stable")[:max_entries])
            for i in idx:
                label = labels[i] if labels is not None and i < len(labels) else str(int(i))
                rows.append(
                    AblationRow(
                        out_name, label,
                        {v: float(np.asarray(results[v][out_name]).reshape(-1)[i]) for v in variants},
                    )
                )
        else:
            rows.append(AblationRow(
                out_name, "mean", {v: float(np.mean(results[v][out_name])) for v in variants}))
            rows.append(AblationRow(
                out_name, "mean |Δ painted|",
                {v: float(np.mean(np.abs(np.asarray(results[v][out_name], np.float64) - ref)))
                 for v in variants},
            ))
    return rows
