"""Argument equality in a job search: ``?args.order_id=42`` (or ``?arg=order_id=42``, the form
the OpenAPI schema can describe). A value that reads as JSON is that JSON scalar (``42``,
``true``, ``null``, ``"42"`` for the string); anything else is a string."""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

from conveyor.api.errors import ApiError
from conveyor.store.base import ArgValue

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_ARGS = 5
PREFIX = "args."


def parse(query: Iterable[tuple[str, str]], arg: list[str] | None) -> dict[str, ArgValue] | None:
    """The arguments to match, from the raw query string and the ``arg`` parameter."""
    pairs = [(k.removeprefix(PREFIX), v) for k, v in query if k.startswith(PREFIX)]
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ApiError(422, "invalid_query", f"arg {item!r} is not key=value "
                           "(e.g. arg=order_id=42)", "query.arg")
        pairs.append((key, value))
    if not pairs:
        return None
    if len(pairs) > MAX_ARGS:
        raise ApiError(422, "invalid_query", f"at most {MAX_ARGS} arguments per search",
                       "query.arg")
    return {_key(k): _value(v) for k, v in pairs}


def _key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ApiError(422, "invalid_query", f"argument name {key!r} is not a top-level name "
                       "(letters, digits and _)", f"query.args.{key[:64]}")
    return key


def _value(raw: str) -> ArgValue:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(value, dict | list):
        raise ApiError(422, "invalid_query", "argument search matches scalars only (a "
                       "string, number, true, false or null)", "query.arg")
    return value  # type: ignore[no-any-return]
