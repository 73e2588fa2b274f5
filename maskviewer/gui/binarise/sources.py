"""The maps the Binarise tool can binarise, without Qt: which outputs are image-shaped, and
how a map is described under the source list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def map_source(name: str, array: np.ndarray, frame: Frame | None) -> Source:
    """A map offered by another tool: ``(H, W)`` or ``(H, W, 1)``, else explained."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        return Source(name, None, f"“{name}” has shape {tuple(np.shape(array))}: binarising needs a 2-D map.")
    return Source(name, a, frame=frame)


def prediction_sources(outputs: dict[str, np.ndarray], frame: Frame | None, extra: dict[str, Source]) -> dict[str, Source]:
    """The sources of a prediction's ``outputs`` (drawn over ``frame``), then the ``extra`` maps."""
    sources = {s.name: s for s in image_sources(outputs)}
    for s in sources.values():
        s.frame = frame
    sources.update(extra)
    return sources


def pick_source(sources: dict[str, Source], current: str | None) -> str | None:
    """``current`` if it is still offered, else the first usable source (or the first)."""
    names = list(sources)
    if not names:
        return None
    usable = [n for n in names if sources[n].values is not None]
    return current if current in names else (usable[0] if usable else names[0])


def cache_job(maps: dict[str, np.ndarray], previous: dict[str, ThresholdCache]) -> Callable[[Any], dict]:
    """A worker job preparing a :class:`ThresholdCache` per map, added to ``previous``."""

    def job(ctx) -> dict[str, ThresholdCache]:
        out = dict(previous)
        for i, (name, values) in enumerate(maps.items()):
            ctx.progress(i, len(maps))
            out[name] = ThresholdCache(values, check=ctx.check)
        return out

    return job


def slider_range(cache: ThresholdCache) -> tuple[float, float]:
    """The threshold widgets' range: the finite values' range, widened when the map is constant."""
    lo, hi = cache.lo, cache.hi
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)
