"""Strict JSON request bodies: what ``json.loads`` lets through and the API must not.

Rejected with 400 and a stable code (the field path where one exists): invalid UTF-8
(``invalid_utf8``), syntax errors (``invalid_json``), content after the document
(``trailing_data``), ``NaN``/``Infinity`` and numbers that overflow a double
(``non_finite_number``), integers outside 64 bits (``number_out_of_range``), duplicate object
keys (``duplicate_key``), lone UTF-16 surrogates (``invalid_unicode``) and nesting deeper than
the cap (``too_deep``). A wrong Content-Type is 415; an empty body 400 (``empty_body``).

The fast path is the C parser with hooks that only raise or take note, then a check in C
(``_clean``) that a valid body passes; the slow paths (a re-parse that finds the field path
of a duplicate key or a NaN, ``check_value`` that walks the value building paths) run only
for a body the fast path doubts, so valid bodies pay nothing for them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from conveyor.api.errors import ApiError

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson (and so Redis-side JSON) can carry


class _Duplicate(Exception):  # internal signal
    pass


class _Constant(Exception):  # internal signal
    pass


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/")
                                       and media.endswith("+json")):
        return
    raise ApiError(415, "unsupported_media_type",
                   f"send the body as JSON with Content-Type: application/json, not {media!r}"
                   if media else "send the body as JSON with Content-Type: application/json")


def parse(body: bytes, max_depth: int) -> Any:
    """The JSON value of ``body``, or ApiError(400) saying what is wrong and where."""
    if not body.strip():
        raise ApiError(400, "empty_body", "the request body is empty: send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8",
                       f"the body is not valid UTF-8 (byte {exc.start}): send UTF-8 text") from None
    value, overflow = _load(text, max_depth)
    if overflow or not _clean(body, value, max_depth):
        problem = check_value(value, max_depth)
        if problem:
            raise ApiError(400, *problem)
    return value


def _load(text: str, max_depth: int) -> tuple[Any, bool]:
    """``json.loads`` with the strict hooks, and whether a float literal overflowed."""
    overflow = False

    def parse_float(literal: str) -> float:
        nonlocal overflow
        number = float(literal)
        overflow = overflow or not math.isfinite(number)
        return number

    try:
        value = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_reject_constant,
                           parse_float=parse_float)
    except (_Duplicate, _Constant):
        _raise_located(text, max_depth)
        raise AssertionError("unreachable") from None
    except json.JSONDecodeError as exc:
        raise _syntax_error(exc) from None
    except RecursionError:
        raise ApiError(400, "too_deep",
                       f"the body is nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer literal with more digits than Python converts
        raise ApiError(400, "number_out_of_range",
                       f"the body holds a number too large: {exc}") from None
    return value, overflow


def _clean(body: bytes, value: Any, max_depth: int) -> bool:
    """True when ``check_value`` would find nothing in ``value`` (parsed from ``body``, its
    floats all finite), without walking it in Python: orjson refuses to write a lone
    surrogate (in a key or a string) and an integer outside 64 bits, and the nesting is
    counted on the brackets of the body. False means "maybe not": ``check_value`` decides
    (it also does when orjson refuses for a reason of its own, such as its recursion cap)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return _nests_within(body, max_depth)


_OTHER_BYTES = bytes(b for b in range(256) if b not in b'[]{}"\\')
_LEVELS = bytes.maketrans(b"[{]}", b"(())")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _nests_within(body: bytes, max_depth: int) -> bool:
    """Whether the containers of a valid JSON ``body`` nest at most ``max_depth`` deep:
    strings are cut out, brackets made parentheses, then the innermost pairs removed, one
    level a pass, for at most ``max_depth`` passes."""
    if body.count(b"[") + body.count(b"{") <= max_depth:  # brackets in strings count too
        return True
    if b"\\" in body:  # escapes: cut the strings out exactly
        marks = _STRING.sub(b"", body).translate(None, _OTHER_BYTES)
    else:  # a quote always opens or closes a string: every other piece is outside
        marks = b"".join(body.translate(None, _OTHER_BYTES).split(b'"')[::2])
    marks = marks.translate(_LEVELS)
    for _ in range(max_depth):
        marks = marks.replace(b"()", b"")
        if not marks:
            return True
    return False


