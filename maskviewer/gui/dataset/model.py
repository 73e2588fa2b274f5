"""The data set table without Qt: its rows, what each cell says, sorting, filters and the row
in view.

Rows are the evaluator's (:mod:`maskviewer.cli.evaluate_run`): plain dicts of numbers and
short strings, one per entry, arriving a batch at a time. :class:`DatasetTable` keeps them in
the data set's order and shows a *view* of them: the rows a filter lets through, in the order
of the chosen column. The current row is remembered by its key, so a new sort or a new batch
keeps it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from maskviewer.core.evaluation import DICE_GRID, aggregate
from maskviewer.core.events import Event

#: (key, header); the thumbnail column shows the picture only
COLUMNS: list[tuple[str, str]] = [
    ("thumb", ""), ("key", "File"), ("prediction", "Prediction"), ("truth", "Truth"), ("correct", "✓"),
    ("loss", "Loss"), ("dice", "Dice"), ("iou", "IoU"), ("ablation", "Ablation Δ"),
]
COLUMN_KEYS = [k for k, _t in COLUMNS]
#: the direction a first click sorts in: the worst rows first (low Dice, high loss, wrong first)
WORST_FIRST_DESCENDING = {"loss": True, "ablation": True, "dice": False, "iou": False, "correct": False,
                          "prediction": False, "key": False, "truth": False, "thumb": False}
#: filter key -> what the filter box says
FILTERS: dict[str, str] = {
    "all": "All images",
    "misclassified": "Misclassified",
    "lowest_dice": "Lowest Dice (worst 10%)",
    "largest_error": "Largest error (worst 10%)",
    "ablation": "Largest ablation effect (top 10%)",
    "failed": "Failed to run",
}
#: the worst share a "worst 10%" filter keeps (at least :data:`WORST_MIN` rows)
WORST_SHARE = 0.10
WORST_MIN = 5
VARIANTS = ("none", "ones", "random", "inverted")


def _num(row: dict, key: str) -> float | None:
    v = row.get(key)
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def score(row: dict, column: str) -> float | None:
    """A row's Dice or IoU as shown: at the window's threshold when the table set one
    (``dice_at`` / ``iou_at``, see :meth:`DatasetTable.set_threshold`), else at the run's."""
    shown = _num(row, f"{column}_at")
    return shown if shown is not None or f"{column}_at" in row else _num(row, column)


def class_name(index: Any, classes: list[str] | None) -> str:
    """A class index as its name (the index itself when there is no name for it)."""
    try:
        i = int(index)
    except (TypeError, ValueError):
        return str(index)
    return classes[i] if classes and 0 <= i < len(classes) else str(i)


def prediction_text(row: dict, classes: list[str] | None) -> str:
    """What the model said, by the output's kind: a class and its probability, a value, labels."""
    if row.get("error_message"):
        return "failed"
    if "pred" in row:
        conf = _num(row, "confidence")
        return class_name(row["pred"], classes) + (f" ({conf:.0%})" if conf is not None else "")
    if "value" in row:
        return f"{float(row['value']):.4g}"
    if "labels" in row:
        return f"labels {row['labels'] or '(none)'}"
    return ""


def truth_text(row: dict, classes: list[str] | None) -> str:
    if "truth" not in row:
        return str(row.get("label", ""))
    if "pred" in row:
        return class_name(row["truth"], classes)
    t = row["truth"]
    return f"{t:.4g}" if isinstance(t, float) else str(t)


def loss_value(row: dict) -> float | None:
    """The row's loss (classes) or absolute error (values): bigger is worse."""
    loss = _num(row, "loss")
    return loss if loss is not None else _num(row, "abs_error")


def loss_text(row: dict) -> str:
    loss = _num(row, "loss")
    if loss is not None:  # fixed decimals: a narrow column never shows "9.…05"
        return f"{loss:.4f}" if loss < 100 else f"{loss:.0f}"
    err = _num(row, "error")
    return "" if err is None else f"{err:+.3g}"


