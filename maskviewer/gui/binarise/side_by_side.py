"""What the side-by-side window shows, without Qt: the fed input, an autoencoder's
reconstruction and their difference, which maps get a continuous and a binary tile, and how
many columns of tiles fill the window best."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INTRO_NOTE = (
    "Shows the input, the outputs, the binary mask and, for an autoencoder, "
    "the reconstruction and its difference from the input."
)
NO_RECONSTRUCTION_NOTE = "No output has the input's shape, so there is no reconstruction to compare."


@dataclass
class SideBySide:
    """The tiles of the side-by-side dock.

    Attributes
    ----------
    shown
        False when there is nothing to show yet (only :attr:`note`).
    fed, reconstruction
        ``(name, array)`` of the model input as fed and of an output of the same shape.
    lo, hi
        The shared display range of the input and the reconstruction.
    names
        The sources shown as a continuous and a binary tile.
    difference
        ``|input - reconstruction|`` (channel mean), or None.
    """

    shown: bool
    note: str
    fed: tuple[str, np.ndarray] | None = None
    reconstruction: tuple[str, np.ndarray] | None = None
    lo: float = 0.0
    hi: float = 1.0
    names: list[str] = field(default_factory=list)
    difference: np.ndarray | None = None


def display_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``a`` scaled from ``lo .. hi`` to 0..255 (NaN and -inf as ``lo``, +inf as ``hi``)."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float32), nan=lo, posinf=hi, neginf=lo)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.clip((a - lo) * scale, 0, 255).astype(np.uint8)
    if out.ndim == 3 and out.shape[2] in (1, 2):
        out = out[:, :, 0]
    return out


def fed_input(prediction: Any) -> tuple[str, np.ndarray] | None:
    """The first image-like model input as fed (``(H, W)`` or ``(H, W, C)``)."""
    for name, a in (prediction.inputs.items() if prediction else ()):
        if np.ndim(a) in (2, 3):
            return name, np.asarray(a)
    return None


def reconstruction(prediction: Any, fed: tuple[str, np.ndarray] | None, current: str | None) -> tuple[str, np.ndarray] | None:
    """An output with the fed input's shape (an autoencoder's reconstruction), if any;
    preferably not the output being binarised."""
    if prediction is None or fed is None:
        return None
    current_output = (current or "").split(" [channel")[0]
    candidates = [(n, np.asarray(v)) for n, v in prediction.outputs.items() if np.shape(v) == fed[1].shape]
    others = [c for c in candidates if c[0] != current_output]
    pick = others or candidates
    return pick[0] if pick else None


def plan_side_by_side(prediction: Any, has_map: bool, current: str | None, names: list[str]) -> SideBySide:
    """The tiles for ``prediction`` with the maps ``names`` (``has_map``: the current one is ready)."""
    if prediction is None or not has_map:
        return SideBySide(False, INTRO_NOTE)
    fed = fed_input(prediction)
    recon = reconstruction(prediction, fed, current)
    lo, hi = 0.0, 1.0
    if fed is not None:
        arrays = [fed[1]] + ([recon[1]] if recon is not None else [])
        finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    diff = None
    note = ""
    if recon is not None and fed is not None and recon[1].shape == fed[1].shape:
        diff = np.abs(fed[1].astype(np.float32) - recon[1].astype(np.float32))
        diff = diff.mean(axis=2) if diff.ndim == 3 else diff
    elif len(prediction.outputs) > 1:
        note = NO_RECONSTRUCTION_NOTE
    return SideBySide(True, note, fed, recon, lo, hi, list(names), diff)


def tile_columns(n: int, width: float, height: float, aspect: float = 1.0, chrome: float = 44.0) -> int:
    """How many columns of ``n`` tiles fill a ``width x height`` area with the largest pictures.

    Each tile holds a picture of ``aspect`` (width / height) under ``chrome`` pixels of title
    and caption; the picture is as large as its share of the area allows.
    """
    if n <= 1 or width <= 0 or height <= 0:
        return 1
    best, pick = -1.0, 1
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        cell_w, cell_h = width / cols, height / rows - chrome
        side = min(cell_w, max(cell_h, 0.0) * aspect)  # the picture's width
        if side > best + 1e-9:
            best, pick = side, cols
    return pick