def _syntax_error(exc: json.JSONDecodeError) -> ApiError:
    if exc.msg == "Extra data":
        return ApiError(400, "trailing_data", f"unexpected content after the JSON document at "
                        f"line {exc.lineno} column {exc.colno}: send exactly one JSON value")
    return ApiError(400, "invalid_json", f"the body is not valid JSON: {exc.msg} at line "
                    f"{exc.lineno} column {exc.colno}")


Problem = tuple[str, str, str | None]  # code, message, field


def check_value(value: Any, max_depth: int) -> Problem | None:
    """The first value JSON parsing accepted but the API does not, with its path."""
    return _walk(value, "", 1, max_depth)


def _walk(value: Any, path: str, depth: int, max_depth: int) -> Problem | None:
    if not isinstance(value, dict | list):
        return _check_scalar(value, path)
    if depth > max_depth:
        return ("too_deep", f"{_at(path)} is nested deeper than {max_depth} levels", path)
    if isinstance(value, dict):
        return _walk_dict(value, path, depth, max_depth)
    for i, item in enumerate(value):
        problem = _walk(item, f"{path}[{i}]", depth + 1, max_depth)
        if problem:
            return problem
    return None


def _check_scalar(value: Any, path: str) -> Problem | None:
    if isinstance(value, str):
        return _check_str(value, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return ("number_out_of_range", f"{_at(path)} is outside the 64-bit integer range", path)
    if math.isfinite(value):
        return None
    return ("non_finite_number", f"{_at(path)} overflows a double: JSON numbers must be finite",
            path)


def _walk_dict(value: dict[str, Any], path: str, depth: int, max_depth: int) -> Problem | None:
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        problem = _check_str(key, child) or _walk(item, child, depth + 1, max_depth)
        if problem:
            return problem
    return None


def _check_str(value: str, path: str) -> Problem | None:
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return ("invalid_unicode", f"{_at(path)} holds a lone UTF-16 surrogate escape: "
                "send valid Unicode text", path)
    return None


def _at(path: str) -> str:
    return path or "the body"


# -- slow path: where is the duplicate key or the NaN? ----------------------------------------

class _Pairs(list[tuple[str, Any]]):
    """An object as the parser saw it: its pairs, duplicates included."""


class _Bad:
    def __init__(self, name: str) -> None:
        self.name = name


def _raise_located(text: str, max_depth: int) -> None:
    try:
        found = _locate(json.loads(text, object_pairs_hook=_Pairs, parse_constant=_Bad), "")
    except RecursionError:
        raise ApiError(400, "too_deep",
                       f"the body is nested deeper than {max_depth} levels") from None
    if found is None:  # cannot happen: the fast path saw one
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    code, message, field = found
    raise ApiError(400, code, message, field or None)


def _locate(node: Any, path: str) -> Problem | None:
    if isinstance(node, _Bad):
        return ("non_finite_number",
                f"{_at(path)} is {node.name}, which JSON does not have: send a finite number "
                "or null", path)
    children: list[tuple[str, Any]]
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, _ in node:
            if key in seen:
                child = f"{path}.{key}" if path else key
                return ("duplicate_key", f"{child} appears twice in one object: send each key "
                        "once", child)
            seen.add(key)
        children = [(f"{path}.{k}" if path else k, v) for k, v in node]
    elif isinstance(node, list):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
    else:
        return None
    return _first(children, _locate)


def _first(
    children: list[tuple[str, Any]], visit: Callable[[Any, str], Problem | None]
) -> Problem | None:
    for child_path, child in children:
        problem = visit(child, child_path)
        if problem:
            return problem
    return None
