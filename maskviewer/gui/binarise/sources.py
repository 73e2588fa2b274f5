"""The maps the Binarise tool can binarise, without Qt: which outputs are image-shaped, and
how a map is described under the source list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskviewer.core.mapping import Frame
from maskviewer.core.threshold import ThresholdCache

NO_SOURCE_NOTE = "Run a model with an image-shaped output (a mask, a reconstruction)."
PREPARING_NOTE = "Preparing the histogram…"
BROKEN_NOTE = "Every value is NaN or infinite: the model's output is broken (check its input scaling)."


@dataclass
class Source:
    """A map that can be binarised, or an explanation of why an output cannot be."""

    name: str
    values: np.ndarray | None
    note: str = ""
    frame: Frame | None = None


def image_sources(outputs: dict[str, np.ndarray]) -> list[Source]:
    """Every output as sources: ``(H, W)`` and ``(H, W, 1)`` maps as they are, ``(H, W, 2..4)``
    one per channel, anything else explained."""
    sources = []
    for name, value in outputs.items():
        a = np.asarray(value)
        if a.ndim == 2 and min(a.shape) > 1:
            sources.append(Source(name, a))
        elif a.ndim == 3 and a.shape[2] == 1 and min(a.shape[:2]) > 1:
            sources.append(Source(name, a[:, :, 0]))
        elif a.ndim == 3 and a.shape[2] in (2, 3, 4) and min(a.shape[:2]) > 1:
            sources.extend(Source(f"{name} [channel {c}]", a[:, :, c]) for c in range(a.shape[2]))
        else:
            sources.append(
                Source(
                    name,
                    None,
                    f"Output “{name}” has shape {tuple(a.shape)}: not an image. Binarising needs "
                    "a map of shape (H, W), (H, W, 1) or (H, W, C) with up to 4 channels (a "
                    "segmentation or reconstruction head). Pick another output.",
                )
            )
    return sources


def format_score(value: float | int) -> str:
    """A score as the table shows it: counts with separators, ratios to 4 decimals."""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return "—" if not np.isfinite(value) else f"{value:.4f}"


def describe(source: Source | None, cache: ThresholdCache | None) -> tuple[str, str]:
    """``(info, warning)`` for the source list: the map's size and range, or why there is
    none; the warning (NaN, infinities) is empty when all is well."""
    if source is None:
        return NO_SOURCE_NOTE, ""
    if source.values is None:
        return source.note, ""
    if cache is None:
        return PREPARING_NOTE, ""
    h, w = cache.values.shape
    info = f"{w}×{h} {cache.values.dtype}, values {cache.lo:.4g} … {cache.hi:.4g}"
    warning = BROKEN_NOTE if cache.counts.n_finite == 0 else cache.counts.nonfinite.describe()
    return info, warning
