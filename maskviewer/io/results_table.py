"""The results table of an evaluation: one row per data set entry, as CSV or Parquet.

Beside the table, ``<table>.json`` records how it was made (model, data set, settings, shard,
each source file's size and modification time) and the data set's aggregates; reopening a
table whose settings match reuses its rows, and a re-run computes only entries whose files
changed. Both are written atomically (a crash leaves the old table or the new one).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
from pathlib import Path
from typing import Any

from maskviewer.core.dataset import DatasetError

TABLE_SUFFIXES = (".csv", ".parquet")
#: columns that come first, in this order; the others follow as they first appear
LEAD_COLUMNS = ("key", "source", "label", "kind", "pred", "confidence", "truth", "correct", "loss",
                "value", "error", "abs_error", "labels", "threshold", "dice", "iou", "error_message")
MAX_TABLE_BYTES = 2 * 2**30


def meta_path(table: str | Path) -> Path:
    """Where the description of ``table`` is kept."""
    p = Path(table)
    return p.with_name(p.name + ".json")


def columns_of(rows: list[dict]) -> list[str]:
    every = set().union(*rows)
    rest: dict[str, None] = {}  # in order of first appearance, read until every column is met
    for r in rows:
        rest.update(dict.fromkeys(r))
        if len(rest) == len(every):
            break
    lead = [c for c in LEAD_COLUMNS if c in rest]
    return lead + [k for k in rest if k not in LEAD_COLUMNS]


def write_table(path: str | Path, rows: list[dict], meta: dict[str, Any]) -> None:
    """Write ``rows`` to ``path`` (``.csv`` or ``.parquet``) and ``meta`` beside it."""
    from maskviewer.io.atomic import write_atomic

    p = Path(path)
    cols = columns_of(rows)
    if p.suffix.lower() == ".parquet":
        data = _parquet_bytes(rows, cols)
    elif p.suffix.lower() == ".csv":
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows(zip(*(_column([r.get(k) for r in rows]) for k in cols), strict=True))
        data = buf.getvalue().encode("utf-8")
    else:
        raise DatasetError(f"{p.name}: write results as .csv or .parquet")
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, data, fsync=True)
    text = json.dumps(_finite(meta), indent=1, allow_nan=False, default=_json_default)
    write_atomic(meta_path(p), text.encode("utf-8"), fsync=True)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has no such numbers; a score that could
    not be computed, e.g. Dice with no foreground anywhere, is "none")."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _column(values: list) -> list:
    """A column's cells as :func:`_cell` writes them (a column of floats or of ints at once)."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return [repr(v) if v == v else "" for v in values]  # NaN (v != v) is left empty
    if kinds <= {int, str}:
        return values
    return [_cell(v) for v in values]


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _parquet_bytes(rows: list[dict], cols: list[str]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError("Parquet needs pyarrow (pip install pyarrow); or write a .csv table.") from None
    columns = {c: [_plain(r.get(c)) for r in rows] for c in cols}
    arrays = {}
    for c, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and kinds:
            arrays[c] = pa.array([None if v is None else float(v) for v in values], pa.float64()) \
                if float in kinds else pa.array(values, pa.int64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), buf)
    return buf.getvalue().to_pybytes()


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_table(path: str | Path) -> tuple[list[dict], dict[str, Any]]:
    """The rows of a results table (numbers as numbers, empty cells left out) and its description."""
    from maskviewer.core.schema import Json, SchemaError, parse_json

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such results table")
    if p.stat().st_size > MAX_TABLE_BYTES:
        raise DatasetError(f"{p.name}: larger than {MAX_TABLE_BYTES >> 30} GiB; not read")
    if p.suffix.lower() == ".parquet":
        rows = _read_parquet(p)
    else:
        text = p.read_bytes().decode("utf-8", errors="replace")
        rows = [{k: _number(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(_io.StringIO(text))]
    meta: dict[str, Any] = {}
    m = meta_path(p)
    if m.exists():
        try:
            meta = Json(max_depth=12, max_nodes=5_000_000).check(parse_json(m.read_bytes()))
        except SchemaError as exc:
            raise DatasetError(f"{m.name}: {exc}") from None
    return typed(rows), meta


def _read_parquet(p: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError("Reading Parquet needs pyarrow (pip install pyarrow).") from None
    table = pq.read_table(p)
    return [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]


_TEXT_COLUMNS = {"key", "source", "label", "kind", "labels", "truth_labels", "dice_curve", "error_message", "patch_error", "stat"}


def _number(text: str) -> Any:
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() and "." not in text and "e" not in text.lower() else f


def typed(rows: list[dict]) -> list[dict]:
    """Rows with text columns kept as text (a label "7" read back from CSV stays "7")."""
    return [{k: (str(v) if k in _TEXT_COLUMNS else v) for k, v in r.items()} for r in rows]
