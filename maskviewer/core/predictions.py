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


def read_labels(path: str) -> list[str]:
    """A labels file: one label per line, or a JSON list / {index: label} mapping."""
    import json

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        data = json.loads(stripped)
        if isinstance(data, dict):
            return [str(data[k]) for k in sorted(data, key=lambda k: int(k))]
        return [str(v) for v in data]
    return [line.strip() for line in text.splitlines() if line.strip()]
