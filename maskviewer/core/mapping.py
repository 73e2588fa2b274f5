"""How an image becomes a model input: resize, scaling and channels.

The mapping is proposed from the model's input shape, edited in the input panel and
remembered per model. :func:`prepare_input` is the single place where pixels turn into the
tensor the model sees, so tests can compare the app's predictions with ``model(x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from maskviewer.core.errors import InputMappingError
from maskviewer.core.image import (
    ImageData,
    _bilinear_axis,
    bilinear_blend,
    convert_channels,
    resize_bilinear,
)
from maskviewer.core.model_info import PreprocessingInfo, PreprocessingStep

RESIZE_MODES = ("stretch", "fit", "crop", "none")
RESIZE_LABELS = {
    "stretch": "Stretch to the input size",
    "fit": "Fit inside, pad with zeros",
    "crop": "Fill, crop the centre",
    "none": "No resize (sizes must match)",
}
SCALE_MODES = ("0..1", "0..255", "-1..1", "mean/std", "caffe", "raw")
SCALE_LABELS = {
    "0..1": "0 … 1",
    "0..255": "0 … 255",
    "-1..1": "−1 … 1",
    "mean/std": "(x − mean) / std, x in 0 … 1",
    "caffe": "BGR, 0 … 255 − ImageNet mean (caffe)",
    "raw": "Raw values (as stored)",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the "caffe" convention's per-channel mean, in BGR order and 0..255 units (keras.applications)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: the units an image is brought to before scaling: 255 where Keras' own preprocessing starts
#: from 0..255 pixels, so that the same float operations give the same bits
_BASE_255 = ("0..255", "-1..1", "caffe")


@dataclass
class InputMapping:
    """The recipe turning an image into one model input.

    Attributes
    ----------
    source : str
        ``"image"`` (the current image), ``"file:PATH"`` (another image) or, for mask inputs,
        ``"mask:NAME"``.
    resize : str
        One of :data:`RESIZE_MODES`.
    scale : str
        One of :data:`SCALE_MODES`.
    mean, std : tuple of float
        Per-channel statistics for ``"mean/std"`` (in 0..1 units).
    """

    source: str = "image"
    resize: str = "stretch"
    scale: str = "0..1"
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> InputMapping:
        m = cls()
        for key in ("source", "resize", "scale"):
            if key in d:
                setattr(m, key, str(d[key]))
        for key in ("mean", "std"):
            if key in d:
                setattr(m, key, tuple(float(v) for v in d[key]))
        if m.resize not in RESIZE_MODES:
            m.resize = "stretch"
        if m.scale not in SCALE_MODES:
            m.scale = "0..1"
        return m


def parse_scale(text: str) -> dict:
    """A scaling as written on the command line -> the mapping fields it sets.

    ``0..1``, ``0..255``, ``-1..1``, ``raw``, ``caffe``, ``imagenet`` (mean/std with the
    ImageNet statistics), ``mean/std`` (the same) or ``mean=M1,M2,M3,std=S1,S2,S3``
    (statistics in 0..1 units; one value each is fine for grey).

    Raises
    ------
    InputMappingError
        With the forms accepted, when ``text`` is none of them.
    """
    t = text.strip().lower().replace(" ", "").replace("\u2212", "-").replace("…", "..")
    if t in ("imagenet", "mean/std"):
        return {"scale": "mean/std", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if t in SCALE_MODES:
        return {"scale": t}
    if t.startswith("mean=") and ",std=" in t:
        mean_text, std_text = t[5:].split(",std=", 1)
        try:
            mean = [float(v) for v in mean_text.split(",")]
            std = [float(v) for v in std_text.split(",")]
        except ValueError:
            mean = std = []
        if mean and std and all(np.isfinite(mean + std)) and all(v != 0 for v in std):
            return {"scale": "mean/std", "mean": mean, "std": std}
    raise InputMappingError(
        f"unknown scaling {text!r}: use 0..1, 0..255, -1..1, raw, caffe, imagenet or "
        "mean=M1,M2,M3,std=S1,S2,S3 (statistics in 0..1 units, std non-zero)"
    )


def scale_text(mapping: InputMapping) -> str:
    """The ``--scale`` value that gives ``mapping``'s scaling (inverse of :func:`parse_scale`)."""
    if mapping.scale != "mean/std":
        return mapping.scale
    nums = lambda vs: ",".join(f"{v:.10g}" for v in vs)  # noqa: E731
    return f"mean={nums(mapping.mean)},std={nums(mapping.std)}"


@dataclass(frozen=True)
class Frame:
    """Where the model input's frame lies in image pixel coordinates.

    ``(x, y, width, height)``: a map computed over the model input (an activation, a CAM) is
    drawn over the image by stretching it onto this rectangle. With "fit" the frame is larger
    than the image (the padding), with "crop" it is smaller.
    """

    x: float
    y: float
    width: float
    height: float


