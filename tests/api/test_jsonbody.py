"""``jsonbody.parse``'s fast acceptance (orjson and bracket counting instead of a walk in
Python) accepts exactly what the full walk, ``check_value``, accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.api import jsonbody
from conveyor.api.errors import ApiError

DEPTH = 6


def outcome(body: bytes, max_depth: int) -> tuple[str, str | None] | None:
    try:
        jsonbody.parse(body, max_depth)
    except ApiError as exc:
        return exc.code, exc.field or None
    return None


def walked(body: bytes, max_depth: int) -> tuple[str, str | None] | None:
    """What the full walk alone answers (the behaviour before the fast path)."""
    problem = jsonbody.check_value(json.loads(body), max_depth)
    return (problem[0], problem[2] or None) if problem else None


text = st.text(alphabet=st.sampled_from('ab"\\[]{}\n\u00e9\ud800\udc00'), max_size=6)
scalars = st.none() | st.booleans() | text | st.floats(allow_nan=False, allow_infinity=False) \
    | st.integers(min_value=-(2**70), max_value=2**70)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=3), max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(values, st.integers(min_value=1, max_value=DEPTH))
def test_fast_acceptance_agrees_with_the_walk(value: Any, max_depth: int) -> None:
    body = json.dumps(value).encode()  # ensure_ascii: lone surrogates as \\ud800 escapes
    assert outcome(body, max_depth) == walked(body, max_depth)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"a": [[["]]]]]]"]]]}', None),  # brackets in strings do not nest
    (b'{"a": "\\"[[[[[[[[", "b": [[[1]]]}', None),  # nor after an escaped quote
    (b'{"a": "\\\\", "b": [[[[[1]]]]]}', ("too_deep", "b[0][0][0][0]")),
    (b'[1e400]', ("non_finite_number", "[0]")),
    (b'{"x": -1e400}', ("non_finite_number", "x")),
    (b'{"x": 18446744073709551616}', ("number_out_of_range", "x")),
    (b'{"x": 18446744073709551615, "y": -9223372036854775808}', None),
    (b'{"\\udc00": 1}', ("invalid_unicode", "\udc00")),
    (b'{"a": {"b": "\\ud800"}}', ("invalid_unicode", "a.b")),
])
def test_fast_acceptance_cases(body: bytes, expected: tuple[str, str] | None) -> None:
    assert outcome(body, 5) == expected
