"""Scoring a model over a data set: one row per image, then the data set's answers.

A row holds what the model said of one image, read by the output's kind (a class and its
probability, a value, labels), against the image's truth; a binary output's Dice against its
reference at the chosen threshold and on a fixed grid of thresholds; each patch-combination
rule's answer; each mask variant's answer. :func:`aggregate` turns rows into what a data set
is asked: accuracy and a confusion matrix, MAE, the Dice-vs-threshold curve and its best
threshold, accuracy per patch rule, and the mask ablation with confidence intervals.

Rows are plain dicts of numbers and short strings (the results table's columns), so shards
written on other machines merge by concatenation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from maskviewer.core import output_kinds as ok
from maskviewer.core.dataset import class_index, label_value
from maskviewer.core.metrics import confusion_counts, score_arrays

#: the thresholds the per-image Dice curve is sampled at (outputs in 0..1)
DICE_GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
#: z for 95% intervals
Z95 = 1.959963984540054


def class_row(kind: str, value: np.ndarray, label: str | None, classes: list[str] | None) -> dict[str, Any]:
    """A class-score output's answer for one image: class, probability, truth, correct, loss."""
    return class_rows(kind, np.asarray(value)[None], [label], classes)[0]


def value_row(value: np.ndarray, label: str | None) -> dict[str, Any]:
    """A regression output's answer: its (first) value and the error against the truth."""
    v = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    row: dict[str, Any] = {"value": v}
    truth = label_value(label)
    if truth is not None:
        row["truth"] = truth
        row["error"] = v - truth
        row["abs_error"] = abs(v - truth)
    return row


def labels_row(kind: str, value: np.ndarray, label: str | None) -> dict[str, Any]:
    """Independent labels: those above 0.5, and whether they equal the truth (``"1;4"``)."""
    p = ok.shown_values(kind, np.asarray(value, dtype=np.float64).reshape(-1))
    on = [int(i) for i in np.flatnonzero(p > 0.5)]
    row: dict[str, Any] = {"labels": ";".join(map(str, on)), "confidence": float(p.max(initial=0.0))}
    if label is not None and label != "":
        truth = sorted(int(t) for t in str(label).replace(",", ";").split(";") if t.strip().isdigit())
        row["truth"] = ";".join(map(str, truth))
        row["correct"] = int(on == truth)
    return row


def answer_row(kind: str, value: np.ndarray, label: str | None, classes: list[str] | None) -> dict[str, Any]:
    """The row fields for one vector output read as ``kind``."""
    if kind in ok.CLASS_KINDS:
        return class_row(kind, value, label, classes)
    if kind in ok.LABEL_KINDS:
        return labels_row(kind, value, label)
    return value_row(value, label)


def answer_rows(
    kind: str, values: np.ndarray, labels: list[str | None], classes: list[str] | None
) -> list[dict[str, Any]]:
    """:func:`answer_row` for a batch (``values``: ``(N, ...)``, one per label), the same numbers.

    Class scores are read for the whole batch at once (a data set's rows are mostly these);
    the other kinds one at a time.
    """
    if kind not in ok.CLASS_KINDS:
        return [answer_row(kind, v, label, classes) for v, label in zip(values, labels, strict=True)]
    return class_rows(kind, values, labels, classes)


def class_rows(kind: str, values: np.ndarray, labels: list[str | None], classes: list[str] | None) -> list[dict[str, Any]]:
    """Class-score answers of a batch (``values``: ``(N, ...)``): class, probability, truth,
    correct, loss for each."""
    n = len(labels)
    p = ok.shown_values(kind, np.asarray(values, dtype=np.float64).reshape(n, -1))
    if p.shape[1] == 1:  # one sigmoid: the two classes (1 - p, p)
        p = np.concatenate([1.0 - p, p], axis=1)
    pred = np.argmax(p, axis=1)
    rows_at = np.arange(n)
    confidence = p[rows_at, pred].tolist()
    truths: dict[str | None, int | None] = {}
    for label in labels:
        if label not in truths:
            truths[label] = class_index(label, classes)
    truth_of = [truths[label] for label in labels]
    # each row's probability of its true class (read as Python floats, as one at a time)
    at = np.array([t if t is not None and t < p.shape[1] else 0 for t in truth_of], dtype=np.intp)
    p_true = p[rows_at, at].tolist()
    rows = []
    for j, (k, truth) in enumerate(zip(pred.tolist(), truth_of, strict=True)):
        row: dict[str, Any] = {"pred": k, "confidence": confidence[j]}
        if truth is not None:
            row["truth"] = truth
            row["correct"] = int(k == truth)
            row["loss"] = -math.log(max(p_true[j], 1e-12)) if truth < p.shape[1] else float("nan")
        rows.append(row)
    return rows


