"""What a model output is: class scores, independent sigmoids, regression values or a map.

Every view reads an output through its kind, so a count is shown as ``count 15.33`` and never
as "class 0". The kind is proposed from the model (the output's shape, the last layer's
activation, its name) and the user may change it per output (remembered per model).

Kinds
-----
``softmax``
    Class scores that are probabilities already (a softmax activation).
``logits``
    Class scores before a softmax: a softmax is applied for display (the raw logits are kept
    beside the probabilities), so logits and softmax outputs read the same way.
``multilabel``
    Independent sigmoids, one probability per label (a single sigmoid is a binary classifier:
    the probability of the positive label).
``multilabel_logits``
    Independent labels before their sigmoid: a sigmoid is applied for display.
``regression``
    Values (a count, an age, box coordinates), named by the output ("count"); no softmax or
    sigmoid is ever applied.
``map``
    Image-shaped outputs (segmentation maps, reconstructions), drawn as images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskviewer.core.events import Event
from maskviewer.core.model_info import ModelInfo, TensorInfo

SOFTMAX, LOGITS, MULTILABEL, MULTILABEL_LOGITS, REGRESSION, MAP = (
    "softmax", "logits", "multilabel", "multilabel_logits", "regression", "map")
KINDS = (SOFTMAX, LOGITS, MULTILABEL, MULTILABEL_LOGITS, REGRESSION, MAP)
KIND_LABELS = {
    SOFTMAX: "class scores (softmax)",
    LOGITS: "class scores (logits, softmax applied for display)",
    MULTILABEL: "multi-label (independent sigmoids)",
    MULTILABEL_LOGITS: "multi-label (logits, sigmoid applied for display)",
    REGRESSION: "regression values",
    MAP: "image-shaped map",
}
CLASS_KINDS = (SOFTMAX, LOGITS)
LABEL_KINDS = (MULTILABEL, MULTILABEL_LOGITS)
VECTOR_KINDS = CLASS_KINDS + LABEL_KINDS + (REGRESSION,)

#: output names that say "these are values", not classes (matched as words of the name)
_VALUE_WORDS = ("count", "counts", "number", "num", "age", "value", "values", "regression", "reg",
                "bbox", "box", "boxes", "coord", "coords", "xy", "xywh", "size", "area", "depth",
                "density", "mean", "std", "angle", "distance", "height", "width", "year", "price")
_CLASS_WORDS = ("logit", "logits", "class", "classes", "cls", "label", "labels", "probs", "prob",
                "probabilities", "scores", "predictions", "pred", "softmax")
#: activations whose outputs are values (never negative, not probabilities)
_VALUE_ACTIVATIONS = ("relu", "relu6", "softplus", "exponential", "elu", "selu", "gelu",
                      "silu", "swish", "leaky_relu", "tanh")


@dataclass(frozen=True)
class OutputKind:
    """How one output is read.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    name : str
        The output's name; regression values are called by it ("count 15.33").
    reason : str
        Why this kind: what it was proposed from, or that the user chose it.
    chosen : bool
        The user chose it (it is remembered for the model).
    """

    kind: str
    name: str = ""
    reason: str = ""
    chosen: bool = False

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def is_classes(self) -> bool:
        return self.kind in CLASS_KINDS

    @property
    def is_labels(self) -> bool:
        return self.kind in LABEL_KINDS

    @property
    def is_regression(self) -> bool:
        return self.kind == REGRESSION

    @property
    def is_map(self) -> bool:
        return self.kind == MAP


def _words(name: str) -> set[str]:
    out, word = set(), ""
    for ch in name.lower():
        if ch.isalnum():
            word += ch
        else:
            out.add(word)
            word = ""
    out.add(word.rstrip("0123456789"))
    out.add(word)
    return {w for w in out if w}


def _unbatched(shape: tuple) -> tuple:
    return tuple(shape[1:]) if shape else ()


def choices(shape: tuple) -> list[str]:
    """The kinds an output of ``shape`` (without the batch axis) can be read as."""
    dims = [d for d in shape if d != 1] if len(shape) > 1 else list(shape)
    if len(dims) >= 2:
        return [MAP]
    n = dims[0] if dims else 1
    if n == 1:
        return [REGRESSION, MULTILABEL, MULTILABEL_LOGITS]
    return [SOFTMAX, LOGITS, MULTILABEL, MULTILABEL_LOGITS, REGRESSION]


def propose(tensor: TensorInfo) -> OutputKind | None:
    """The kind proposed for a model output from its shape, activation and name.

    Returns None for a vector whose last activation is unknown (a sub-classed model, a
    Lambda): :func:`propose_from_values` then decides from the first values it gives.
    """
    shape = _unbatched(tensor.shape)
    options = choices(shape)
    name = tensor.name
    if options == [MAP]:
        return OutputKind(MAP, name, f"image-shaped output {tensor.shape_text()}")
    act = (tensor.activation or "").lower()
    layer = tensor.layer_class or "the last layer"
    n = 1 if not shape or shape[-1] is None else int(np.prod([d or 1 for d in shape]))
    words = _words(name)
    value_name = bool(words & set(_VALUE_WORDS))
    class_name = bool(words & set(_CLASS_WORDS))
    units = f"{n} unit{'s' if n != 1 else ''}"
    if act == "softmax" and n > 1:
        return OutputKind(SOFTMAX, name, f"{layer}, {units}, softmax activation")
    if act == "sigmoid":
        what = "one sigmoid: a binary classifier" if n == 1 else "independent sigmoids"
        return OutputKind(MULTILABEL, name, f"{layer}, {units}, {what}")
    if act in _VALUE_ACTIVATIONS:
        return OutputKind(REGRESSION, name, f"{layer}, {units}, {act} activation: values")
    if act == "linear":
        if n == 1:
            if class_name and not value_name:
                return OutputKind(MULTILABEL_LOGITS, name, f"{layer}, 1 unit, linear, named {name!r}: a logit")
            return OutputKind(REGRESSION, name, f"{layer}, 1 unit, linear activation: a value")
        if value_name and not class_name:
            return OutputKind(REGRESSION, name, f"{layer}, {units}, linear, named {name!r}: values")
        return OutputKind(LOGITS, name, f"{layer}, {units}, linear activation: class logits")
    return None


def propose_from_values(name: str, value: np.ndarray) -> OutputKind:
    """The kind proposed from an output's values when the model does not tell its activation."""
    v = np.asarray(value, dtype=np.float64)
    options = choices(v.shape)
    if options == [MAP]:
        return OutputKind(MAP, name, f"image-shaped output {tuple(v.shape)}")
    flat = v.reshape(-1)
    finite = flat[np.isfinite(flat)]
    in_unit = finite.size == flat.size and finite.size > 0 and finite.min() >= 0 and finite.max() <= 1
    words = _words(name)
    if flat.size == 1:
        if in_unit and not words & set(_VALUE_WORDS):
            return OutputKind(MULTILABEL, name, "one value in 0..1 (activation unknown): a probability")
        return OutputKind(REGRESSION, name, "one value (activation unknown)")
    if words & set(_VALUE_WORDS) and not words & set(_CLASS_WORDS):
        return OutputKind(REGRESSION, name, f"named {name!r} (activation unknown): values")
    if in_unit and abs(finite.sum() - 1.0) <= 1e-3 * max(1, finite.size):
        return OutputKind(SOFTMAX, name, "values sum to 1 (activation unknown)")
    if in_unit:
        return OutputKind(MULTILABEL, name, "values in 0..1 (activation unknown)")
    return OutputKind(LOGITS, name, "unbounded scores (activation unknown): class logits")


