"""Cron under faults: long schedule names, broken schedules, Redis errors while firing."""

from __future__ import annotations

import logging

import orjson
import pytest
from redis.exceptions import OutOfMemoryError, ResponseError

from conveyor import Conveyor
from conveyor.scheduler.cron import Schedule, describe, tick_key
from conveyor.scheduler.service import Scheduler
from conveyor.supervise import is_transient

S = 1000
NOW = 1_800_000_000 * S  # an explicit clock: no test waits for wall-clock seconds
GRACE = 5 * S


def test_tick_keys_are_unique_names_for_every_name_length() -> None:
    names = ["n", "a" * 45, "a" * 46, "a" * 60, "a" * 59 + "b", "a" * 64]
    keys = {tick_key(name, tick) for name in names for tick in (NOW, NOW + S)}
    assert len(keys) == 2 * len(names)
    assert all(len(k) <= 64 for k in keys)
    assert tick_key("nightly", NOW) == f"cron.nightly.{NOW}"  # readable where it fits
    assert tick_key("x" * 60, NOW).startswith("cronh.xxxx")


async def test_a_long_named_schedule_fires_on_every_tick(app: Conveyor) -> None:
    @app.job(queue="q")
    async def report() -> None:
        return None

    name = "nightly-report-for-the-accounting-department-of-emea-region"
    assert len(name) == 59
    schedule = await app.schedules.put(Schedule(name=name + "x", type="report",
                                                cron="* * * * * *"))
    first = await app.schedules.fire(schedule, [NOW])
    second = await app.schedules.fire(schedule, [NOW + S])
    assert first != second
    info = [await app.get_job(i) for i in first + second]
    assert [j.meta["tick"] for j in info if j] == [NOW, NOW + S]

    # The same through the cron loop's entry point, on two successive ticks.
    await app.schedules.fire_due(NOW + 10 * S, GRACE)
    await app.schedules.fire_due(NOW + 11 * S, GRACE)
    submitted = [f for _, f in await app.redis.xrange(app.keys.queue("q").events)
                 if f["event"] == "submitted"]
    ticks = [orjson.loads(f["meta"])["tick"] for f in submitted]
    assert len(ticks) == len(set(ticks))  # every tick its own job
    assert ticks[-2:] == [NOW + 10 * S, NOW + 11 * S]


async def test_one_broken_schedule_does_not_stop_the_others(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(queue="q")
    async def report(kind: str) -> None:
        return None

    book = app.schedules
    await book.put(Schedule(name="good", type="report", cron="* * * * * *",
                            args={"kind": "full"}))
    # Definitions that validated once: a job type since removed, args that no longer
    # match the handler, a definition that no longer parses.
    gone = Schedule(name="gone", type="removed_type", cron="* * * * * *")
    stale = Schedule(name="stale", type="report", cron="* * * * * *", args={"kind": 5})
    await app.redis.hset(app.keys.glob.schedules, mapping={
        "gone": gone.model_dump_json(), "stale": stale.model_dump_json(),
        "corrupt": '{"name": "corrupt", "cron": "not cron"}'})

    caplog.set_level(logging.ERROR, "conveyor.scheduler")
    for step in range(3):  # three passes of the cron loop, one second apart
        wait = await book.fire_due(NOW + step * S, GRACE)
        assert 0 <= wait <= 1.0
    assert await book.last_ticks() == {"good": NOW + 2 * S}
    good_jobs = await app.redis.xlen(app.keys.queue("q").events)
    assert good_jobs >= 3  # the good schedule fired on each tick

    errors = await book.last_errors()
    assert set(errors) == {"gone", "stale", "corrupt"}
    assert "removed_type" in errors["gone"]["error"]
    assert errors["gone"]["since_ms"] == NOW  # kept from the first failure
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 3, lines  # one line per schedule, not one per pass
    schedule = await book.get("gone")
    assert describe(schedule, None, NOW, errors.get("gone"))["last_error"] == errors["gone"]

    # Fixed: the error is cleared at its next successful fire.
    await book.put(Schedule(name="stale", type="report", cron="* * * * * *",
                            args={"kind": "x"}))
    await book.fire_due(NOW + 3 * S, GRACE)
    assert set(await book.last_errors()) == {"gone", "corrupt"}
    await app.redis.hdel(app.keys.glob.schedules, "corrupt")  # removed by hand
    await book.fire_due(NOW + 4 * S, GRACE)
    assert set(await book.last_errors()) == {"gone"}


async def test_scheduler_fire_due_skips_broken_schedules(app: Conveyor) -> None:
    """The service's entry point, on Redis time."""
    @app.job(queue="q")
    async def report() -> None:
        return None

    await app.schedules.put(Schedule(name="good", type="report", cron="* * * * * *"))
    gone = Schedule(name="gone", type="removed_type", cron="* * * * * *")
    await app.redis.hset(app.keys.glob.schedules, "gone", gone.model_dump_json())
    await Scheduler(app, record_history=False).fire_due()
    assert set(await app.schedules.last_ticks()) == {"good"}
    assert set(await app.schedules.last_errors()) == {"gone"}


async def test_transient_redis_errors_propagate_out_of_fire_due(app: Conveyor) -> None:
    """An OOM reply is an outage, not a broken schedule: the loop must back off."""
    @app.job(queue="q")
    async def report() -> None:
        return None

    book = app.schedules
    await book.put(Schedule(name="good", type="report", cron="* * * * * *"))
    await book.fire_due(NOW, GRACE)  # warm: the queue and scripts exist
    await app.redis.config_set("maxmemory", "1")
    try:
        with pytest.raises((OutOfMemoryError, ResponseError)) as raised:
            await book.fire_due(NOW + S, GRACE)
        assert is_transient(raised.value)
    finally:
        await app.redis.config_set("maxmemory", "0")
    assert await book.last_errors() == {}
