"""What an export writes: one :class:`ExportItem` per thing shown, and the :class:`ExportStyle`
its pictures are drawn in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskviewer.core.errors import MaskviewerError
from maskviewer.core.heatmap import COLORMAPS, DEFAULT_OPACITY, NORMALISATIONS
from maskviewer.core.mapping import Frame
from maskviewer.io.export import naming

#: what an artifact shows (the manifest's ``kind``)
KINDS = ("activation", "cam", "attention", "prediction", "patch", "binary", "mask")
#: artifact kinds drawn through a colour map (the others have their own look)
HEAT_KINDS = ("activation", "cam", "attention", "prediction", "patch")
#: the manifest's key for the thing an artifact belongs to, per kind
NAME_KEYS = {
    "activation": "layer",
    "cam": "layer",
    "attention": "layer",
    "prediction": "output",
    "patch": "output",
    "binary": "output",
    "mask": "mask",
}
#: where raw values go: one ``.npy`` per item, or rows of one ``.npy`` per map (see ArtifactWriter)
NPY_LAYOUTS = ("files", "stacked")
#: mask overlays are tinted with this colour
MASK_TINT = (255, 60, 60)
#: ``ExportStyle(scale="auto")`` enlarges pictures until their short side is at least this
AUTO_SCALE_SIDE = 256
#: the largest picture scale factor
MAX_SCALE = 32


class ExportError(MaskviewerError):
    """Something could not be exported; the message says what and what to do."""


@dataclass
class ExportStyle:
    """How maps look in the PNG files.

    Attributes
    ----------
    colormap : str
        One of :data:`maskviewer.core.heatmap.COLORMAPS`.
    normalisation : str
        ``"per_map"``, ``"percentile"`` or ``"shared"`` (see :func:`~maskviewer.core.heatmap.normalize`).
    alpha : float
        Opacity of the heatmap in the overlay (0..1).
    formats : tuple of str
        ``"png"`` (colour-mapped map, overlay, montage) and/or ``"npy"`` (raw values).
    overlay : bool
        Write ``STEM_overlay.png`` (needs the image).
    legend : bool
        Write ``STEM_legend.png``.
    scale : int or "auto"
        Heatmap and overlay PNGs enlarged by this whole factor (nearest neighbour: every
        pixel becomes a block); ``"auto"`` enlarges a picture whose short side is under
        :data:`AUTO_SCALE_SIDE` pixels until it is not (a 28×28 map comes out 280×280).
        Mask and binary PNGs keep their exact size (they are data, read back as masks).
    """

    colormap: str = "viridis"
    normalisation: str = "per_map"
    alpha: float = DEFAULT_OPACITY
    formats: tuple[str, ...] = ("png", "npy")
    overlay: bool = True
    legend: bool = False
    scale: int | str = 1

    def __post_init__(self) -> None:
        whole = isinstance(self.scale, (int, np.integer)) and not isinstance(self.scale, bool)
        if self.scale != "auto" and not (whole and 1 <= self.scale <= MAX_SCALE):
            raise ExportError(f"The picture scale must be a whole number 1..{MAX_SCALE} or auto, not {self.scale!r}.")
        if self.colormap not in COLORMAPS:
            raise ExportError(
                f"Unknown colour map {self.colormap!r}; choose one of {', '.join(COLORMAPS)}."
            )
        if self.normalisation not in NORMALISATIONS:
            raise ExportError(
                f"Unknown normalisation {self.normalisation!r}; choose one of "
                f"{', '.join(NORMALISATIONS)}."
            )
        bad = [f for f in self.formats if f not in ("png", "npy")]
        if bad or not self.formats:
            raise ExportError(
                f"Unknown format {', '.join(bad) or '(none)'}: use png, npy or png,npy."
            )
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ExportError(f"The overlay opacity must be in 0..1, not {self.alpha}.")

    def to_dict(self) -> dict:
        """The style as the manifest records it."""
        return {
            "colormap": self.colormap,
            "normalisation": self.normalisation,
            "alpha": float(self.alpha),
            "formats": list(self.formats),
            "overlay": self.overlay,
            "legend": self.legend,
            "scale": self.scale,
        }


@dataclass
class ExportItem:
    """One thing the viewer shows, ready to be written.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    name : str
        The layer path, output name or mask name.
    values : ndarray
        The raw map, written as NPY: ``(h, w)`` over ``frame`` (float; bool for binary
        outputs), ``(N, h, w)`` for channel grids, ``(K,)`` for class scores.
    frame : Frame or None
        Where the map lies on the image (the model input's frame); None when the values are
        not a map (class scores).
    method : str
        The reduction (mean, max, topk, channel, grid, attention) or method (gradcam,
        gradcam++, threshold method, combination...).
    class_index : int or None
        The class a CAM explains or a patch map shows.
    image : str or None
        The image file the item belongs to.
    vrange : (float, float) or None
        Fixed value range for the colours (a CAM's 0..1, a layer's shared range).
    tiles : ndarray or None
        ``(N, h, w)`` channel maps drawn as one montage (``STEM_grid.png``).
    info : dict
        More manifest fields (channels, scores, threshold, patch grid...).
    caption : str
        Under the colour bar in the legend.
    plot : ndarray or None
        ``(h, w, 3)`` uint8: a plot that belongs to the item (a map's deletion and insertion
        curves, see :mod:`~maskviewer.io.export.plots`), written as ``STEM_plot.png``.
    """

    kind: str
    name: str
    values: np.ndarray
    frame: Frame | None = None
    method: str = ""
    class_index: int | None = None
    image: str | None = None
    vrange: tuple[float, float] | None = None
    tiles: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    caption: str = ""
    plot: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown artifact kind {self.kind!r}; one of {', '.join(KINDS)}")

    @property
    def is_map(self) -> bool:
        """Whether the values are a map (or a stack of maps) over the image."""
        return self.frame is not None and np.ndim(self.values) in (2, 3)

    @property
    def is_heat(self) -> bool:
        """Whether the item is drawn through a colour map (see :data:`HEAT_KINDS`)."""
        return self.kind in HEAT_KINDS

    def stem(self) -> str:
        """The file name stem: kind, name, method and class, made safe for file systems."""
        return naming.item_stem(self.kind, self.name, self.method, self.class_index)