def ablation_effect(row: dict) -> tuple[float | None, str]:
    """How much the answer moves when the mask is replaced: ``(score, text)``.

    For classes the score counts the variants (no mask, all ones, random, inverted) whose
    class differs from the real mask's, plus the largest change of confidence (0..1) to break
    ties; for values it is the largest change of the value.
    """
    variants = [v for v in VARIANTS if f"ablation_{v}_pred" in row or f"ablation_{v}_value" in row]
    if not variants:
        return None, ""
    if "pred" in row:
        changed = [v for v in variants if row.get(f"ablation_{v}_pred") != row.get("pred")]
        conf = _num(row, "confidence") or 0.0
        deltas = [abs((_num(row, f"ablation_{v}_confidence") or 0.0) - conf) for v in variants]
        text = f"{len(changed)}/{len(variants)} changed" + (f" ({', '.join(changed)})" if changed else "")
        return len(changed) + max(deltas, default=0.0) * 0.999, text
    value = _num(row, "value") or 0.0
    deltas = {v: (_num(row, f"ablation_{v}_value") or 0.0) - value for v in variants}
    worst = max(deltas, key=lambda v: abs(deltas[v]))
    return abs(deltas[worst]), f"{deltas[worst]:+.3g} ({worst})"


def sort_value(row: dict, column: str) -> Any:
    """What a column sorts by (None: no value, always last)."""
    if column in ("key", "thumb"):
        return str(row.get("key", ""))
    if column == "prediction":
        return _num(row, "confidence") if "pred" in row else _num(row, "value")
    if column == "truth":
        return _num(row, "truth") if _num(row, "truth") is not None else (str(row.get("label", "")) or None)
    if column == "loss":
        return loss_value(row)
    if column == "ablation":
        return ablation_effect(row)[0]
    if column in ("dice", "iou"):
        return score(row, column)
    return _num(row, column)


def cell_text(row: dict, column: str, classes: list[str] | None) -> str:
    if column == "thumb":
        return ""
    if column == "key":
        return str(row.get("key", ""))
    if column == "prediction":
        return prediction_text(row, classes)
    if column == "truth":
        return truth_text(row, classes)
    if column == "correct":
        c = _num(row, "correct")
        return "" if c is None else ("✓" if c else "✗")
    if column == "loss":
        return loss_text(row)
    if column in ("dice", "iou"):
        v = score(row, column)
        return "" if v is None else f"{v:.3f}"
    if column == "ablation":
        return ablation_effect(row)[1]
    return str(row.get(column, ""))


def _marks(row: dict) -> set[str]:
    """What a row has to show: columns (prediction, truth, correct, loss, dice, iou, ablation)
    and the fields filters need (abs_error, error_message)."""
    out = {k for k in ("correct", "dice", "iou", "abs_error") if k in row}
    if any(k in row for k in ("pred", "value", "labels", "error_message")):
        out.add("prediction")  # a model of maps only has no answer to show here
    if "truth" in row or row.get("label"):
        out.add("truth")
    if "loss" in row or "error" in row:
        out.add("loss")
    if row.get("error_message"):
        out.add("error_message")
    if any(k.startswith("ablation_") for k in row):
        out.add("ablation")
    return out


