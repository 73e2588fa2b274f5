"""The reference mask of the Binarise tool, without Qt: put on a map's grid (resized or
sampled through the map's frame), scored, and the notes that say how it went."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import (
    DiceCurve,
    ReferenceScorer,
    Scores,
    reference_to_mask,
    resize_nearest,
    sample_on_frame,
)
from maskviewer.core.threshold import ThresholdCache

NO_REFERENCE_NOTE = "No reference. Load a mask, or use the painted one."


def read_reference(path: str | os.PathLike) -> np.ndarray:
    """A reference mask file as bool: PNG/BMP/TIFF (non-zero is foreground) or NPY.

    Raises
    ------
    MaskviewerError, ValueError
        The file cannot be read or holds no usable mask (the message says why).
    """
    from maskviewer.io.images import load_image

    image = load_image(path)
    return reference_to_mask(image.raw if image.raw is not None else image.array)


def sample_image_mask(mask: np.ndarray, frame: Frame, shape: tuple[int, int]) -> np.ndarray:
    """An image-sized mask (a painted one) sampled onto a map of ``shape`` lying on ``frame``."""
    return sample_on_frame(mask, (frame.x, frame.y, frame.width, frame.height), shape)


def resize_question(name: str, ref_shape: tuple[int, ...], output: str | None, shape: tuple[int, ...]) -> str:
    """The question asked before a reference of another size is resized to the output."""
    return (
        f"The reference “{name}” is {ref_shape[1]}×{ref_shape[0]} "
        f"pixels and the output “{output}” is {shape[1]}×{shape[0]}.\n\n"
        "Resize the reference to the output (nearest neighbour)?"
    )


def unused_note(name: str, ref_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """Why a reference of another size is not used (the resize was declined)."""
    return (
        f"{name}: {ref_shape[1]}×{ref_shape[0]}, not the output's "
        f"{shape[1]}×{shape[0]}; not used. Load a mask of the output's size or "
        "accept the resize."
    )


def counts_note(name: str, fitted: np.ndarray) -> str:
    """How much of the map the reference covers."""
    return f"{name}: {int(fitted.sum()):,} of {fitted.size:,} pixels foreground"



class ReferenceScoring:
    """A reference mask, put on the current map's grid, and the map's scores against it.

    Attributes
    ----------
    mask : ndarray or None
        The reference as given (bool, any size).
    fitted : ndarray or None
        The reference on the current map's grid (resized or sampled), once it is used.
    scorer, scores, curve
        The map's :class:`~maskviewer.core.metrics.ReferenceScorer` (built on the worker), its
        scores at the threshold and its Dice-vs-threshold curve; None without a reference.
    inside, outside : ndarray or None
        The map's display codes inside and outside the reference (the TP/FN and FP layers).
    note : str
        What the reference group says about it.
    """

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None
        self.name = ""
        self.fitted: np.ndarray | None = None
        self.image_mask = False  # image-sized (painted): sampled through the map's frame
        self.resize_ok = False  # the user agreed to resize this reference
        self.scorer: ReferenceScorer | None = None
        self.scores: Scores | None = None
        self.curve: DiceCurve | None = None
        self.inside: np.ndarray | None = None
        self.outside: np.ndarray | None = None
        self.note = "No reference."

    def set(self, mask: np.ndarray, name: str, image_mask: bool = False) -> None:
        """A new reference: asked again before it is resized."""
        self.mask = np.asarray(mask, dtype=bool)
        self.name = name
        self.resize_ok = False
        self.image_mask = image_mask

    def clear(self, cache: ThresholdCache | None) -> None:
        self.mask = None
        self.name = ""
        self.fitted = None
        self.drop()
        if cache is not None:
            cache.clear_layers()

    def drop(self) -> None:
        """Forget the scores (another map, or a reference not yet scored)."""
        self.scorer = self.scores = self.curve = None

    def fit(
        self,
        cache: ThresholdCache,
        frame: Frame | None,
        output: str | None,
        confirm: Callable[[str, str], bool],
        ask: bool,
    ) -> np.ndarray | None:
        """Put the reference on ``cache``'s grid and lay it over the display codes.

        A painted mask is sampled through ``frame``; a mask of another size is resized
        (nearest neighbour) if ``confirm`` agrees (asked only when ``ask``). Returns the fitted
        mask, or None (with a note saying why) when it is not used.
        """
        ref, shape = self.mask, cache.values.shape
        if self.image_mask and frame is not None:
            fitted = sample_image_mask(ref, frame, shape)
        elif ref.shape == shape:
            fitted = ref
        elif self.resize_ok or (ask and confirm("Reference size differs", resize_question(self.name, ref.shape, output, shape))):
            self.resize_ok = True
            fitted = resize_nearest(ref, shape)
        else:
            self.note = unused_note(self.name, ref.shape, shape)
            self.fitted = None
            self.scorer = None
            return None
        self.fitted = fitted
        self.scorer = None  # the old reference's scores no longer apply
        cache.clear_layers()
        self.inside = cache.add_layer(fitted)  # copies of the codes, patched as they are
        self.outside = cache.add_layer(~fitted)
        self.note = f"{self.name}: scoring…"
        return fitted

    def update(self, threshold: float, invert: bool, rescore: bool) -> None:
        """The scores at ``threshold`` (and the curve for the polarity, when ``rescore``)."""
        if rescore:
            self.curve = None if self.scorer is None else self.scorer.dice_curve(invert=invert)
        if self.scorer is None:
            self.scores = None
            return
        self.scores = self.scorer.scores(threshold, invert)
        if self.fitted is not None:
            self.note = counts_note(self.name, self.fitted)

    def refresh_note(self) -> None:
        if self.mask is None:
            self.note = NO_REFERENCE_NOTE
        elif self.fitted is not None:
            self.note = counts_note(self.name, self.fitted)
