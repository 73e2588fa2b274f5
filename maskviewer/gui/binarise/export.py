"""The Binarise tool's files, without Qt: the exact binary mask and the score record
(written atomically through :mod:`maskviewer.io.export.writing`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from maskviewer.core.metrics import DICE_EPS
from maskviewer.io.export.writing import save_bytes, save_npy, save_png

MASK_FILTER = "PNG 0/255 (*.png);;NumPy bool (*.npy)"
SCORES_FILTER = "JSON (*.json);;CSV (*.csv)"


class UnsupportedFormat(ValueError):
    """The file name's suffix is not one the export writes (the message says which are)."""


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write ``mask`` exactly: ``.png`` as 0/255 grey, ``.npy`` as bool.

    Raises
    ------
    UnsupportedFormat
        For any other suffix.
    OSError
        When the file cannot be written (nothing is left half-written).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        save_npy(path, np.asarray(mask, dtype=bool))
    elif suffix == ".png":
        save_png(path, np.asarray(mask, dtype=np.uint8) * 255)
    else:
        raise UnsupportedFormat(f"{path.name}: save the mask as .png or .npy.")


def scores_text(path: str | Path, record: dict) -> str:
    """``record`` as the text of ``path``: indented ``.json`` or a two-column ``.csv``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.dumps(record, indent=2) + "\n"
    if suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["name", "value"])
        for k, v in record.items():
            writer.writerow([k, "" if v is None else v])
        return buf.getvalue()
    raise UnsupportedFormat(f"{path.name}: save the scores as .json or .csv.")


def write_scores(path: str | Path, record: dict) -> None:
    """Write ``record`` (see :meth:`BinariseModel.score_record`) as ``.json`` or ``.csv``.

    Raises
    ------
    UnsupportedFormat
        For any other suffix (checked before anything is written).
    OSError
        When the file cannot be written.
    """
    save_bytes(path, scores_text(path, record).encode("utf-8"))


def score_record(model) -> dict:
    """What the scores export writes for a :class:`~maskviewer.gui.binarise.model.BinariseModel`:
    the source, threshold, method, polarity, map size and non-finite counts, the scores and the
    best Dice (non-finite numbers as None)."""
    cache, scoring = model.cache, model.scoring
    rec = {
        "source": model.current,
        "threshold": model.threshold,
        "method": model.method_used or "manual",
        "invert": model.invert,
        "foreground": "value <= threshold" if model.invert else "value > threshold",
        "reference": scoring.name or None,
        "dice_eps": DICE_EPS,
    }
    if cache is not None:
        nf = cache.counts.nonfinite
        rec.update(height=int(cache.values.shape[0]), width=int(cache.values.shape[1]),
                   nan=nf.nan, posinf=nf.posinf, neginf=nf.neginf)
    if scoring.scores is not None:
        rec.update({k: v for k, v in scoring.scores.to_dict().items() if k != "eps"})
    if scoring.curve is not None:
        rec.update(best_threshold=scoring.curve.best_threshold, best_dice=scoring.curve.best_dice)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in rec.items()}
