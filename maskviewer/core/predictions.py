"""Reading a model's outputs: class scores, top-k, image-shaped outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassScore:
    index: int
    label: str
    score: float


def looks_like_probabilities(vector: np.ndarray, atol: float = 1e-3) -> bool:
    """True when ``vector`` is in [0, 1] and sums to 1 (a softmax) or has one sigmoid value."""
    v = np.asarray(vector, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return False
    in_range = bool(v.min() >= -atol and v.max() <= 1 + atol)
    return in_range and (v.size == 1 or abs(v.sum() - 1.0) <= atol * max(1, v.size))


def softmax(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def top_k(vector: np.ndarray, k: int = 5, labels: list[str] | None = None) -> list[ClassScore]:
    """The ``k`` highest entries of a 1-D score vector, highest first (ties: lower index first)."""
    v = np.asarray(vector).reshape(-1)
    order = np.argsort(-v, kind="stable")[: max(0, k)]
    out = []
    for i in order:
        label = labels[i] if labels is not None and i < len(labels) else str(int(i))
        out.append(ClassScore(int(i), label, float(v[i])))
    return out


def output_kind(shape: tuple) -> str:
    """How an output of ``shape`` (without batch) is shown: ``vector``, ``image`` or ``tensor``."""
    if len(shape) <= 1:
        return "vector"
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 2, 3, 4)):
        return "image"
    return "tensor"


#: the largest labels file read, and the most labels (a class index beyond is refused)
MAX_LABELS_BYTES = 16 * 2**20
MAX_LABELS = 100_000


def _label_index(key: str, where: str) -> None:
    from maskviewer.core.schema import SchemaError

    if not (key.isdigit() and len(key) <= 6 and int(key) < MAX_LABELS):
        raise SchemaError(f"{where} keys must be class indices 0 to {MAX_LABELS - 1}, got {key!r}")


def read_labels(path: str) -> list[str]:
    """A labels file: one label per line, or a JSON list / ``{index: label}`` object.

    Labels are text (numbers are written as text); a mapping with gaps gets its missing
    classes named by their index.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        (:class:`~maskviewer.core.schema.SchemaError`) The file is too large, not UTF-8, or
        JSON of another shape (nested lists, objects as labels...); the message says which.
    """
    from maskviewer.core.schema import AnyOf, List, Map, Num, SchemaError, Str, parse_json

    with open(path, "rb") as fh:
        data = fh.read(MAX_LABELS_BYTES + 1)
    if len(data) > MAX_LABELS_BYTES:
        raise SchemaError(f"larger than {MAX_LABELS_BYTES // 2**20} MB; a labels file has one name per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    stripped = text.strip()
    if not stripped.startswith(("[", "{")):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) > MAX_LABELS:
            raise SchemaError(f"has {len(lines)} labels (at most {MAX_LABELS})")
        return lines
    label = AnyOf(Str(max_len=4096), Num(-1e300, 1e300), what="a class name (text)")
    doc = parse_json(stripped)
    if isinstance(doc, list):
        labels = List(label, MAX_LABELS).check(doc, "labels")
    else:
        labels = Map(label, MAX_LABELS, key=_label_index, what="a list of class names or an "
                     "object of class index → name").check(doc, "labels")
    if isinstance(labels, list):
        return [_text(v) for v in labels]
    out = [str(i) for i in range(max((int(k) for k in labels), default=-1) + 1)]
    for k, v in labels.items():
        out[int(k)] = _text(v)
    return out


def _text(value: str | float) -> str:
    """A label as text: numbers read from JSON lose a trailing ``.0`` (``3.0`` -> ``"3"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