def spatial_shape(shape: tuple) -> tuple[int | None, int | None, int | None]:
    """``(H, W, C)`` of a model input shape given with or without the batch axis."""
    dims = tuple(shape)
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) == 3:
        return dims[0], dims[1], dims[2]
    if len(dims) == 2:  # (H, W): grey without a channel axis
        return dims[0], dims[1], None
    raise InputMappingError(
        f"An input of shape {tuple(shape)} is not an image input (expected (H, W, C))."
    )


def is_image_input(shape: tuple) -> bool:
    dims = tuple(shape)
    if len(dims) == 4:
        return True
    return len(dims) == 3 and dims[0] is not None


def propose_mapping(
    input_shape: tuple,
    image: ImageData | None = None,
    expects_0_255: bool = False,
    preprocessing: PreprocessingInfo | None = None,
) -> InputMapping:
    """Propose a mapping for a model input of ``input_shape`` (with the batch axis).

    An ``.npy`` image whose shape already equals the input is fed as is. Otherwise the image
    is stretched and scaled as the preprocessing read from the model says
    (:func:`read_scale`); without any, 0..255 if ``expects_0_255`` else 0..1.
    """
    if image is not None and image.raw is not None and _raw_matches(image.raw, input_shape):
        return InputMapping(resize="none", scale="raw")
    if preprocessing is not None:
        proposal = read_scale(preprocessing)
        if proposal is not None:
            return InputMapping(resize="stretch", scale=proposal.scale, mean=proposal.mean,
                                std=proposal.std)
    return InputMapping(resize="stretch", scale="0..255" if expects_0_255 else "0..1")


@dataclass(frozen=True)
class ScaleProposal:
    """The scaling proposed from what a model carries, and why.

    ``confidence``: ``"read"`` (from the model's own layers), ``"high"`` (architecture known by
    the model's name) or ``"medium"`` (by its layer names).
    """

    scale: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    confidence: str = "read"
    reason: str = ""


#: a keras.applications ``preprocess_input`` mode -> the scaling that reproduces it
_CONVENTIONS = {
    "caffe": ("caffe", "BGR, 0…255 minus the ImageNet mean"),
    "tf": ("-1..1", "0…255 to −1…1"),
    "torch": ("mean/std", "0…1, minus the ImageNet mean, over its std"),
    "inside": ("0..255", "0…255, the model preprocesses itself"),
}
_SURE = {"high": "sure", "medium": "likely"}


def read_scale(pre: PreprocessingInfo) -> ScaleProposal | None:
    """Decide the scaling from the preprocessing read from a model (None: nothing known).

    Rescaling/Normalization layers after the input are composed into one per-channel affine
    map ``a·x + b``; the input range (0..255 or 0..1) whose image under that map is closest to
    a unit-sized range (width ≈ 2: 0..1, −1..1 and mean/std all land near it) is the one the
    model was built for. Without such layers a recognised ``keras.applications`` architecture
    gives its documented ``preprocess_input`` convention.
    """
    steps = [s for s in pre.steps if not _is_identity(s)]
    if steps:
        a, _ = _compose(steps)
        width = float(np.max(np.abs(a)))
        # the width 0..255 and 0..1 take after the model's map; the one nearer 2 wins
        widths = {"0..255": width * 255.0, "0..1": width}
        scale = min(widths, key=lambda m: abs(np.log(max(widths[m], 1e-12) / 2.0)))
        what = ", then ".join(_step_text(s) for s in pre.steps)
        return ScaleProposal(scale, reason=f"{what} after the input → feeding {SCALE_LABELS[scale]}")
    if pre.convention in _CONVENTIONS:
        scale, text = _CONVENTIONS[pre.convention]
        return ScaleProposal(
            scale, confidence=pre.confidence,
            reason=(f"recognised as keras.applications {pre.architecture} by its {pre.recognised_by} "
                    f"({_SURE.get(pre.confidence, 'a guess')}); its preprocess_input "
                    f"({pre.convention}) expects {text} → feeding {SCALE_LABELS[scale]}"),
        )
    return None


def explain_mapping(pre: PreprocessingInfo | None) -> str:
    """One line for the input panel and ``maskviewer info``: what was read, what is fed."""
    proposal = read_scale(pre) if pre is not None else None
    if proposal is None:
        return "Read from the model: no preprocessing layers, architecture not recognised → feeding 0 … 1 (check it)"
    return f"Read from the model: {proposal.reason}"


