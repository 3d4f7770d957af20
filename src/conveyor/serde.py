"""JSON in and out, strictly: no pickle, no NaN/Infinity, no lone surrogates, bounded depth."""

from __future__ import annotations

import math
from typing import Any

import orjson

from conveyor.errors import NotJSON

MAX_DEPTH = 32


def check_json(value: Any, field: str = "args", depth: int = 0) -> None:
    """Raise ``NotJSON`` naming the path of the first value JSON cannot carry faithfully."""
    if depth > MAX_DEPTH:
        raise NotJSON(field, f"{field} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_str(value, field)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(field, f"{field} is {value}: JSON has no NaN or Infinity; send null")
    elif isinstance(value, dict):
        _check_object(value, field, depth)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json(item, f"{field}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, bool | int):
        raise NotJSON(
            field, f"{field} is a {type(value).__name__}, which is not JSON: pass dicts, lists, "
            "strings, numbers, booleans or None"
        )


def _check_object(value: dict[Any, Any], field: str, depth: int) -> None:
    # Strings, integers, booleans and None - most values - are checked here, and a value's
    # path is built only for a container or an error (an f-string per value was most of the
    # walk's cost for the flat arguments jobs mostly have). At the depth limit every value
    # takes the full check, which refuses it as too deep, scalars included, as it always did.
    inline = depth < MAX_DEPTH
    for key, item in value.items():
        if not isinstance(key, str):
            raise NotJSON(field, f"{field} has a non-string key {key!r}: JSON keys are strings")
        if not key.isascii():
            _check_str(key, field)
        kind = type(item) if inline else None
        if kind is str:
            if not item.isascii():
                _check_str(item, f"{field}.{key}")
        elif kind is not int and kind is not bool and item is not None:
            check_json(item, f"{field}.{key}", depth + 1)


def _check_str(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotJSON(field, f"{field} holds a lone surrogate: send valid Unicode text") from None


def dumps(value: Any) -> str:
    """Serialize a checked JSON value to a str."""
    return orjson.dumps(value).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None or text == "" else orjson.loads(text)
