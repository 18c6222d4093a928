"""Strict JSON: what every metalstream reader accepts from a client or a file.

Python's json module takes `NaN`, `Infinity`, `1e400` and integers of any length, which other
JSON readers refuse and SQL columns cannot hold, and it recurses once per nesting level. Here a
document must be UTF-8, nested at most MAX_DEPTH deep, and every number must be finite and every
integer must fit in 64 signed bits; the error names the field (`disk_hints.size`, `events[2].time`).
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import BadInput

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_INT_DIGITS = 20  # enough for any int64, and far below Python's int-parsing limit


class _OutOfRange(float):
    """An integer literal too long to be parsed: kept as a marker so the walk can name its field."""


def _parse_int(literal: str) -> int | float:
    if len(literal.lstrip("-")) > _MAX_INT_DIGITS:
        return _OutOfRange("inf")
    return int(literal)


def _parse_constant(name: str) -> float:
    return float(name.replace("Infinity", "inf"))  # NaN, Infinity, -Infinity: refused by the walk


def _field_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _check_values(value: Any) -> None:
    pending = [("", value, 0)]
    while pending:
        where, item, depth = pending.pop()
        if isinstance(item, (dict, list)) and depth >= MAX_DEPTH:
            raise BadInput(f"nested deeper than {MAX_DEPTH} levels", location=where or None)
        if isinstance(item, dict):
            for key in item:
                _check_unicode(key, where, what="a key")
            pending.extend((_field_path(where, k), v, depth + 1) for k, v in item.items())
        elif isinstance(item, str):
            _check_unicode(item, where)
        elif isinstance(item, list):
            pending.extend((_field_path(where, i), v, depth + 1) for i, v in enumerate(item))
        elif isinstance(item, _OutOfRange) or (isinstance(item, int) and not isinstance(item, bool)
                                                and not INT64_MIN <= item <= INT64_MAX):
            raise BadInput("integer out of range (at most 64 bits)", location=where or None)
        elif isinstance(item, float) and not (item == item and abs(item) != float("inf")):
            raise BadInput("not a finite number (NaN, Infinity and overflowing numbers are refused)",
                           location=where or None)


def _check_unicode(text: str, where: str, what: str = "the text") -> None:
    """JSON escapes can spell a lone UTF-16 surrogate, which no UTF-8 text (or database) can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid Unicode (a lone UTF-16 surrogate)", location=where or None) from None


def loads(raw: bytes | str) -> Any:
    """Parse `raw`; BadInput located at the offending field, or at no field for syntax and encoding."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BadInput("not UTF-8 text") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise BadInput(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                       details={"line": exc.lineno}) from None
    except RecursionError:
        raise BadInput(f"nested deeper than {MAX_DEPTH} levels") from None
    _check_values(value)
    return value
