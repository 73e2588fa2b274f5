"""How good a binary mask is against a reference: Dice, IoU, precision, recall, accuracy.

Dice follows the usual Keras metric, ``(2*|A∩B| + eps) / (|A| + |B| + eps)`` with
``eps = DICE_EPS`` (1e-7, ``keras.backend.epsilon()``): two empty masks score 1, and the
smoothing is too small to bias a real mask (the other common choice, ``smooth=1``, adds a
whole pixel and visibly lifts the score of small objects; pass ``eps=1`` for it). IoU uses the
same smoothing. Precision and recall are NaN where undefined (nothing predicted, nothing to
find): the UI shows "—" rather than inventing a value.

:class:`ReferenceScorer` scores a float map against a reference at any threshold without
binarising it: the map's values inside and outside the reference are sorted once, and the
pixel counts above a threshold are binary searches (a cumulative histogram at full precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from maskviewer.core.threshold import SortedValues

DICE_EPS = 1e-7
#: RGBA colours of the error overlay; true negatives stay transparent.
TP_COLOUR = (40, 200, 60, 170)
FP_COLOUR = (235, 50, 50, 170)
FN_COLOUR = (50, 120, 255, 170)
SCORE_NAMES = ("dice", "iou", "precision", "recall", "accuracy")
SCORE_LABELS = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "Precision",
    "recall": "Recall",
    "accuracy": "Pixel accuracy",
    "tp": "True positives",
    "fp": "False positives",
    "fn": "False negatives",
    "tn": "True negatives",
}


@dataclass(frozen=True)
class Scores:
    """Scores of one binary mask against a reference (see the module notes)."""

    dice: float
    iou: float
    precision: float
    recall: float
    accuracy: float
    tp: int
    fp: int
    fn: int
    tn: int
    eps: float = DICE_EPS

    def to_dict(self) -> dict:
        return asdict(self)


def score_arrays(tp, fp, fn, tn, eps: float = DICE_EPS) -> dict[str, np.ndarray]:
    """Dice, IoU, precision, recall and pixel accuracy from counts (arrays broadcast).

    Parameters
    ----------
    tp, fp, fn, tn : array_like of int
        True/false positives/negatives.
    eps : float
        Smoothing of Dice and IoU.

    Returns
    -------
    dict of str to ndarray (float64)
        Keys :data:`SCORE_NAMES`; precision/recall/accuracy are NaN where their denominator is 0.
    """
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "dice": (2 * tp + eps) / (2 * tp + fp + fn + eps),
            "iou": (tp + eps) / (tp + fp + fn + eps),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "accuracy": np.where(tp + fp + fn + tn > 0, (tp + tn) / (tp + fp + fn + tn), np.nan),
        }


def scores_from_counts(tp: int, fp: int, fn: int, tn: int, eps: float = DICE_EPS) -> Scores:
    """:class:`Scores` from the four counts."""
    s = score_arrays(tp, fp, fn, tn, eps)
    return Scores(**{k: float(v) for k, v in s.items()}, tp=int(tp), fp=int(fp), fn=int(fn), tn=int(tn), eps=eps)


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of a binary prediction against a binary reference of the same shape."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    fp, fn = n_pred - tp, n_ref - tp
    return tp, fp, fn, int(pred.size) - tp - fp - fn


def mask_scores(pred: np.ndarray, ref: np.ndarray, eps: float = DICE_EPS) -> Scores:
    """:class:`Scores` of a binary prediction against a binary reference."""
    return scores_from_counts(*confusion_counts(pred, ref), eps=eps)


def error_overlay(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """An RGBA ``(H, W, 4)`` uint8 image: TP green, FP red, FN blue, TN transparent."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    lut = np.array([(0, 0, 0, 0), FN_COLOUR, FP_COLOUR, TP_COLOUR], dtype=np.uint8)
    return lut[pred.astype(np.uint8) * 2 + ref.astype(np.uint8)]


