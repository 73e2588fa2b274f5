"""A mask as read from a file, kept in its compact dtype, and its values in 0..1.

A mask file of 8-bit (or 1-bit, or bool) values is kept as uint8 (the value is ``v / 255``;
a file of 0/1 labels is kept as 0/255), a 16-bit one as uint16 (``v / 65535``) and a float one
as float32 (its own values): at 14,000² a uint8 mask takes 196 MB where float32 takes 784 MB.
:func:`as_float_mask` gives the 0..1 float32 values where a computation needs them.
"""

from __future__ import annotations

import numpy as np

#: compact dtype → the stored value that means 1.0
FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def as_float_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8, uint16, bool or float) as float32 in 0..1; a float32 mask is returned
    as it is (no copy)."""
    a = np.asarray(mask)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        out = a.astype(np.float32)
        out /= np.float32(255.0)
        return out
    if a.dtype == np.uint16:  # as 16-bit mask files were always read: in float64, then rounded
        return (a.astype(np.float64) / 65535.0).astype(np.float32)
    return np.asarray(a, dtype=np.float32)


def to_compact(labels_or_levels: np.ndarray) -> np.ndarray:
    """uint8 values of a file: 0/1 labels become 0/255, other levels stay (``v / 255``)."""
    a = np.asarray(labels_or_levels, dtype=np.uint8)
    if a.max(initial=0) <= 1:
        a = a * np.uint8(255)
    return a