def dice_curve(values: np.ndarray, reference: np.ndarray, invert: bool = False) -> np.ndarray:
    """Dice of ``values > t`` (``<= t`` when ``invert``) against ``reference`` at each threshold
    of :data:`DICE_GRID`, in one sort (not one pass per threshold)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference, dtype=bool).reshape(-1)
    if v.shape != ref.shape:
        raise ValueError(f"map of {v.size} values against a reference of {ref.size}")
    order = np.sort(v)
    pos = np.sort(v[ref])
    if invert:  # foreground is value <= t
        n_pred = np.searchsorted(order, DICE_GRID, side="right")
        tp = np.searchsorted(pos, DICE_GRID, side="right")
    else:
        n_pred = v.size - np.searchsorted(order, DICE_GRID, side="right")
        tp = pos.size - np.searchsorted(pos, DICE_GRID, side="right")
    fp, fn = n_pred - tp, pos.size - tp
    return score_arrays(tp, fp, fn, v.size - tp - fp - fn)["dice"]


def binary_row(values: np.ndarray, reference: np.ndarray, threshold: float, invert: bool = False) -> dict[str, Any]:
    """Dice and IoU at ``threshold``, and the Dice curve on :data:`DICE_GRID`."""
    v = np.asarray(values, dtype=np.float64)
    pred = v <= threshold if invert else v > threshold
    tp, fp, fn, tn = confusion_counts(pred, reference)
    s = score_arrays(tp, fp, fn, tn)
    curve = dice_curve(v, reference, invert)
    return {"threshold": float(threshold), "dice": float(s["dice"]), "iou": float(s["iou"]),
            "tp": tp, "fp": fp, "fn": fn, "dice_curve": " ".join(f"{d:.6g}" for d in curve)}


# -- the data set's answers ------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def _column(rows: list[dict], name: str) -> np.ndarray:
    vals = [r.get(name) for r in rows]
    try:  # numbers and None (NaN) as they are
        return np.array(vals, dtype=np.float64)
    except (TypeError, ValueError):  # empty cells of a table read back, and the like
        return np.array([np.nan if v is None or v == "" else float(v) for v in vals], dtype=np.float64)


def _proportion(hits: np.ndarray) -> dict[str, Any]:
    hits = hits[np.isfinite(hits)]
    n, k = int(hits.size), int(np.sum(hits))
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else float("nan"), "n": n, "ci95": [lo, hi]}


def aggregate(rows: list[dict[str, Any]], n_classes: int | None = None) -> dict[str, Any]:
    """What the data set answers, from its rows (failed rows are counted, not scored).

    Returns a JSON-ready dict with the parts the rows allow: ``classes`` (accuracy, its 95%
    interval, mean loss, confusion matrix), ``regression`` (MAE, RMSE, mean error),
    ``binary`` (mean Dice at the threshold, the mean Dice curve and its best threshold),
    ``patches`` (accuracy per combination rule) and ``ablation`` (accuracy or MAE per mask
    variant, with the painted/reference mask's difference to each).
    """
    ok_rows = [r for r in rows if not r.get("error_message")]
    out: dict[str, Any] = {"images": len(rows), "failed": len(rows) - len(ok_rows)}
    if any("correct" in r for r in ok_rows) and any("pred" in r for r in ok_rows):
        out["classes"] = _classes(ok_rows, n_classes)
    if any("abs_error" in r for r in ok_rows):
        err = _column(ok_rows, "error")
        err = err[np.isfinite(err)]
        out["regression"] = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                             "mean_error": float(np.mean(err)), "n": int(err.size)}
    curves = [r["dice_curve"] for r in ok_rows if r.get("dice_curve")]
    if curves:
        mean = np.mean([np.array(c.split(), dtype=np.float64) for c in curves], axis=0)
        best = int(np.argmax(mean))
        tp, fp, fn = (float(np.nansum(_column(ok_rows, c))) for c in ("tp", "fp", "fn"))
        out["binary"] = {"mean_dice": float(np.nanmean(_column(ok_rows, "dice"))), "n": len(curves),
                         "pooled_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
                         "thresholds": DICE_GRID.tolist(), "mean_dice_curve": mean.tolist(),
                         "best_threshold": float(DICE_GRID[best]), "best_mean_dice": float(mean[best])}
    keys = set().union(*ok_rows)  # every column the rows have
    rules = sorted(k[len("patch_"):-len("_correct")] for k in keys
                   if k.startswith("patch_") and k.endswith("_correct"))
    if rules:
        out["patches"] = {rule: _proportion(_column(ok_rows, f"patch_{rule}_correct")) for rule in rules}
    variants = [k[len("ablation_"):-len("_correct")] for k in (ok_rows[0] if ok_rows else {})
                if k.startswith("ablation_") and k.endswith("_correct")]
    variants += [k[len("ablation_"):-len("_abs_error")] for k in (ok_rows[0] if ok_rows else {})
                 if k.startswith("ablation_") and k.endswith("_abs_error")]
    if variants:
        out["ablation"] = _ablation(ok_rows, variants)
    return out


def _classes(rows: list[dict], n_classes: int | None) -> dict[str, Any]:
    scored = [r for r in rows if "correct" in r and r.get("pred") not in (None, "")]
    result = _proportion(_column(scored, "correct"))
    loss = _column(scored, "loss")
    result["mean_loss"] = float(np.nanmean(loss)) if np.isfinite(loss).any() else None
    pred = _column(scored, "pred").astype(int)
    truth = _column(scored, "truth").astype(int)
    k = max(int(n_classes or 0), int(pred.max(initial=-1)) + 1, int(truth.max(initial=-1)) + 1)
    confusion = np.zeros((k, k), dtype=np.int64)  # rows: truth, columns: prediction
    np.add.at(confusion, (truth, pred), 1)
    result["confusion"] = confusion.tolist()
    return result


def _ablation(rows: list[dict], variants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variants:
        hits = _column(rows, f"ablation_{v}_correct")
        if np.isfinite(hits).any():
            out[v] = _proportion(hits)
        else:
            err = _column(rows, f"ablation_{v}_abs_error")
            err = err[np.isfinite(err)]
            sem = float(np.std(err, ddof=1) / math.sqrt(err.size)) if err.size > 1 else float("nan")
            m = float(np.mean(err)) if err.size else float("nan")
            out[v] = {"mae": m, "n": int(err.size), "ci95": [m - Z95 * sem, m + Z95 * sem]}
    return out