def reference_to_mask(array: np.ndarray) -> np.ndarray:
    """A loaded reference image as a boolean mask.

    ``(H, W)``, ``(H, W, C)`` or ``(1, H, W, C)`` arrays; booleans as they are, integers
    foreground where non-zero (0/1 and 0/255 masks alike), floats where above 0.5. With colour
    channels, a pixel is foreground when any colour channel is (alpha is ignored).

    Raises
    ------
    ValueError
        When the array is not 2-D image-shaped.
    """
    a = np.asarray(array)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[2] in (2, 4):  # grey+alpha, RGBA: drop alpha
            a = a[:, :, : a.shape[2] - 1]
        if a.shape[2] > 4:
            raise ValueError(f"an array of shape {np.asarray(array).shape} is not a mask image")
    elif a.ndim != 2:
        raise ValueError(f"an array of shape {np.asarray(array).shape} is not a mask image")
    if a.dtype == np.bool_:
        fg = a
    elif np.issubdtype(a.dtype, np.integer):
        fg = a != 0
    else:
        fg = a > 0.5
    return fg if fg.ndim == 2 else np.any(fg, axis=2)


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``shape`` (rows, columns) with nearest-neighbour sampling."""
    from skimage.transform import resize

    out = resize(np.asarray(mask, dtype=np.uint8), tuple(shape), order=0, preserve_range=True, anti_aliasing=False)
    return out.astype(bool)


def sample_on_frame(
    mask: np.ndarray, frame: tuple[float, float, float, float], shape: tuple[int, int]
) -> np.ndarray:
    """An image-sized mask sampled onto a map that covers ``frame`` of the image.

    Parameters
    ----------
    mask : ndarray of bool, ``(H, W)``
        A mask in image pixels (a painted mask).
    frame : (x, y, width, height)
        Where the map lies in image pixel coordinates (the model input's frame).
    shape : (rows, columns)
        The map's size.

    Returns
    -------
    ndarray of bool
        The mask at each map pixel's centre (nearest image pixel); False outside the image.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = int(shape[0]), int(shape[1])
    fx, fy, fw, fh = (float(v) for v in frame)
    xs = np.floor(fx + (np.arange(cols) + 0.5) * fw / cols).astype(np.int64)
    ys = np.floor(fy + (np.arange(rows) + 0.5) * fh / rows).astype(np.int64)
    inside = (ys[:, None] >= 0) & (ys[:, None] < mask.shape[0]) & (xs[None, :] >= 0) & (xs[None, :] < mask.shape[1])
    out = mask[np.clip(ys, 0, mask.shape[0] - 1)[:, None], np.clip(xs, 0, mask.shape[1] - 1)[None, :]]
    return out & inside


@dataclass(frozen=True)
class DiceCurve:
    """Dice at a series of thresholds, and the best of them."""

    thresholds: np.ndarray
    dice: np.ndarray
    best_threshold: float
    best_dice: float


class ReferenceScorer:
    """Scores of a float map against a reference at any threshold, without binarising.

    Parameters
    ----------
    values : ndarray
        The float map.
    reference : ndarray of bool
        The reference mask, the same shape as ``values``.
    """

    def __init__(self, values: np.ndarray, reference: np.ndarray) -> None:
        values, ref = np.asarray(values), np.asarray(reference, dtype=bool)
        if values.shape != ref.shape:
            raise ValueError(f"map {values.shape} and reference {ref.shape} differ in shape")
        self.inside = SortedValues(values[ref])
        self.outside = SortedValues(values[~ref])
        self.n_ref = self.inside.size
        self.n_out = self.outside.size
        finite = np.concatenate([self.inside.sorted[[0, -1]] if self.inside.n_finite else [],
                                 self.outside.sorted[[0, -1]] if self.outside.n_finite else []])
        self.lo = float(finite.min()) if finite.size else 0.0
        self.hi = float(finite.max()) if finite.size else 1.0

    def counts(self, thresholds, invert: bool = False) -> tuple[np.ndarray, ...]:
        """``(tp, fp, fn, tn)`` at each threshold (int64 arrays), exactly as :func:`binarise`."""
        tp = self.inside.count_positive(thresholds, invert)
        fp = self.outside.count_positive(thresholds, invert)
        return tp, fp, self.n_ref - tp, self.n_out - fp

    def scores(self, threshold: float, invert: bool = False, eps: float = DICE_EPS) -> Scores:
        """:class:`Scores` at one threshold."""
        tp, fp, fn, tn = (int(a) for a in self.counts(threshold, invert))
        return scores_from_counts(tp, fp, fn, tn, eps)

    def dice_curve(
        self, thresholds: np.ndarray | None = None, invert: bool = False, eps: float = DICE_EPS, n: int = 512
    ) -> DiceCurve:
        """Dice at ``thresholds`` (default: ``n`` evenly spaced over the map's finite range).

        The best threshold is the first of the highest Dice values.
        """
        t = np.linspace(self.lo, self.hi, n) if thresholds is None else np.asarray(thresholds, np.float64)
        tp, fp, fn, tn = self.counts(t, invert)
        dice = score_arrays(tp, fp, fn, tn, eps)["dice"]
        best = int(np.argmax(dice))
        return DiceCurve(t, dice, float(t[best]), float(dice[best]))