def _is_identity(step: PreprocessingStep) -> bool:
    """An unadapted Normalization (mean 0, variance 1) or a Rescaling by 1 changes nothing."""
    if step.kind == "normalization":
        return np.allclose(step.mean or [0.0], 0.0) and np.allclose(step.variance or [1.0], 1.0)
    return np.allclose(step.scale or [1.0], 1.0) and np.allclose(step.offset or [0.0], 0.0)


def _compose(steps: list[PreprocessingStep]) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(a, b)`` of ``y = a·x + b`` equal to running ``steps`` in order."""
    a, b = np.ones(1), np.zeros(1)
    for s in steps:
        if s.kind == "rescaling":
            k, o = np.asarray(s.scale or [1.0]), np.asarray(s.offset or [0.0])
            a, b = a * k, b * k + o
        else:
            sd = np.sqrt(np.maximum(np.asarray(s.variance or [1.0]), 1e-12))
            a, b = a / sd, (b - np.asarray(s.mean or [0.0])) / sd
    return a, b


def _num(values: list[float]) -> str:
    v = [f"{x:.4g}" for x in values]
    return v[0] if len(set(v)) == 1 else "(" + ", ".join(v) + ")"


def _step_text(s: PreprocessingStep) -> str:
    if s.kind == "normalization":
        if _is_identity(s):
            return "Normalization (not adapted: no change)"
        std = [float(np.sqrt(v)) for v in s.variance]
        return f"Normalization mean {_num(s.mean)} std {_num(std)}{_where(s)}"
    k = s.scale[0] if len(s.scale) == 1 else None
    scale = f"1/{1 / k:.4g}" if k and abs(2 / k - round(2 / k)) < 1e-3 else _num(s.scale)
    offset = f" offset {_num(s.offset)}" if s.offset and not np.allclose(s.offset, 0) else ""
    return f"Rescaling {scale}{offset}{_where(s)}"


def _where(s: PreprocessingStep) -> str:
    """Where a step inside a nested model lives (``" in prep"``); nothing at the top level."""
    return f" in {s.layer.rsplit('/', 1)[0]}" if "/" in s.layer else ""


def _raw_matches(raw: np.ndarray, input_shape: tuple) -> bool:
    want = tuple(input_shape)
    for candidate in (want, want[1:]):
        if len(candidate) == raw.ndim and all(
            d is None or d == s for d, s in zip(candidate, raw.shape, strict=True)
        ):
            return True
    return False


def _scale(x: np.ndarray, mapping: InputMapping) -> np.ndarray:
    """Scale ``x`` (in 0..255 units for the modes of :data:`_BASE_255`, else 0..1)."""
    if mapping.scale in ("0..1", "raw", "0..255"):  # raw: never divided by full scale
        return x
    if mapping.scale == "-1..1":  # as keras.applications' "tf" mode: x / 127.5 - 1
        return x / np.float32(127.5) - np.float32(1.0)
    if mapping.scale == "caffe":
        if x.shape[-1] != 3:
            raise InputMappingError("The caffe scaling needs an RGB (3-channel) input.")
        return x[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    if mapping.scale == "mean/std":
        c = x.shape[-1]
        mean = np.resize(np.asarray(mapping.mean, dtype=np.float32), c)
        std = np.resize(np.asarray(mapping.std, dtype=np.float32), c)
        if np.any(std == 0):
            raise InputMappingError("A standard deviation of 0 in the input mapping: set std > 0.")
        return (x - mean) / std
    raise InputMappingError(f"Unknown scaling {mapping.scale!r}.")


def resize_to_input(
    x: np.ndarray,
    resize: str,
    height: int,
    width: int,
    resize_fn: Callable[[np.ndarray, int, int], np.ndarray] = resize_bilinear,
    what: str = "image",
) -> tuple[np.ndarray, Frame]:
    """Resize ``(H, W, C)`` to a ``height`` × ``width`` model input by ``resize`` mode.

    Returns the resized float32 array and the input's :class:`Frame` in ``x``'s pixel
    coordinates. Images and masks go through this one function, so a mask always lands on the
    same frame as its image.
    """
    h, w = x.shape[:2]
    th, tw = height, width
    if resize == "none":
        if (h, w) != (th, tw):
            raise InputMappingError(
                f"The model expects {tw}×{th} pixels and the {what} is {w}×{h}; choose a "
                "resize mode (stretch, fit or crop) in the input panel."
            )
        return np.asarray(x, dtype=np.float32).copy(), Frame(0.0, 0.0, float(w), float(h))
    if resize == "stretch":
        return resize_fn(x, th, tw).astype(np.float32, copy=False), Frame(0.0, 0.0, float(w), float(h))
    if resize == "fit":
        s = min(th / h, tw / w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        out = np.zeros((th, tw, x.shape[2]), dtype=np.float32)
        oy, ox = (th - nh) // 2, (tw - nw) // 2
        out[oy : oy + nh, ox : ox + nw] = resize_fn(x, nh, nw)
        sy, sx = nh / h, nw / w
        return out, Frame(-ox / sx, -oy / sy, tw / sx, th / sy)
    if resize == "crop":
        s = max(th / h, tw / w)
        nh, nw = max(th, round(h * s)), max(tw, round(w * s))
        big = resize_fn(x, nh, nw)
        oy, ox = (nh - th) // 2, (nw - tw) // 2
        sy, sx = nh / h, nw / w
        out = big[oy : oy + th, ox : ox + tw].astype(np.float32, copy=False)
        return out, Frame(ox / sx, oy / sy, tw / sx, th / sy)
    raise InputMappingError(f"Unknown resize mode {resize!r}.")


def prepare_input(
    image: ImageData, mapping: InputMapping, input_shape: tuple
) -> tuple[np.ndarray, Frame]:
    """Turn ``image`` into one model input (without the batch axis) and its frame.

    Parameters
    ----------
    image : ImageData
        The image as loaded.
    mapping : InputMapping
        Resize, scaling and channel recipe.
    input_shape : tuple
        The model input's shape, with or without the batch axis; ``None`` dims take the
        image's size.

    Returns
    -------
    x : ndarray, float32
        Shaped like the input without the batch axis.
    frame : Frame
        The input's frame in image coordinates (see :class:`Frame`).

    Raises
    ------
    InputMappingError
        When the image cannot become this input; the message says what to change.
    """
    if image.raw is not None and _raw_matches(image.raw, input_shape) and mapping.scale == "raw":
        raw = image.raw
        if raw.ndim == len(tuple(input_shape)):  # stored with its batch axis
            raw = raw[0]
        return raw.astype(np.float32, copy=True), Frame(0.0, 0.0, float(image.width), float(image.height))
    th, tw, tc = spatial_shape(input_shape)
    no_channel_axis = tc is None
    tc = 1 if tc is None else tc
    th = image.height if th is None else th
    tw = image.width if tw is None else tw

    def to_float(a: np.ndarray) -> np.ndarray:
        f, full = float_units(a, image.value_max, mapping.scale)
        return convert_channels(f, tc, alpha_value=full)

    if mapping.resize != "none" and image.height * image.width > SPARSE_RESIZE_ABOVE:
        # a large image: only the rows and columns the resize reads become float (the same
        # numbers, without a float copy of the whole image); the proxy only gives the shape
        proxy = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (image.height, image.width, tc))
        x, frame = resize_to_input(proxy, mapping.resize, th, tw, _sparse_resize(image.array, to_float), "image")
    else:
        x, frame = resize_to_input(to_float(image.array), mapping.resize, th, tw, what="image")
    x = _scale(x, mapping).astype(np.float32, copy=False)
    if no_channel_axis:
        x = x[:, :, 0]
    return np.ascontiguousarray(x), frame


#: images with more pixels than this are resized without converting all of them to float first
SPARSE_RESIZE_ABOVE = 1 << 22


def float_units(a: np.ndarray, value_max: float, scale: str) -> tuple[np.ndarray, float]:
    """``(a as float32 in the units scale ``scale`` starts from, full-scale value)``.

    The modes of :data:`_BASE_255` start from 0..255 (where Keras' own preprocessing starts),
    ``raw`` from the stored values, the others from 0..1. Images and patches both go through
    this, so a patch fed alone equals the same pixels fed as an image.
    """
    f = a.astype(np.float32)
    if scale in _BASE_255:
        return (f if value_max == 255 else f * np.float32(255.0 / value_max)), 255.0
    return (f if scale == "raw" else f / np.float32(value_max)), 1.0


def _sparse_resize(
    src: np.ndarray, to_float: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """A ``resize_fn`` for :func:`resize_to_input` that reads ``src`` (any dtype) directly.

    The bilinear resize reads two rows and two columns per output pixel; only those become
    float (``to_float``), and the arithmetic is :func:`resize_bilinear`'s, so the result equals
    ``resize_bilinear(to_float(src), h, w)`` while memory follows the output, not the image.
    """
    h, w = src.shape[:2]

    def resize(_shape_only: np.ndarray, height: int, width: int) -> np.ndarray:
        y0, y1, fy = _bilinear_axis(h, height)
        x0, x1, fx = _bilinear_axis(w, width)
        rows, ry = np.unique(np.concatenate([y0, y1]), return_inverse=True)
        cols, rx = np.unique(np.concatenate([x0, x1]), return_inverse=True)
        sub = to_float(src[rows][:, cols])
        return bilinear_blend(sub[ry[:height]], sub[ry[height:]], rx[:width], rx[width:], fx, fy)

    return resize
