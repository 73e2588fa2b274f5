"""A small checker for the JSON the app reads back: sessions, autosaves, labels, settings.

Every file the app reads is untrusted: a value of the wrong type, a number too large for an
``int`` (``1e400`` parses as infinity), a list nested ten thousand deep must each end in one
message naming the field, never in a ``TypeError`` or ``RecursionError`` somewhere later. A
schema is built from the specs below; :meth:`Spec.check` returns the value (numbers as the
expected type) or raises :class:`SchemaError` with the path of the offending field, e.g.
``"mappings must be an object of input name → mapping, got a list"``.

Pure Python (no numpy, no Qt), so ``core``, ``io`` and ``gui`` share it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from maskviewer.core.errors import MaskviewerError


class SchemaError(MaskviewerError, ValueError):
    """A JSON value does not have the expected shape; the message names the field."""


def describe(value: Any) -> str:
    """What ``value`` is, in the words of an error message (``"a list"``, ``"the number 3"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) or abs(value) < 10**15 else "a huge integer"
        return f"the number {text}" if not text.startswith("a ") else text
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {short!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


class Spec:
    """One expected shape; ``what`` is how messages describe it."""

    what = "a value"

    def check(self, value: Any, where: str = "") -> Any:
        raise NotImplementedError

    def fail(self, value: Any, where: str, what: str | None = None) -> SchemaError:
        return SchemaError(f"{where or 'the document'} must be {what or self.what}, got {describe(value)}")


class Str(Spec):
    """A string of at most ``max_len`` characters, optionally one of ``choices``."""

    def __init__(self, max_len: int = 4096, choices: tuple[str, ...] | None = None) -> None:
        self.max_len, self.choices = max_len, choices
        self.what = "one of " + ", ".join(repr(c) for c in choices) if choices else "a text"

    def check(self, value: Any, where: str = "") -> str:
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            raise self.fail(value, where)
        if len(value) > self.max_len:
            raise SchemaError(f"{where} is {len(value)} characters long (at most {self.max_len})")
        return value


class Int(Spec):
    """An integer in ``lo..hi`` (``true``/``false`` and non-integral numbers are refused)."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.what = f"an integer from {lo} to {hi}"

    def check(self, value: Any, where: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise self.fail(value, where)
        return value


class Num(Spec):
    """A finite number in ``lo..hi``, returned as ``float``."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self.what = f"a number from {lo:g} to {hi:g}"

    def check(self, value: Any, where: str = "") -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or not self.lo <= value <= self.hi:
            raise self.fail(value, where)
        return float(value)


class Bool(Spec):
    what = "true or false"

    def check(self, value: Any, where: str = "") -> bool:
        if not isinstance(value, bool):
            raise self.fail(value, where)
        return value


class Optional(Spec):
    """``null`` or ``spec``."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.what = f"{spec.what} or null"

    def check(self, value: Any, where: str = "") -> Any:
        return None if value is None else self.spec.check(value, where)


class List(Spec):
    """A list of ``min_len..max_len`` items, each checked by ``item``."""

    def __init__(self, item: Spec, max_len: int, min_len: int = 0, what: str | None = None) -> None:
        self.item, self.min_len, self.max_len = item, min_len, max_len
        self.what = what or "a list"

    def check(self, value: Any, where: str = "") -> list:
        if not isinstance(value, list):
            raise self.fail(value, where)
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(
                f"{where or 'the document'} has {len(value)} items; {self.min_len} to {self.max_len} expected"
            )
        return [self.item.check(v, _join(where, i)) for i, v in enumerate(value)]


class Obj(Spec):
    """An object with ``required`` and ``optional`` keys; other keys are dropped unseen.

    Unknown keys are tolerated (a newer version may add some); the parser's depth bound keeps
    them harmless.
    """

    def __init__(self, required: dict[str, Spec], optional: dict[str, Spec] | None = None,
                 what: str = "an object") -> None:
        self.required, self.optional, self.what = required, optional or {}, what

    def check(self, value: Any, where: str = "") -> dict:
        if not isinstance(value, dict):
            raise self.fail(value, where)
        out = {}
        for key, spec in self.required.items():
            if key not in value:
                raise SchemaError(f"{_join(where, key)} is missing")
            out[key] = spec.check(value[key], _join(where, key))
        for key, spec in self.optional.items():
            if key in value:
                out[key] = spec.check(value[key], _join(where, key))
        return out


class Map(Spec):
    """An object with any keys (``key`` checks their text) and values checked by ``value``."""

    def __init__(self, value: Spec, max_len: int, what: str = "an object",
                 key: Callable[[str, str], None] | None = None) -> None:
        self.value, self.max_len, self.what, self.key = value, max_len, what, key

    def check(self, value: Any, where: str = "") -> dict:
        if not isinstance(value, dict):
            raise self.fail(value, where)
        if len(value) > self.max_len:
            raise SchemaError(f"{where or 'the document'} has {len(value)} entries (at most {self.max_len})")
        if self.key is not None:
            for k in value:
                self.key(k, where)
        return {k: self.value.check(v, _join(where, k)) for k, v in value.items()}


class AnyOf(Spec):
    """The first of ``specs`` that accepts the value (the message uses ``what``)."""

    def __init__(self, *specs: Spec, what: str) -> None:
        self.specs, self.what = specs, what

    def check(self, value: Any, where: str = "") -> Any:
        for spec in self.specs:
            try:
                return spec.check(value, where)
            except SchemaError:
                continue
        raise self.fail(value, where)


class Json(Spec):
    """Free-form JSON (tool settings) bounded in depth and size; numbers must be finite.

    ``top`` restricts the outer value to ``dict`` or ``list`` when given.
    """

    def __init__(self, max_depth: int = 8, max_nodes: int = 100_000, top: type | None = dict) -> None:
        self.max_depth, self.max_nodes, self.top = max_depth, max_nodes, top
        self.what = "an object" if top is dict else "a list" if top is list else "a JSON value"

    def check(self, value: Any, where: str = "") -> Any:
        if self.top is not None and not isinstance(value, self.top):
            raise self.fail(value, where)
        stack, nodes = [(value, where, 0)], 0
        while stack:  # iterative: a deep value cannot exhaust the interpreter's stack
            node, at, depth = stack.pop()
            nodes += 1
            if nodes > self.max_nodes:
                raise SchemaError(f"{where or 'the document'} holds more than {self.max_nodes} values")
            if isinstance(node, float) and not math.isfinite(node):
                raise SchemaError(f"{at} must be a finite number, got {describe(node)}")
            if isinstance(node, (dict, list)):
                if depth >= self.max_depth:
                    raise SchemaError(f"{at} is nested more than {self.max_depth} levels deep")
                items = node.items() if isinstance(node, dict) else enumerate(node)
                stack.extend((v, _join(at, k), depth + 1) for k, v in items)
        return value


def parse_json(data: bytes | str) -> Any:
    """Parse JSON text, turning every way it can fail into a :class:`SchemaError`.

    The parser is C code that stops at the interpreter's recursion limit: a list nested
    100 000 deep ends here as "nested too deeply", not as a ``RecursionError`` elsewhere.
    Depth below that is bounded by the schema the result is checked against.

    Raises
    ------
    SchemaError
        Not UTF-8, not JSON, nested too deeply, an integer of thousands of digits.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(data)
    except RecursionError:
        raise SchemaError("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise SchemaError(f"not valid JSON ({exc})") from None