class DatasetTable:
    """The rows of one data set's run, their view (filter and sort) and the current row.

    Events
    ------
    rows_changed()
        The view's rows or their order changed (a batch arrived, a sort, a filter).
    current_changed(key)
        Another row is current (None: none).
    summary_changed()
        :attr:`summary` was recomputed.
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._by_key: dict[str, int] = {}
        self._present: set[str] = set()  # what the rows have (see _marks), kept as rows arrive
        self.classes: list[str] | None = None
        self.sort_key: str | None = None
        self.descending = False
        self.filter = "all"
        self.view: list[int] = []
        self.current: str | None = None
        self.summary: dict[str, Any] = {}
        #: the threshold Dice and IoU are shown at when it is not the run's (None: the run's)
        self.threshold: float | None = None
        self._curves: dict[int, np.ndarray] = {}  # parsed Dice curves, by row
        self.rows_changed = Event()
        self.current_changed = Event()
        self.summary_changed = Event()

    # -- rows ------------------------------------------------------------------------------------

    def clear(self) -> None:
        self.rows, self._by_key, self.view, self.summary, self._present = [], {}, [], {}, set()
        self._curves = {}
        self.set_current(None)
        self.rows_changed.emit()
        self.summary_changed.emit()

    def set_classes(self, classes: list[str] | None) -> None:
        self.classes = list(classes) if classes else None

    def add_rows(self, rows: list[dict]) -> None:
        """Add (or replace, by key) rows; the view is rebuilt."""
        for r in rows:
            self._present |= _marks(r)
            key = str(r.get("key", ""))
            if key in self._by_key:
                self.rows[self._by_key[key]] = r
                self._curves.pop(self._by_key[key], None)
            else:
                self._by_key[key] = len(self.rows)
                self.rows.append(r)
            if self.threshold is not None:
                self._shown_at(self._by_key[key])
        self._rebuild()

    # -- Dice at another threshold ---------------------------------------------------------------

    def set_threshold(self, threshold: float | None) -> None:
        """Show Dice and IoU at ``threshold`` (None: at the run's), read from each row's Dice
        curve (sampled at :data:`~maskviewer.core.evaluation.DICE_GRID`, every 0.01 in 0..1):
        exact on the grid, the nearest grid threshold's otherwise (:meth:`title` says so).
        Rows scored at that threshold keep their own numbers; outside 0..1 the run's stay."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            threshold = None
        self.threshold = threshold
        for i in range(len(self.rows)):
            self._shown_at(i)
        if self.rows:
            self._rebuild()

    def _shown_at(self, i: int) -> None:
        row, t = self.rows[i], self.threshold
        run = _num(row, "threshold")
        if t is None or run is None or "dice_curve" not in row or abs(run - t) < 1e-12:
            row.pop("dice_at", None)
            row.pop("iou_at", None)
            return
        curve = self._curves.get(i)
        if curve is None:
            curve = self._curves[i] = np.array([float(v) for v in str(row["dice_curve"]).split()])
        k = min(len(curve) - 1, max(0, round(t * (len(DICE_GRID) - 1))))
        d = float(curve[k])
        row["dice_at"] = d
        row["iou_at"] = d / (2.0 - d) if math.isfinite(d) else d  # IoU = D / (2 - D) at one threshold

    def off_grid(self) -> bool:
        """Whether the shown threshold falls between the Dice curves' samples."""
        t = self.threshold
        return t is not None and abs(t * (len(DICE_GRID) - 1) - round(t * (len(DICE_GRID) - 1))) > 1e-6

    def shown_mean_dice(self) -> float | None:
        """The mean of the Dice column as shown (None when no row has one)."""
        values = [v for r in self.rows if not r.get("error_message") and (v := score(r, "dice")) is not None]
        return float(np.mean(values)) if values else None

    def title(self, column: str) -> str:
        """A column's header: the loss column says "Error" when the rows are values; Dice and
        IoU name the threshold they are shown at when it is not the run's (≈: the nearest
        sampled one)."""
        if column == "loss" and self.rows and not any("loss" in r for r in self.rows[:200]):
            return "Error"
        if column in ("dice", "iou") and self._shown_at_other(column):
            return f"{dict(COLUMNS)[column]} @{self.threshold:.2f}" + ("≈" if self.off_grid() else "")
        return dict(COLUMNS)[column]

    def _shown_at_other(self, column: str) -> bool:
        """Whether some row shows ``column`` at the window's threshold (never without one:
        the header asks at every paint)."""
        return self.threshold is not None and any(f"{column}_at" in r for r in self.rows)

    def tip(self, column: str) -> str:
        """What a Dice or IoU header means."""
        if column not in ("dice", "iou"):
            return ""
        if not self._shown_at_other(column):
            return f"{dict(COLUMNS)[column]} against the reference at the threshold the run used."
        near = f"{round(self.threshold * 100) / 100:.2f}" if self.threshold is not None else ""
        text = f"{dict(COLUMNS)[column]} at the Binarise threshold, read from each image's Dice curve"
        if self.off_grid():
            text += (f" at {near}, the nearest of its samples (every 0.01) to {self.threshold:.4g}; "
                     "Run scores it exactly")
        return text + "."

    def row(self, key: str | None) -> dict | None:
        i = self._by_key.get(key) if key is not None else None
        return None if i is None else self.rows[i]

    def view_row(self, i: int) -> dict:
        return self.rows[self.view[i]]

    def columns(self) -> list[str]:
        """The columns that have something to show for these rows."""
        return [c for c in COLUMN_KEYS if c in ("thumb", "key") or c in self._present]

    def filters(self) -> list[str]:
        """The filters these rows allow (All first)."""
        needs = {"misclassified": "correct", "lowest_dice": "dice", "largest_error": "abs_error",
                 "ablation": "ablation", "failed": "error_message"}
        out = ["all", *(f for f, mark in needs.items() if mark in self._present)]
        return out if self.filter in out else [*out, self.filter]

    # -- view --------------------------------------------------------------------------------------

    def sort_by(self, column: str, descending: bool | None = None) -> None:
        """Sort by ``column``: the worst first on a first click, reversed on the next."""
        if column not in COLUMN_KEYS:
            raise ValueError(f"unknown column {column!r}; one of {COLUMN_KEYS}")
        if descending is None:
            descending = (not self.descending) if column == self.sort_key else WORST_FIRST_DESCENDING[column]
        self.sort_key, self.descending = column, bool(descending)
        self._rebuild()

    def set_filter(self, name: str) -> None:
        """Show the rows ``name`` lets through; a "worst" filter also sorts its column worst first."""
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}; one of {list(FILTERS)}")
        self.filter = name
        sort = {"lowest_dice": "dice", "largest_error": "loss", "ablation": "ablation"}.get(name)
        if sort is not None:
            self.sort_by(sort, WORST_FIRST_DESCENDING[sort])
        else:
            self._rebuild()

    def _passes(self) -> list[int]:
        f = self.filter
        idx = range(len(self.rows))
        if f == "misclassified":
            return [i for i in idx if _num(self.rows[i], "correct") == 0]
        if f == "failed":
            return [i for i in idx if self.rows[i].get("error_message")]
        column = {"lowest_dice": "dice", "largest_error": "loss", "ablation": "ablation"}.get(f)
        if column is None:
            return list(idx)
        scored = [(sort_value(self.rows[i], column), i) for i in idx]
        scored = [(v, i) for v, i in scored if v is not None]
        scored.sort(key=lambda t: t[0], reverse=WORST_FIRST_DESCENDING[column])
        n = max(WORST_MIN, math.ceil(WORST_SHARE * len(scored)))
        return sorted(i for _v, i in scored[:n])

    def _rebuild(self) -> None:
        view = self._passes()
        if self.sort_key is not None:
            col = self.sort_key
            keyed = [(sort_value(self.rows[i], col), i) for i in view]
            present = [t for t in keyed if t[0] is not None]
            missing = [i for v, i in keyed if v is None]
            if any(isinstance(v, str) for v, _i in present):
                present = [(str(v), i) for v, i in present]
            present.sort(key=lambda t: (t[0], t[1]), reverse=self.descending)
            view = [i for _v, i in present] + missing
        self.view = view
        self.rows_changed.emit()

    def position(self, key: str | None) -> int | None:
        """The view position of the row ``key`` (None when it is filtered out or unknown)."""
        i = self._by_key.get(key) if key is not None else None
        if i is None:
            return None
        try:
            return self.view.index(i)
        except ValueError:
            return None

    # -- the current row ----------------------------------------------------------------------------

    def set_current(self, key: str | None) -> None:
        if key != self.current:
            self.current = key
            self.current_changed.emit(key)

    def select(self, position: int) -> str | None:
        """Make the row at view ``position`` current; returns its key."""
        if not 0 <= position < len(self.view):
            return None
        key = str(self.view_row(position).get("key"))
        self.set_current(key)
        return key

    def step(self, delta: int) -> str | None:
        """The next (``+1``) or previous (``-1``) row of the view becomes current (the first
        when none is); returns its key, None at either end."""
        if not self.view:
            return None
        pos = self.position(self.current)
        target = (0 if delta > 0 else len(self.view) - 1) if pos is None else pos + delta
        return self.select(target) if 0 <= target < len(self.view) else None

    # -- aggregates ------------------------------------------------------------------------------

    def refresh_summary(self) -> None:
        """Recompute :attr:`summary` from every row (not only the filtered ones)."""
        self.summary = aggregate(self.rows, len(self.classes) if self.classes else None) if self.rows else {}
        self.summary_changed.emit()


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_lines(summary: dict, classes: list[str] | None = None,
                  shown: tuple[float, float] | None = None) -> list[str]:
    """The aggregates in a few sentences (the plots show the rest); ``shown``: the threshold
    the table shows Dice at, and the mean Dice there, when it is not the run's."""
    if not summary:
        return []
    lines = [f"{summary['images']} images" + (f", {summary['failed']} failed" if summary.get("failed") else "")]
    c = summary.get("classes")
    if c and c.get("n"):
        lo, hi = c["ci95"]
        loss = f", mean loss {c['mean_loss']:.3g}" if c.get("mean_loss") is not None else ""
        lines.append(f"Accuracy {_pct(c['accuracy'])} (95% CI {_pct(lo)}–{_pct(hi)}, n = {c['n']}){loss}")
    r = summary.get("regression")
    if r:
        lines.append(f"MAE {r['mae']:.4g}, RMSE {r['rmse']:.4g}, mean error {r['mean_error']:+.3g} (n = {r['n']})")
    b = summary.get("binary")
    if b:
        at = (f"Mean Dice {shown[1]:.3f} at {shown[0]:.2f} ({b['mean_dice']:.3f} at the run's threshold)"
              if shown is not None else f"Mean Dice {b['mean_dice']:.3f} at the threshold")
        lines.append(f"{at}; best threshold {b['best_threshold']:.2f} "
                     f"(mean Dice {b['best_mean_dice']:.3f}, n = {b['n']})")
    if summary.get("patches"):
        lines.append("Patch rules: " + ", ".join(f"{rule} {_pct(r['accuracy'])}" for rule, r in summary["patches"].items()))
    if summary.get("ablation"):
        lines.append("Mask ablation: " + ", ".join(
            f"{v} {_pct(r['accuracy'])}" if "accuracy" in r else f"{v} MAE {r['mae']:.3g}"
            for v, r in summary["ablation"].items()))
    return lines


def interval_rows(summary: dict) -> list[tuple[str, float, float, float, str]]:
    """``(name, value, low, high, unit)`` for the patch rules and the mask variants: each
    accuracy (or MAE) with its 95% interval."""
    out = []
    for rule, r in summary.get("patches", {}).items():
        out.append((f"patches: {rule}", r["accuracy"], *r["ci95"], "accuracy"))
    for variant, r in summary.get("ablation", {}).items():
        if "accuracy" in r:
            out.append((f"mask: {variant}", r["accuracy"], *r["ci95"], "accuracy"))
        else:
            out.append((f"mask: {variant}", r["mae"], *r["ci95"], "MAE"))
    return out
