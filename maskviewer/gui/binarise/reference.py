"""Putting a reference mask on a map's grid, without Qt, and the notes that say how it went."""

from __future__ import annotations

import numpy as np

from maskviewer.core.mapping import Frame
from maskviewer.core.metrics import sample_on_frame

NO_REFERENCE_NOTE = "No reference. Load a mask, or use the painted one."


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