# ---------------------------------------------------------------------------------------------
# Reading values by kind


def softmax(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # no overflow for large |v|


def shown_values(kind: str, values: np.ndarray) -> np.ndarray:
    """What a view shows for ``values`` (``(..., K)``, float64): probabilities for class and
    label kinds (softmax / sigmoid applied to logits), the values themselves for regression."""
    v = np.asarray(values, dtype=np.float64)
    if kind == LOGITS:
        return softmax(v)
    if kind == MULTILABEL_LOGITS:
        return sigmoid(v)
    return v


def unit(kind: str) -> str:
    """What :func:`shown_values` gives, in words."""
    if kind in CLASS_KINDS:
        return "probability"
    if kind in LABEL_KINDS:
        return "probability"
    return "value"


@dataclass
class Entry:
    """One line of a reading: a class, a label or a value, and the number shown for it."""

    index: int
    name: str
    value: float  # probability (classes, labels) or the value (regression)
    raw: float  # the output's own number (the logit for logits kinds)


@dataclass
class Reading:
    """An output read by its kind: the entries to show, best first for classes.

    ``entries`` holds the top-k classes (class kinds), every label by probability
    (label kinds, at most k), or every value in order (regression, at most k).
    """

    kind: OutputKind
    entries: list[Entry]
    size: int

    @property
    def top(self) -> Entry | None:
        return self.entries[0] if self.entries else None


def entry_name(kind: OutputKind, index: int, size: int, labels: list[str] | None) -> str:
    """How entry ``index`` of a vector of ``size`` is called."""
    if kind.is_regression:
        if labels is not None and len(labels) == size and size > 1:
            return f"{kind.name} {labels[index]}".strip()
        base = kind.name or "value"
        return base if size == 1 else f"{base}[{index}]"
    if kind.is_labels and size == 1:
        # one sigmoid: the positive label (the second of a two-name labels file)
        if labels is not None and len(labels) == 2:
            return labels[1]
        return labels[0] if labels else kind.name or "positive"
    if labels is not None and index < len(labels):
        return labels[index]
    return str(index)


def read(kind: OutputKind, value: np.ndarray, labels: list[str] | None = None, k: int = 5) -> Reading:
    """Read a vector output by its kind (see :class:`Reading`)."""
    raw = np.asarray(value, dtype=np.float64).reshape(-1)
    shown = shown_values(kind.kind, raw)
    n = raw.size
    if kind.is_regression:
        order = np.arange(min(n, max(k, 1)))
    else:
        order = np.argsort(-np.nan_to_num(shown, nan=-np.inf), kind="stable")[: max(k, 1)]
    entries = [Entry(int(i), entry_name(kind, int(i), n, labels), float(shown[i]), float(raw[i]))
               for i in order]
    return Reading(kind, entries, n)


def _num(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.3g}"


def target_text(kind: str | None, output: str, index: int, labels: list[str] | None = None) -> str:
    """What a map of ``output``'s entry ``index`` explains, in the kind's words: ``class 3
    (cat)``, ``label 2``, or the value's name (``count``) — never a count as "class 0"."""
    if kind == REGRESSION:
        return output if index == 0 else f"{output}[{index}]"
    name = f" ({labels[index]})" if labels and 0 <= index < len(labels) else ""
    return f"{'label' if kind in LABEL_KINDS else 'class'} {index}{name}"


def entry_text(reading: Reading, e: Entry) -> str:
    """One entry in a line: ``3 (0.91)``, ``cat 0.91``, ``count 15.33``."""
    if reading.kind.is_classes:
        return f"{e.name} ({e.value:.2f})"
    return f"{e.name} {_num(e.value)}"


def summary(reading: Reading, n: int = 3) -> str:
    """A short line: ``3 (0.91) · 8 (0.05) · 1 (0.02)``, ``count 15.33``, ``cat 0.91 · dog 0.12``."""
    parts = [entry_text(reading, e) for e in reading.entries[:n]]
    more = (reading.size > n and not reading.kind.is_regression) or (
        reading.kind.is_regression and reading.size > n)
    return " · ".join(parts) + (" · …" if more else "")


def change(new: Reading, old: Reading | None) -> str:
    """The change since ``old``: ``3 (0.91) ← 0 (0.62)``, ``count 15.33 ← 12.10``; ``""`` when
    there is nothing to compare (no earlier reading, another kind or size) or nothing changed."""
    if old is None or old.kind.kind != new.kind.kind or old.size != new.size or not new.entries:
        return ""
    top = new.entries[0]
    if new.kind.is_classes:
        before = old.entries[0]
        if before.index == top.index and abs(before.value - top.value) < 5e-3:
            return ""
        return f"{entry_text(new, top)} ← {entry_text(old, before)}"
    olds = {e.index: e for e in old.entries}
    pairs = [(e, olds[e.index]) for e in new.entries if e.index in olds]
    if not pairs:
        return ""
    e, o = max(pairs, key=lambda p: abs(p[0].value - p[1].value))
    if abs(e.value - o.value) < 5e-3 * max(1.0, abs(o.value)):
        return ""
    return f"{entry_text(new, e)} ← {_num(o.value)}"


def record(reading: Reading) -> dict:
    """What an export's manifest says of an output read by its kind."""
    kind = reading.kind
    out: dict = {"output_kind": kind.kind, "output_kind_text": kind.label}
    if kind.is_regression:
        out["values"] = [{"name": e.name, "value": e.value} for e in reading.entries]
    elif kind.is_labels:
        out["labels"] = [{"index": e.index, "label": e.name, "probability": e.value} for e in reading.entries]
    else:
        out["top"] = [{"class": e.index, "label": e.name, "probability": e.value, "score": e.raw}
                      for e in reading.entries]
    return out


#: an export's method for a vector output, by kind (class kinds keep "scores")
EXPORT_METHODS = {SOFTMAX: "scores", LOGITS: "scores", MULTILABEL: "labels", MULTILABEL_LOGITS: "labels",
                  REGRESSION: "values", MAP: "map"}


def export_record(kind: OutputKind, value: np.ndarray, labels: list[str] | None, k: int = 5) -> tuple[str, dict]:
    """``(method, manifest fields)`` for exporting a vector output read as ``kind``: the top-k
    classes, every label's probability, or every value by name."""
    v = np.asarray(value).reshape(-1)
    reading = read(kind, v, labels, v.size if not kind.is_classes else k)
    return EXPORT_METHODS[kind.kind], {**record(reading), "output_kind_reason": kind.reason}


# ---------------------------------------------------------------------------------------------
# The kinds of the open model's outputs


class OutputKinds:
    """The kind of each output of the open model: the user's choice, else the proposal.

    Outputs whose activation the model does not tell are proposed from their first values
    (:meth:`kind_of` with a value), and that proposal is kept for the model.

    Events
    ------
    changed(name)
        The user chose another kind for output ``name``.
    """

    def __init__(self) -> None:
        self.info: ModelInfo | None = None
        self._proposed: dict[str, OutputKind] = {}
        self._chosen: dict[str, str] = {}
        self.changed = Event()

    def set_model(self, info: ModelInfo | None, chosen: dict[str, str] | None = None) -> None:
        """A new model: propose its outputs' kinds; ``chosen`` are the user's earlier choices."""
        self.info = info
        self._proposed = {}
        for t in info.outputs if info is not None else []:
            proposal = propose(t)
            if proposal is not None:
                self._proposed[t.name] = proposal
        self._chosen = {k: v for k, v in (chosen or {}).items() if v in KINDS}

    def _shape(self, name: str) -> tuple | None:
        for t in self.info.outputs if self.info is not None else []:
            if t.name == name:
                return _unbatched(t.shape)
        return None

    def kind_of(self, name: str, value: np.ndarray | None = None) -> OutputKind:
        """How output ``name`` is read (``value``: its values, when the model tells no kind)."""
        proposed = self._proposed.get(name)
        if proposed is None:
            if value is not None:
                proposed = self._proposed[name] = propose_from_values(name, value)
            else:
                shape = self._shape(name)
                fallback = choices(shape)[0] if shape is not None else LOGITS
                proposed = OutputKind(fallback, name, "not known until the model runs")
        chosen = self._chosen.get(name)
        shape = self._shape(name) if value is None else np.shape(value)
        if chosen and chosen != proposed.kind and (shape is None or chosen in choices(tuple(shape))):
            return OutputKind(chosen, name, f"chosen (proposed: {proposed.label})", chosen=True)
        return OutputKind(proposed.kind, name, proposed.reason, chosen=bool(chosen))

    def choose(self, name: str, kind: str) -> None:
        """The user reads output ``name`` as ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")
        if self._chosen.get(name) == kind:
            return
        self._chosen[name] = kind
        self.changed.emit(name)

    def chosen(self) -> dict[str, str]:
        """The user's choices (output name -> kind), as remembered for the model."""
        return dict(self._chosen)
