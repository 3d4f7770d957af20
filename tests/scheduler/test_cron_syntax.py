"""Cron as the ecosystem writes it: a sixth field is the seconds, FIRST (BullMQ, Quartz,
Spring, node-cron), and a bad expression is refused naming the field at fault."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from conveyor import Conveyor
from conveyor.connect import strs
from conveyor.errors import ValidationError
from conveyor.scheduler.cron import Schedule, check_cron, parse_schedule
from conveyor.scheduler.service import Scheduler

S = 1000


def test_six_fields_put_the_seconds_first() -> None:
    every_15s = Schedule(name="s", type="t", cron="*/15 * * * * *")
    assert every_15s.ticks_after(0, 60 * S, 100) == [15 * S, 30 * S, 45 * S, 60 * S]
    # "10 0 * * * *": at second 10 of minute 0 of every hour.
    hourly = Schedule(name="h", type="t", cron="10 0 * * * *")
    assert hourly.next_runs_ms(0, 2) == [10 * S, 3600 * S + 10 * S]


@pytest.mark.parametrize(("expression", "field"), [
    ("61 * * * *", "minute"),
    ("* 24 * * *", "hour"),
    ("* * 32 * *", "day-of-month"),
    ("* * * 13 *", "month"),
    ("* * * * 8", "day-of-week"),
    ("75 * * * * *", "second"),
    ("0 61 * * * *", "minute"),
])
def test_a_bad_field_is_named(expression: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"the {field} field"):
        check_cron(expression)
    with pytest.raises(ValidationError) as refused:
        parse_schedule({"name": "n", "type": "t", "cron": expression})
    assert refused.value.field == "cron" and f"the {field} field" in str(refused.value)


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * * *", "@sometimes"])
def test_the_wrong_shape_says_what_a_cron_expression_is(expression: str) -> None:
    with pytest.raises(ValueError, match=r"(seconds first|cron nickname)"):
        check_cron(expression)


@pytest.mark.parametrize("expression", ["*/5 * * * *", "0 3 * * 1-5", "*/15 * * * * *",
                                        "@daily", "0 0 12 * * MON-FRI"])
def test_good_expressions_pass(expression: str) -> None:
    assert check_cron(expression) == expression


async def test_a_real_scheduler_fires_every_two_seconds(app: Conveyor) -> None:
    """Seconds last, ``*/2 * * * * *`` fired every second of every other minute."""
    @app.job(queue="cron", cron="*/2 * * * * *", misfire="skip")
    async def tick() -> None:
        return None

    scheduler = Scheduler(app, lease_seconds=2.0, record_history=False)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(7.5)  # a wall-clock span is what this test is about
    scheduler.stop()
    await task
    ids = strs(await app.redis.lrange(app.keys.queue("cron").ready("normal"), 0, -1))
    jobs = [await app.get_job(i) for i in ids]
    ticks = sorted({job.meta["tick"] for job in jobs if job is not None})
    assert len(ticks) >= 3, ticks
    assert all(t % (2 * S) == 0 for t in ticks), ticks
    assert all(b - a == 2 * S for a, b in itertools.pairwise(ticks)), ticks

