"""Bad input raises a clear error naming the field, and nothing reaches Redis."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from conveyor import Conveyor, UnknownJobType, ValidationError
from conveyor.errors import InvalidArguments, InvalidName, NotJSON


@pytest.fixture
async def noop_app(app: Conveyor) -> Conveyor:
    @app.job(queue="q")
    async def resize(image_id: str, width: int, ratio: float = 1.0) -> None:
        return None

    return app


GOOD = {"image_id": "a", "width": 10}
CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("unknown type", {"type": "nope", "args": {}}, UnknownJobType, "type"),
    ("missing argument", {"args": {"image_id": "a"}}, InvalidArguments, "args.width"),
    ("extra argument", {"args": {**GOOD, "height": 3}}, InvalidArguments, "args.height"),
    ("string for int", {"args": {**GOOD, "width": "5"}}, InvalidArguments, "args.width"),
    ("bool for int", {"args": {**GOOD, "width": True}}, InvalidArguments, "args.width"),
    ("args not an object", {"args": [1, 2]}, InvalidArguments, "args"),
    ("queue with braces", {"args": GOOD, "queue": "a{b}"}, InvalidName, "queue"),
    ("queue too long", {"args": GOOD, "queue": "q" * 65}, InvalidName, "queue"),
    ("queue empty", {"args": GOOD, "queue": ""}, InvalidName, "queue"),
    ("unknown priority", {"args": GOOD, "priority": "urgent"}, ValidationError, "priority"),
    ("negative delay", {"args": GOOD, "delay": -1}, ValidationError, "delay"),
    ("nan delay", {"args": GOOD, "delay": float("nan")}, ValidationError, "delay"),
    ("naive run_at", {"args": GOOD, "run_at": datetime(2030, 1, 1)}, ValidationError, "run_at"),
    ("run_at in the year 9999", {"args": GOOD, "run_at": "9999-01-01T00:00:00+00:00"},
     ValidationError, "run_at"),
    ("delay and run_at", {"args": GOOD, "delay": 1, "run_at": "2030-01-01T00:00:00+00:00"},
     ValidationError, "delay"),
    ("NaN in args", {"args": {**GOOD, "ratio": float("nan")}}, NotJSON, "args.ratio"),
    ("Infinity in args", {"args": {**GOOD, "ratio": float("inf")}}, NotJSON, "args.ratio"),
    ("lone surrogate", {"args": {**GOOD, "image_id": "\ud800"}}, NotJSON, "args.image_id"),
    ("bytes in args", {"args": {**GOOD, "image_id": b"x"}}, NotJSON, "args.image_id"),
    ("set in args", {"args": {**GOOD, "image_id": {1}}}, NotJSON, "args.image_id"),
    ("zero attempts", {"args": GOOD, "max_attempts": 0}, ValidationError, "max_attempts"),
    ("bad idempotency key", {"args": GOOD, "idempotency_key": "a b"}, ValidationError,
     "idempotency_key"),
]


@pytest.mark.parametrize(("spec", "error", "field"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    noop_app: Conveyor, spec: dict[str, Any], error: type[Exception], field: str
) -> None:
    kwargs = {"type": "resize", **spec}
    with pytest.raises(error) as raised:
        await noop_app.enqueue(**kwargs)
    assert getattr(raised.value, "field", None) == field
    assert str(raised.value)  # a message a person can act on
    assert await noop_app.redis.dbsize() == 0


async def test_bulk_is_all_or_nothing_and_names_the_item(noop_app: Conveyor) -> None:
    specs = [{"type": "resize", "args": GOOD} for _ in range(5)]
    specs[3] = {"type": "resize", "args": {**GOOD, "width": "wide"}}
    with pytest.raises(InvalidArguments) as raised:
        await noop_app.enqueue_many(specs)
    assert raised.value.field == "jobs[3].args.width"
    assert await noop_app.redis.dbsize() == 0


async def test_catalog_validates_types_this_process_did_not_register(noop_app: Conveyor) -> None:
    await noop_app.publish_catalog()
    producer = Conveyor(redis_url=noop_app.settings.redis_url)
    try:
        with pytest.raises(InvalidArguments) as raised:
            await producer.enqueue("resize", {"image_id": "a", "width": "5"})
        assert raised.value.field == "args.width"
        handle = await producer.enqueue("resize", GOOD)
        assert handle.queue == "q"
    finally:
        await producer.close()


def test_enqueue_sync_from_plain_code(noop_app: Conveyor) -> None:
    handle = noop_app.enqueue_sync("resize", GOOD, priority="low")
    assert handle.status == "queued"


def _nested(levels: int, leaf: object) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


JSON_CASES: list[tuple[str, object, str | None]] = [
    ("flat and fine", {"a": 1, "b": "x", "c": None, "d": True, "e": 1.5, "é": "ü"}, None),
    ("non-ASCII key with a lone surrogate", {"\udc00": 1}, "args"),
    ("lone surrogate nested in a list", {"a": [{"b": "ok"}, {"c": "\ud800"}]}, "args.a[1].c"),
    ("NaN two levels down", {"a": {"b": float("nan")}}, "args.a.b"),
    ("non-string key", {"a": {1: 2}}, "args.a"),
    ("a set two levels down", {"a": {"b": {1}}}, "args.a.b"),
    ("32 levels: the limit", _nested(32, 1), None),
    ("a scalar at level 33", _nested(33, 1), "args" + ".a" * 33),
    ("a string at level 33", _nested(33, "x"), "args" + ".a" * 33),
]


@pytest.mark.parametrize(("value", "field"), [c[1:] for c in JSON_CASES],
                         ids=[c[0] for c in JSON_CASES])
def test_check_json_names_the_first_value_json_cannot_carry(value: object,
                                                           field: str | None) -> None:
    """The walk checks common values inline and builds a path only for containers and
    errors: every refusal still names its exact path, the depth limit holds for scalars too."""
    from conveyor.serde import check_json

    if field is None:
        check_json(value, "args")
        return
    with pytest.raises(NotJSON) as raised:
        check_json(value, "args")
    assert raised.value.field == field
